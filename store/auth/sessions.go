package auth

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Sessions are the web UI sessions of one database.
type Sessions struct {
	base *sqldb.DB
	db   *sqlx.DB
}

// NewSessions returns the web UI sessions of db.
func NewSessions(db *sqldb.DB) *Sessions { return &Sessions{base: db, db: db.SQLX()} }

// UISession is a stored web UI session: the hash of its id (the cookie
// holds the id itself), its token, CSRF secret and lifetimes.
type UISession struct {
	IDHash     string
	Token      core.Token
	CSRF       string
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time
}

// CreateSession stores a new session for a live token with a
// "ui.signin" audit entry (the token's name and role and the session's
// expiry; never the session id or its hash).
func (ss *Sessions) CreateSession(ctx context.Context, s UISession) error {
	entry := core.AuditEntry{Actor: sessionActor(s.Token), Action: "ui.signin", Subject: "token:" + s.Token.ID,
		Data: json.RawMessage(sqldb.MustJSON(map[string]string{"name": s.Token.Name, "role": string(s.Token.Role),
			"expires_at": sqldb.TS(s.ExpiresAt).Format(time.RFC3339)}))}
	err := ss.base.AppendWith(ctx, []core.AuditEntry{entry}, func(ctx context.Context, tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, ss.base.Q(`INSERT INTO ui_sessions (id_hash, token_id, csrf, created_at, last_seen_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?)`), s.IDHash, s.Token.ID, s.CSRF, sqldb.TS(s.CreatedAt), sqldb.TS(s.LastSeenAt), sqldb.TS(s.ExpiresAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("create ui session: %w", err)
	}
	return nil
}

// sessionActor names a session's person in the audit trail as the API
// names a token's caller, with the channel.
func sessionActor(t core.Token) string { return core.TokenActor(t, "ui") }

// Session returns the session with that id hash when it has not ended and
// its token is not revoked; KindNotFound otherwise. Expiry is the
// caller's to judge (it knows the idle limit).
func (ss *Sessions) Session(ctx context.Context, idHash string) (UISession, error) {
	var r struct {
		IDHash     string    `db:"id_hash"`
		CSRF       string    `db:"csrf"`
		CreatedAt  time.Time `db:"session_created_at"`
		LastSeenAt time.Time `db:"last_seen_at"`
		ExpiresAt  time.Time `db:"expires_at"`
		tokenRow
	}
	err := ss.db.GetContext(ctx, &r, ss.base.Q(`SELECT s.id_hash, s.csrf, s.created_at AS session_created_at, s.last_seen_at, s.expires_at,
		t.id, t.name, t.role, t.hash, t.created_at, t.created_by, t.revoked_at
		FROM ui_sessions s JOIN api_tokens t ON t.id = s.token_id
		WHERE s.id_hash = ? AND s.ended_at IS NULL AND t.revoked_at IS NULL`), idHash)
	if errors.Is(err, sql.ErrNoRows) {
		return UISession{}, core.Errorf(core.KindNotFound, "no such session")
	}
	if err != nil {
		return UISession{}, fmt.Errorf("read ui session: %w", sqldb.Translate(err))
	}
	return UISession{IDHash: r.IDHash, Token: r.tokenRow.token(), CSRF: r.CSRF,
		CreatedAt: r.CreatedAt.UTC(), LastSeenAt: r.LastSeenAt.UTC(), ExpiresAt: r.ExpiresAt.UTC()}, nil
}

// TouchSession records activity on a session (the idle clock restarts).
func (ss *Sessions) TouchSession(ctx context.Context, idHash string, at time.Time) error {
	if _, err := ss.db.ExecContext(ctx, ss.base.Q("UPDATE ui_sessions SET last_seen_at = ? WHERE id_hash = ? AND ended_at IS NULL"), sqldb.TS(at), idHash); err != nil {
		return fmt.Errorf("touch ui session: %w", sqldb.Translate(err))
	}
	return nil
}

// Why a session ended, as its audit entry names it.
const (
	SessionSignedOut = "ui.signout"
	SessionExpired   = "ui.session_expire"
)

// EndSession ends a live session (sign-out or expiry: action is
// SessionSignedOut or SessionExpired) with that audit entry, and deletes
// sessions that expired more than a day before at, so the table stays
// small. A session already ended (by another request or replica) is left
// alone and audited once only.
func (ss *Sessions) EndSession(ctx context.Context, idHash, action string, at time.Time) error {
	if action != SessionSignedOut && action != SessionExpired {
		return core.Invalid("action", "want %s or %s", SessionSignedOut, SessionExpired)
	}
	var t tokenRow
	err := ss.db.GetContext(ctx, &t, ss.base.Q(`SELECT t.id, t.name, t.role, t.hash, t.created_at, t.created_by, t.revoked_at
		FROM ui_sessions s JOIN api_tokens t ON t.id = s.token_id WHERE s.id_hash = ? AND s.ended_at IS NULL`), idHash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("end ui session: %w", sqldb.Translate(err))
	default:
		tok := t.token()
		entries := []core.AuditEntry{{Actor: sessionActor(tok), Action: action, Subject: "token:" + tok.ID, At: sqldb.TS(at),
			Data: json.RawMessage(sqldb.MustJSON(map[string]string{"name": tok.Name, "role": string(tok.Role)}))}}
		err := ss.base.AppendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) error {
			res, err := tx.ExecContext(ctx, ss.base.Q("UPDATE ui_sessions SET ended_at = ? WHERE id_hash = ? AND ended_at IS NULL"), sqldb.TS(at), idHash)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n == 0 {
				return errSessionGone
			}
			return nil
		})
		if err != nil && !errors.Is(err, errSessionGone) {
			return fmt.Errorf("end ui session: %w", err)
		}
	}
	if _, err := ss.db.ExecContext(ctx, ss.base.Q("DELETE FROM ui_sessions WHERE expires_at < ?"), sqldb.TS(at.Add(-24*time.Hour))); err != nil {
		return fmt.Errorf("prune ui sessions: %w", sqldb.Translate(err))
	}
	return nil
}

// errSessionGone rolls back an ending whose session another request ended
// first (its audit entry with it).
var errSessionGone = errors.New("session already ended")
