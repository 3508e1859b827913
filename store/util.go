package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	segjson "github.com/segmentio/encoding/json"
)

// newID returns a new time-ordered identifier (UUIDv7), so ids sort by
// creation time and make good page cursors.
func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// now returns the store clock's time in UTC, truncated to microseconds (what
// both databases keep), so values read back compare equal.
func (d *DB) now() time.Time { return ts(d.clock.Now()) }

// ts normalizes a time for storage: UTC, microseconds.
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// tsp normalizes an optional time.
func tsp(t *time.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	v := ts(*t)
	return &v
}

// mustJSON encodes v; the values stored are tollgate's own types, which
// always encode. It uses segmentio/encoding's json, whose output is
// encoding/json's byte for byte (TestMustJSONMatchesEncodingJSON,
// FuzzMustJSON) in much less time: the gate's path encodes every
// decision document (figures in docs/benchmarks.md).
func mustJSON(v any) string { return string(mustJSONBytes(v)) }

// mustJSONBytes is mustJSON's encoding as bytes.
func mustJSONBytes(v any) []byte {
	b, err := segjson.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("store: encode %T: %v", v, err))
	}
	return b
}

// decodeDoc decodes a document the store wrote (a change's, an
// incident's) with segmentio/encoding's json, to what encoding/json
// decodes (TestDecodeDocMatchesEncodingJSON) in less time: the gate's
// facts are decoded from these on every fact-cache miss.
func decodeDoc(b []byte, v any) error { return segjson.Unmarshal(b, v) }

// strList encodes a string slice as a JSON array ("[]" for nil).
func strList(v []string) string {
	if len(v) == 0 {
		return "[]"
	}
	return mustJSON(v)
}

// parseList decodes a JSON array column.
func parseList(s string) ([]string, error) {
	if s == "" || s == "[]" || s == "null" {
		return nil, nil
	}
	if v, ok := parsePlainList(s); ok {
		return v, nil
	}
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("decode list column: %w", err)
	}
	return v, nil
}

// parsePlainList decodes the shape list columns almost always hold, a JSON
// array of strings without escapes (["CHG-1"], PostgreSQL's ["a", "b"]),
// without the reflection of encoding/json: the reconciler decodes two
// lists per deployment. ok is false for anything else (escapes, other
// value types, malformed text), which parseList then hands to
// encoding/json, so both paths accept and refuse the same input.
func parsePlainList(s string) (v []string, ok bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' || strings.IndexByte(s, '\\') >= 0 {
		return nil, false
	}
	rest := trimJSONSpace(s[1 : len(s)-1])
	if rest == "" {
		return nil, true
	}
	for {
		if len(rest) == 0 || rest[0] != '"' {
			return nil, false
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return nil, false
		}
		item := rest[1 : 1+end]
		for i := 0; i < len(item); i++ {
			if item[i] < 0x20 || item[i] >= 0x80 { // control characters are invalid; non-ASCII needs UTF-8 checks
				return nil, false
			}
		}
		v = append(v, item)
		rest = trimJSONSpace(rest[2+end:])
		if rest == "" {
			return v, true
		}
		if rest[0] != ',' {
			return nil, false
		}
		rest = trimJSONSpace(rest[1:])
	}
}

// trimJSONSpace trims JSON's insignificant whitespace.
func trimJSONSpace(s string) string { return strings.Trim(s, " \t\n\r") }

// q rebinds a query written with ? placeholders for the dialect.
func (d *DB) q(query string) string { return d.db.Rebind(query) }

// tx runs fn in a transaction, committing when fn returns nil. Driver
// errors come back translated.
func (d *DB) tx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := d.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", translate(err))
	}
	committed := false
	defer func() { d.txEnded(tx, committed) }()
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return translate(err)
	}
	committed = true
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", translate(err))
	}
	return nil
}

// execTx runs a hot statement of a transaction prepared (once per
// connection, stmtcache), or, until it is prepared, as text. query is
// already rebound (d.q).
func (d *DB) execTx(ctx context.Context, tx *sqlx.Tx, query string, args ...any) (sql.Result, error) {
	if st := d.stmts.InTx(ctx, tx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// queryRowTx is execTx for a statement returning one row.
func (d *DB) queryRowTx(ctx context.Context, tx *sqlx.Tx, query string, args ...any) *sqlx.Row {
	if st := d.stmts.InTx(ctx, tx, query); st != nil {
		return st.QueryRowxContext(ctx, args...)
	}
	return tx.QueryRowxContext(ctx, query, args...)
}

// nullTime converts an optional time for a nullable column.
func nullTime(t *time.Time) sql.NullTime {
	if t == nil {
		return sql.NullTime{}
	}
	return sql.NullTime{Time: ts(*t), Valid: true}
}

// timePtr converts a nullable column back.
func timePtr(n sql.NullTime) *time.Time {
	if !n.Valid {
		return nil
	}
	t := n.Time.UTC()
	return &t
}

// txTopics remembers the topics a transaction announced (notifyTx), so
// the fact cache can drop them, and SQLite's subscribers be woken, when the
// transaction ends in this process (read-your-writes, without waiting for
// the NOTIFY to come back).
type txTopics struct {
	mu sync.Mutex
	m  map[*sqlx.Tx][]string
}

func (t *txTopics) add(tx *sqlx.Tx, topic string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[*sqlx.Tx][]string{}
	}
	t.m[tx] = append(t.m[tx], topic)
}

func (t *txTopics) take(tx *sqlx.Tx) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	topics := t.m[tx]
	delete(t.m, tx)
	return topics
}

// txEnded drops from the cache what tx announced, whether it committed or
// not (dropping too much only costs a read), then, if a commit was
// attempted (its outcome may be unknown: a spurious wake-up costs a
// re-check, a lost one a waiter), wakes the subscribers (announceEnded).
func (d *DB) txEnded(tx *sqlx.Tx, committed bool) {
	topics := d.txTopics.take(tx)
	for _, topic := range topics {
		d.facts.Invalidate(topic)
	}
	if committed {
		d.announceEnded(topics)
	}
}
