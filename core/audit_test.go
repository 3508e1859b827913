package core

import (
	"bytes"
	"encoding/json"
	"strings"
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

// compactDataByCompact is compactData without its fast path: what the
// hash has always covered.
func compactDataByCompact(data json.RawMessage) string {
	var b bytes.Buffer
	if len(data) > 0 {
		if err := json.Compact(&b, data); err != nil {
			return string(data)
		}
	}
	return b.String()
}

func TestCompactDataSkipsOnlyWhatCompactKeeps(t *testing.T) {
	for _, data := range []string{
		"", `{}`, `{"a":1}`, `{"a": 1}`, "{\n\t\"a\":[1,2]\r}", `{"s":"x y"}`, `{"h":"<&>"}`, "{\"u\":\"\u2028\u2029\"}",
		`{"e":"\u003c\n"}`, `not json`, `{"a":1}}`, `{"a":`, "\"\xff\"", `[1,2,3]`, `"str"`, `1e3`, `{"a":1} `,
	} {
		if got, want := compactData(json.RawMessage(data)), compactDataByCompact(json.RawMessage(data)); got != want {
			t.Errorf("compactData(%q) = %q, want %q", data, got, want)
		}
	}
}

func FuzzCompactData(f *testing.F) {
	f.Add([]byte(`{"decision_id":"x","reasons":["NO_CHANGE"],"policy_version":1}`))
	f.Add([]byte("{\"a\" :\n [1, 2] }"))
	f.Add([]byte("\"\u2028<>\xff\""))
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := compactData(data), compactDataByCompact(data); got != want {
			t.Fatalf("compactData(%q) = %q, want %q", data, got, want)
		}
	})
}

// TestCheckDecisionEntry: a decision entry holds its stored decision by
// decision, release and document hash; entries from before the hash was
// recorded are held by decision and release alone.
func TestCheckDecisionEntry(t *testing.T) {
	doc := `{"id":"d1","decision":"deny"}`
	entry := func(data DecisionAuditData) AuditEntry {
		b, _ := json.Marshal(data)
		return AuditEntry{Seq: 7, Action: ActionGateDecision, Subject: "release:r1", Data: b}
	}
	withHash := entry(DecisionAuditData{DecisionID: "d1", Decision: Deny, DocSHA256: DecisionDocSHA256([]byte(doc))})
	legacy := entry(DecisionAuditData{DecisionID: "d1", Decision: Deny})
	stored := StoredDecision{ID: "d1", ReleaseID: "r1", Decision: "deny", Doc: doc}
	edit := func(f func(*StoredDecision)) *StoredDecision { d := stored; f(&d); return &d }
	for _, tc := range []struct {
		name   string
		e      AuditEntry
		d      *StoredDecision
		reason string // "" when they agree
	}{
		{"agree", withHash, &stored, ""},
		{"missing", withHash, nil, "missing"},
		{"decision flipped", withHash, edit(func(d *StoredDecision) { d.Decision = "allow" }), `says "allow"`},
		{"document edited", withHash, edit(func(d *StoredDecision) { d.Doc = `{"id":"d1","decision":"allow"}` }), "document does not match"},
		{"other release", withHash, edit(func(d *StoredDecision) { d.ReleaseID = "r2" }), "names release r2"},
		{"legacy entry, document not covered", legacy, edit(func(d *StoredDecision) { d.Doc = "{}" }), ""},
		{"legacy entry, decision flipped", legacy, edit(func(d *StoredDecision) { d.Decision = "allow" }), `says "allow"`},
		{"entry naming no decision", AuditEntry{Seq: 7, Action: ActionGateDecision, Data: []byte(`{}`)}, &stored, "names no decision"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brk := CheckDecisionEntry(tc.e, tc.d)
			switch {
			case tc.reason == "" && brk != nil:
				t.Fatalf("unexpected break %+v", brk)
			case tc.reason != "" && (brk == nil || brk.Seq != 7 || !strings.Contains(brk.Reason, tc.reason)):
				t.Fatalf("break %+v, want row 7 with %q", brk, tc.reason)
			}
		})
	}
}

// TestAuditAnchor: a walk must reach the expected head; the chain may
// grow past it.
func TestAuditAnchor(t *testing.T) {
	rows := []AuditEntry{{Seq: 1, Hash: "h1"}, {Seq: 2, Hash: "h2"}, {Seq: 3, Hash: "h3"}}
	walk := func(expect AuditHead, rows []AuditEntry) *AuditBreak {
		a := AuditAnchor{Expect: expect}
		for _, r := range rows {
			if brk := a.Check(r); brk != nil {
				return brk
			}
		}
		return a.End(int64(len(rows)))
	}
	for _, tc := range []struct {
		name   string
		expect AuditHead
		rows   []AuditEntry
		reason string
	}{
		{"no anchor", AuditHead{}, rows[:1], ""},
		{"reached", AuditHead{Seq: 2, Hash: "h2"}, rows, ""},
		{"reached by hash", AuditHead{Hash: "h3"}, rows, ""},
		{"genesis on an empty chain", AuditHead{Hash: GenesisHash}, nil, ""},
		{"cut short", AuditHead{Seq: 3, Hash: "h3"}, rows[:2], "ends at row 2, before the expected head at row 3"},
		{"cut short, hash only", AuditHead{Hash: "h3"}, rows[:2], "no row has the expected head hash"},
		{"rewritten", AuditHead{Seq: 2, Hash: "other"}, rows, "row 2 has hash h2, not the expected head other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brk := walk(tc.expect, tc.rows)
			if (tc.reason == "") != (brk == nil) || (brk != nil && !strings.Contains(brk.Reason, tc.reason)) {
				t.Fatalf("break %+v, want %q", brk, tc.reason)
			}
		})
	}
}

// TestActorTokenID: the token id reads back from every actor TokenActor
// writes, whatever the name holds, and from no other actor.
func TestActorTokenID(t *testing.T) {
	for _, name := range []string{"alice", "", "a(b)", "x) via ui", "ci (prod)", "(", ")"} {
		tok := Token{ID: "01a2-id", Name: name}
		for _, channel := range []string{"", "ui"} {
			if got := ActorTokenID(TokenActor(tok, channel)); got != tok.ID {
				t.Errorf("ActorTokenID(%q) = %q, want %q", TokenActor(tok, channel), got, tok.ID)
			}
		}
	}
	for _, actor := range []string{"system", "anonymous", "token:", "token:alice", "carla", "connector:servicenow"} {
		if got := ActorTokenID(actor); got != "" {
			t.Errorf("ActorTokenID(%q) = %q, want none", actor, got)
		}
	}
}
