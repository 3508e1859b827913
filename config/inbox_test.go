package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// The source-authority and inbox keys: defaults, grants, and every bad
// value named by its field.
func TestInboxAndRecordsKeys(t *testing.T) {
	c, err := Parse(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Inbox.MaxAttempts != 5 || c.Inbox.MaxFutureSkew.D() != 5*time.Minute {
		t.Fatalf("defaults: max_attempts %d, max_future_skew %v", c.Inbox.MaxAttempts, c.Inbox.MaxFutureSkew.D())
	}
	if !c.Inbox.Normalizes() {
		t.Fatal("inbox.normalize defaults to false")
	}
	c, err = Parse([]byte("database_url: postgres://db/tollgate\ninbox:\n  normalize: false\n"), env(nil))
	if err != nil || c.Inbox.Normalizes() {
		t.Fatalf("normalize: false on PostgreSQL: %v, %v", err, c != nil && c.Inbox.Normalizes())
	}
	c, err = Parse([]byte("inbox:\n  max_attempts: 9\n  max_future_skew: 30s\nconnectors:\n  - {name: itsm, type: generic, webhook_secret: 0123456789abcdef, records: [changes, incidents]}\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Inbox.MaxAttempts != 9 || c.Inbox.MaxFutureSkew.D() != 30*time.Second || !slices.Equal(c.Connectors[0].Records, []string{"changes", "incidents"}) {
		t.Fatalf("parsed: %+v %+v", c.Inbox, c.Connectors[0])
	}
	for _, tt := range []struct{ src, want string }{
		{"connectors:\n  - {name: a, type: generic, webhook_secret: 0123456789abcdef, records: [approvals]}\n", `connectors[0].records[0]: "approvals" is not a record kind`},
		{"connectors:\n  - {name: a, type: generic, webhook_secret: 0123456789abcdef, records: [changes, changes]}\n", "connectors[0].records[1]"},
		{"inbox:\n  max_attempts: -1\n", "inbox.max_attempts"},
		{"inbox:\n  max_future_skew: 100ms\n", "inbox.max_future_skew"},
		{"inbox:\n  max_future_skew: 48h\n", "inbox.max_future_skew"},
		{"inbox:\n  normalize: false\n", "inbox.normalize: false needs PostgreSQL"},
		{"database_url: sqlite:/tmp/x.db\ninbox:\n  normalize: false\n", "inbox.normalize"},
	} {
		if _, err := Parse([]byte(tt.src), env(nil)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error containing %q", tt.src, err, tt.want)
		}
	}
}
