package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
)

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
func (d *DB) CreateSession(ctx context.Context, s UISession) error {
	entry := core.AuditEntry{Actor: sessionActor(s.Token), Action: "ui.signin", Subject: "token:" + s.Token.ID,
		Data: json.RawMessage(mustJSON(map[string]string{"name": s.Token.Name, "role": string(s.Token.Role),
			"expires_at": ts(s.ExpiresAt).Format(time.RFC3339)}))}
	err := d.appendWith(ctx, []core.AuditEntry{entry}, func(ctx context.Context, tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, d.q(`INSERT INTO ui_sessions (id_hash, token_id, csrf, created_at, last_seen_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?)`), s.IDHash, s.Token.ID, s.CSRF, ts(s.CreatedAt), ts(s.LastSeenAt), ts(s.ExpiresAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("create ui session: %w", err)
	}
	return nil
}

// sessionActor names a session's person in the audit trail as the API
// names a token's caller, with the channel.
func sessionActor(t core.Token) string { return "token:" + t.Name + "(" + t.ID + ") via ui" }

// Session returns the session with that id hash when it has not ended and
// its token is not revoked; KindNotFound otherwise. Expiry is the
// caller's to judge (it knows the idle limit).
func (d *DB) Session(ctx context.Context, idHash string) (UISession, error) {
	var r struct {
		IDHash     string    `db:"id_hash"`
		CSRF       string    `db:"csrf"`
		CreatedAt  time.Time `db:"session_created_at"`
		LastSeenAt time.Time `db:"last_seen_at"`
		ExpiresAt  time.Time `db:"expires_at"`
		tokenRow
	}
	err := d.db.GetContext(ctx, &r, d.q(`SELECT s.id_hash, s.csrf, s.created_at AS session_created_at, s.last_seen_at, s.expires_at,
		t.id, t.name, t.role, t.hash, t.created_at, t.created_by, t.revoked_at
		FROM ui_sessions s JOIN api_tokens t ON t.id = s.token_id
		WHERE s.id_hash = ? AND s.ended_at IS NULL AND t.revoked_at IS NULL`), idHash)
	if errors.Is(err, sql.ErrNoRows) {
		return UISession{}, core.Errorf(core.KindNotFound, "no such session")
	}
	if err != nil {
		return UISession{}, fmt.Errorf("read ui session: %w", translate(err))
	}
	return UISession{IDHash: r.IDHash, Token: r.tokenRow.token(), CSRF: r.CSRF,
		CreatedAt: r.CreatedAt.UTC(), LastSeenAt: r.LastSeenAt.UTC(), ExpiresAt: r.ExpiresAt.UTC()}, nil
}

// TouchSession records activity on a session (the idle clock restarts).
func (d *DB) TouchSession(ctx context.Context, idHash string, at time.Time) error {
	if _, err := d.db.ExecContext(ctx, d.q("UPDATE ui_sessions SET last_seen_at = ? WHERE id_hash = ? AND ended_at IS NULL"), ts(at), idHash); err != nil {
		return fmt.Errorf("touch ui session: %w", translate(err))
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
func (d *DB) EndSession(ctx context.Context, idHash, action string, at time.Time) error {
	if action != SessionSignedOut && action != SessionExpired {
		return core.Invalid("action", "want %s or %s", SessionSignedOut, SessionExpired)
	}
	var t tokenRow
	err := d.db.GetContext(ctx, &t, d.q(`SELECT t.id, t.name, t.role, t.hash, t.created_at, t.created_by, t.revoked_at
		FROM ui_sessions s JOIN api_tokens t ON t.id = s.token_id WHERE s.id_hash = ? AND s.ended_at IS NULL`), idHash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("end ui session: %w", translate(err))
	default:
		tok := t.token()
		entries := []core.AuditEntry{{Actor: sessionActor(tok), Action: action, Subject: "token:" + tok.ID, At: ts(at),
			Data: json.RawMessage(mustJSON(map[string]string{"name": tok.Name, "role": string(tok.Role)}))}}
		err := d.appendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) error {
			res, err := tx.ExecContext(ctx, d.q("UPDATE ui_sessions SET ended_at = ? WHERE id_hash = ? AND ended_at IS NULL"), ts(at), idHash)
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
	if _, err := d.db.ExecContext(ctx, d.q("DELETE FROM ui_sessions WHERE expires_at < ?"), ts(at.Add(-24*time.Hour))); err != nil {
		return fmt.Errorf("prune ui sessions: %w", translate(err))
	}
	return nil
}

// errSessionGone rolls back an ending whose session another request ended
// first (its audit entry with it).
var errSessionGone = errors.New("session already ended")

// DecisionsForRelease returns a release's recorded gate decisions, newest
// first, at most limit.
func (d *DB) DecisionsForRelease(ctx context.Context, releaseID string, limit int) ([]core.GateDecision, error) {
	var docs []string
	if err := d.db.SelectContext(ctx, &docs, d.q(`SELECT doc FROM gate_decisions WHERE release_id = ?
		ORDER BY evaluated_at DESC, id DESC LIMIT ?`), releaseID, limit); err != nil {
		return nil, fmt.Errorf("list decisions of release %s: %w", releaseID, translate(err))
	}
	out := make([]core.GateDecision, 0, len(docs))
	for _, doc := range docs {
		var dec core.GateDecision
		if err := json.Unmarshal([]byte(doc), &dec); err != nil {
			return nil, fmt.Errorf("decode gate decision of release %s: %w", releaseID, err)
		}
		dec.EvaluatedAt = dec.EvaluatedAt.UTC()
		dec.Facts = nil
		out = append(out, dec)
	}
	return out, nil
}

// RecentDecisions returns the latest recorded gate decisions, newest
// first (ids are UUIDv7: the primary key is time-ordered), without facts.
func (d *DB) RecentDecisions(ctx context.Context, limit int) ([]core.GateDecision, error) {
	var docs []string
	if err := d.db.SelectContext(ctx, &docs, d.q("SELECT doc FROM gate_decisions ORDER BY id DESC LIMIT ?"), limit); err != nil {
		return nil, fmt.Errorf("list recent decisions: %w", translate(err))
	}
	out := make([]core.GateDecision, 0, len(docs))
	for _, doc := range docs {
		var dec core.GateDecision
		if err := json.Unmarshal([]byte(doc), &dec); err != nil {
			return nil, fmt.Errorf("decode gate decision: %w", err)
		}
		dec.EvaluatedAt = dec.EvaluatedAt.UTC()
		dec.Facts = nil
		out = append(out, dec)
	}
	return out, nil
}

// ActiveIncidents returns the incidents that are not resolved, closed or
// canceled, most urgent first.
func (d *DB) ActiveIncidents(ctx context.Context) ([]core.Incident, error) {
	var docs []string
	if err := d.db.SelectContext(ctx, &docs, "SELECT doc FROM incidents WHERE active ORDER BY priority, key LIMIT 200"); err != nil {
		return nil, fmt.Errorf("list active incidents: %w", translate(err))
	}
	out := make([]core.Incident, 0, len(docs))
	for _, doc := range docs {
		var in core.Incident
		if err := json.Unmarshal([]byte(doc), &in); err != nil {
			return nil, fmt.Errorf("decode incident: %w", err)
		}
		out = append(out, in)
	}
	return out, nil
}
