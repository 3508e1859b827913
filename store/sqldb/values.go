package sqldb

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	segjson "github.com/segmentio/encoding/json"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/jsonenc"
)

// NewID returns a new time-ordered identifier (UUIDv7), so ids sort by
// creation time and make good page cursors.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// TS normalizes a time for storage: UTC, microseconds.
func TS(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// TSP normalizes an optional time.
func TSP(t *time.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	v := TS(*t)
	return &v
}

// MustJSON encodes v; the values stored are tollgate's own types, which
// always encode. It uses segmentio/encoding's json through
// internal/jsonenc, whose output is the build's encoding/json's byte for
// byte (TestMustJSONMatchesEncodingJSON, FuzzMustJSON) in much less time:
// the gate's path encodes every decision document (figures in
// docs/benchmarks.md).
func MustJSON(v any) string { return string(MustJSONBytes(v)) }

// MustJSONBytes is MustJSON's encoding as bytes.
func MustJSONBytes(v any) []byte {
	b, err := jsonenc.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("store: encode %T: %v", v, err))
	}
	return b
}

// DecodeDoc decodes a document the store wrote (a change's, an
// incident's) with segmentio/encoding's json, to what encoding/json
// decodes (TestDecodeDocMatchesEncodingJSON) in less time: the gate's
// facts are decoded from these on every fact-cache miss.
func DecodeDoc(b []byte, v any) error { return segjson.Unmarshal(b, v) }

// StrList encodes a string slice as a JSON array ("[]" for nil).
func StrList(v []string) string {
	if len(v) == 0 {
		return "[]"
	}
	return MustJSON(v)
}

// ParseList decodes a JSON array column.
func ParseList(s string) ([]string, error) {
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
// value types, malformed text), which ParseList then hands to
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

// NullTime converts an optional time for a nullable column.
func NullTime(t *time.Time) sql.NullTime {
	if t == nil {
		return sql.NullTime{}
	}
	return sql.NullTime{Time: TS(*t), Valid: true}
}

// TimePtr converts a nullable column back.
func TimePtr(n sql.NullTime) *time.Time {
	if !n.Valid {
		return nil
	}
	t := n.Time.UTC()
	return &t
}

// AnyTime scans a nullable time that a driver may deliver as time.Time or,
// from an SQLite expression column, as text in the format the SQLite driver
// writes (time.Time.String) or RFC 3339.
type AnyTime struct {
	Time  time.Time
	Valid bool
}

// timeLayouts are the text forms AnyTime accepts.
var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999 -0700 MST",
	"2006-01-02 15:04:05.999999999-07:00",
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999",
}

// Scan implements sql.Scanner.
func (t *AnyTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*t = AnyTime{}
		return nil
	case time.Time:
		*t = AnyTime{Time: v.UTC(), Valid: true}
		return nil
	case []byte:
		return t.parse(string(v))
	case string:
		return t.parse(v)
	}
	return fmt.Errorf("scan time: unsupported type %T", v)
}

// Ptr is the time, or nil when it is NULL.
func (t AnyTime) Ptr() *time.Time {
	if !t.Valid {
		return nil
	}
	v := t.Time
	return &v
}

func (t *AnyTime) parse(s string) error {
	// time.Time.String may append a monotonic clock reading.
	if i := strings.Index(s, " m="); i >= 0 {
		s = s[:i]
	}
	for _, layout := range timeLayouts {
		if v, err := time.Parse(layout, s); err == nil {
			*t = AnyTime{Time: v.UTC(), Valid: true}
			return nil
		}
	}
	return fmt.Errorf("scan time: unrecognized format %q", s)
}

// Ran is the " AND …" clause keeping the deployments (alias) that left
// their CI's queue: a queued run has not touched its environment, so no
// report judges it or counts it as deployed (core.DeployQueued).
func Ran(alias string) string {
	return " AND " + alias + ".status <> '" + core.DeployQueued + "'"
}

// RecordedLate is the " AND …" clause (and its arguments) narrowing
// deployments (alias) to a schedule's late arrivals (q.RecordedAfter,
// q.UncoveredFrom): recorded after RecordedAfter, or started at or after
// UncoveredFrom whenever recorded. Nothing when RecordedAfter is zero.
func RecordedLate(alias string, q core.ReconcileQuery) (string, []any) {
	switch {
	case q.RecordedAfter.IsZero():
		return "", nil
	case q.UncoveredFrom.IsZero():
		return " AND " + alias + ".created_at > ?", []any{TS(q.RecordedAfter)}
	}
	return " AND (" + alias + ".created_at > ? OR " + alias + ".started_at >= ?)", []any{TS(q.RecordedAfter), TS(q.UncoveredFrom)}
}

// ScopeFilter is the " AND …" clauses (and their arguments) narrowing rows
// of alias to a report's scope: the environment as stored (canonical, the
// policy's names), service and team as names, in any case (they are
// stored as reported). The reconciler's scan and the stored verdicts
// narrow alike with it, so a report reads the same either way.
func ScopeFilter(alias, environment, service, team string) (string, []any) {
	var b strings.Builder
	var args []any
	if v := strings.TrimSpace(environment); v != "" {
		b.WriteString(" AND " + alias + ".environment = ?")
		args = append(args, v)
	}
	for _, f := range []struct{ col, v string }{{"service", service}, {"team", team}} {
		if v := strings.TrimSpace(f.v); v != "" {
			b.WriteString(" AND lower(" + alias + "." + f.col + ") = ?")
			args = append(args, strings.ToLower(v))
		}
	}
	return b.String(), args
}
