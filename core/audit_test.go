package core

import (
	"encoding/json"
	"testing"
	"time"
)

// The hash format is persistent: chains written by earlier versions (and
// by PostgreSQL's tollgate_append_audit, migration 00006) must keep
// verifying. These values were computed by the original implementation.
func TestAuditHashFormatIsStable(t *testing.T) {
	at := time.Date(2026, 11, 27, 14, 5, 6, 123456789, time.FixedZone("x", 3600))
	tests := []struct {
		name    string
		entry   AuditEntry
		content string
		hash    string
	}{
		{
			name:    "compacted data, non-ASCII, quotes",
			entry:   AuditEntry{Seq: 1, At: at, Actor: "alice", Action: "gate.decision", Subject: "release:r1", Data: json.RawMessage(`{ "a" : [1, 2], "s": "é'\"\\" }`)},
			content: "1:1;27:2026-11-27T13:05:06.123456Z;5:alice;13:gate.decision;10:release:r1;25:{\"a\":[1,2],\"s\":\"é'\\\"\\\\\"};",
			hash:    "5f922d256493ceb0bc5459970dfa5870a75db9dd45abbf9c481d82b28da52f8c",
		},
		{
			name:    "empty fields, no data",
			entry:   AuditEntry{Seq: 1234567, At: at, Action: "policy.update"},
			content: "7:1234567;27:2026-11-27T13:05:06.123456Z;0:;13:policy.update;0:;0:;",
			hash:    "ba8101e415ce5222f5c2a3ebe1b18524725afed3af411df1c343d6fb1fe67be8",
		},
		{
			name:    "newline, multi-byte runes, data that is not JSON",
			entry:   AuditEntry{Seq: 42, At: at, Actor: "bob\nsmith", Action: "x", Subject: "ünïcode ✓", Data: json.RawMessage(`not json`)},
			content: "2:42;27:2026-11-27T13:05:06.123456Z;9:bob\nsmith;1:x;13:ünïcode ✓;8:not json;",
			hash:    "6313923ab9e8a86f7feb5ddd4bbb416cd3c90a20a1392cf08bbd7737224a9ac4",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(CanonicalAuditContent(tt.entry)); got != tt.content {
				t.Errorf("content = %q, want %q", got, tt.content)
			}
			if got := HashAuditEntry(GenesisHash, tt.entry); got != tt.hash {
				t.Errorf("hash = %s, want %s", got, tt.hash)
			}
		})
	}
}
