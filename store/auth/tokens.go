// Package auth stores who may call tollgate: the API tokens (only their
// hashes), and the web UI's sessions opened with them. Creating and
// revoking a token, and signing in and out, are audited.
package auth

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Tokens are the API tokens of one database.
type Tokens struct {
	base *sqldb.DB
	db   *sqlx.DB
}

// NewTokens returns the API tokens of db.
func NewTokens(db *sqldb.DB) *Tokens { return &Tokens{base: db, db: db.SQLX()} }

type tokenRow struct {
	ID        string       `db:"id"`
	Name      string       `db:"name"`
	Role      string       `db:"role"`
	Hash      string       `db:"hash"`
	CreatedAt time.Time    `db:"created_at"`
	CreatedBy string       `db:"created_by"`
	RevokedAt sql.NullTime `db:"revoked_at"`
}

func (r tokenRow) token() core.Token {
	return core.Token{ID: r.ID, Name: r.Name, Role: core.Role(r.Role), Hash: r.Hash,
		CreatedAt: r.CreatedAt.UTC(), CreatedBy: r.CreatedBy, RevokedAt: sqldb.TimePtr(r.RevokedAt)}
}

const tokenColumns = "id, name, role, hash, created_at, created_by, revoked_at"

// CreateToken stores t with a "token.create" audit entry (name and role
// only: never the secret or its hash). A zero CreatedAt becomes now, an
// empty CreatedBy the actor. A hash or id already stored is KindConflict.
func (tk *Tokens) CreateToken(ctx context.Context, t core.Token, actor string) error {
	switch {
	case strings.TrimSpace(t.ID) == "":
		return core.Invalid("id", "is required")
	case strings.TrimSpace(t.Name) == "":
		return core.Invalid("name", "is required")
	case !t.Role.Valid():
		return core.Invalid("role", "unknown role %q: want admin, change_manager, auditor or ci", t.Role)
	case strings.TrimSpace(t.Hash) == "":
		return core.Invalid("hash", "is required")
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = tk.base.Now()
	}
	if t.CreatedBy == "" {
		t.CreatedBy = actor
	}
	entry := core.AuditEntry{Actor: actor, Action: "token.create", Subject: "token:" + t.ID,
		Data: json.RawMessage(sqldb.MustJSON(map[string]string{"name": t.Name, "role": string(t.Role)}))}
	err := tk.base.AppendWith(ctx, []core.AuditEntry{entry}, func(ctx context.Context, tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, tk.base.Q("INSERT INTO api_tokens (id, name, role, hash, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)"),
			t.ID, t.Name, string(t.Role), t.Hash, sqldb.TS(t.CreatedAt), t.CreatedBy)
		return err
	})
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return nil
}

// TokenByHash returns the token with that hash, revoked or not.
func (tk *Tokens) TokenByHash(ctx context.Context, hash string) (core.Token, error) {
	var r tokenRow
	if err := tk.db.GetContext(ctx, &r, tk.base.Q("SELECT "+tokenColumns+" FROM api_tokens WHERE hash = ?"), hash); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return core.Token{}, core.Errorf(core.KindNotFound, "no token with that hash")
		}
		return core.Token{}, fmt.Errorf("look up token: %w", sqldb.Translate(err))
	}
	return r.token(), nil
}

// TokenByID returns the token with that id, revoked or not.
func (tk *Tokens) TokenByID(ctx context.Context, id string) (core.Token, error) {
	var r tokenRow
	if !sqldb.TextOK(id) {
		return core.Token{}, core.NotFound("token", id)
	}
	if err := tk.db.GetContext(ctx, &r, tk.base.Q("SELECT "+tokenColumns+" FROM api_tokens WHERE id = ?"), id); err != nil {
		return core.Token{}, sqldb.NotFound(err, "token", id)
	}
	return r.token(), nil
}

// ListTokens returns every token, oldest first.
func (tk *Tokens) ListTokens(ctx context.Context) ([]core.Token, error) {
	var rows []tokenRow
	if err := tk.db.SelectContext(ctx, &rows, "SELECT "+tokenColumns+" FROM api_tokens ORDER BY created_at, id"); err != nil {
		return nil, fmt.Errorf("list tokens: %w", sqldb.Translate(err))
	}
	out := make([]core.Token, len(rows))
	for i, r := range rows {
		out[i] = r.token()
	}
	return out, nil
}

// RevokeToken sets the token's RevokedAt (now when at is zero) with a
// "token.revoke" audit entry. KindNotFound for an unknown id, KindConflict
// when it is already revoked.
func (tk *Tokens) RevokeToken(ctx context.Context, id, actor string, at time.Time) error {
	if strings.TrimSpace(id) == "" {
		return core.Invalid("id", "is required")
	}
	if at.IsZero() {
		at = tk.base.Now()
	}
	at = sqldb.TS(at)
	entry := core.AuditEntry{Actor: actor, Action: "token.revoke", Subject: "token:" + id, At: at}
	entries := []core.AuditEntry{entry}
	err := tk.base.AppendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) error {
		var r tokenRow
		if err := tx.GetContext(ctx, &r, tk.base.Q("SELECT "+tokenColumns+" FROM api_tokens WHERE id = ?"), id); err != nil {
			return sqldb.NotFound(err, "token", id)
		}
		if r.RevokedAt.Valid {
			return core.Errorf(core.KindConflict, "token %q is already revoked", id)
		}
		res, err := tx.ExecContext(ctx, tk.base.Q("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"), at, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 { // revoked by another replica meanwhile
			return core.Errorf(core.KindConflict, "token %q is already revoked", id)
		}
		entries[0].Data = json.RawMessage(sqldb.MustJSON(map[string]string{"name": r.Name, "role": r.Role}))
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}
