package store

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// awkwardDecision is a decision whose every kind of field holds s, at t:
// the shapes mustJSON encodes on the gate's path.
func awkwardDecision(s string, t time.Time, n int) core.GateDecision {
	end := t.Add(time.Duration(n) * time.Hour)
	req := core.GateRequest{Service: s, Environment: "production", Version: s, Commit: s, Team: s,
		Changes: []string{s, "CHG1"}, Incidents: []string{s}, Actor: s,
		Pipeline: &core.Pipeline{Provider: s, RunID: s, URL: "https://ci.example/" + s}}
	return core.GateDecision{
		ID: s, ReleaseID: s, Decision: core.Wait, PolicyVersion: n, EvaluatedAt: t, Emergency: n%2 == 0,
		Reasons: []core.Reason{{Code: core.CodeIncidentBlock, Message: s, Ref: s, Result: core.Wait}},
		Request: req,
		Facts: &core.Facts{
			Request: req, ReleaseID: s,
			Changes: map[string]core.Change{s: {Source: s, Key: s, Title: s, Type: core.ChangeNormal, State: s,
				Approval: core.ApprovalApproved, Approvals: []core.Approval{{Approver: s, Decision: core.ApprovalState(s), At: &t, Comment: s}, {Approver: s}},
				PlannedStart: &t, PlannedEnd: &end, Services: []string{s}, SourceUpdatedAt: t}, "CHG1": {}},
			Incidents:   []core.Incident{{Source: s, Key: s, Title: s, Priority: n, Major: true, State: s, Services: []string{s}, OpenedAt: &t, SourceUpdatedAt: end, FixChanges: []string{s}}},
			PendingPIRs: []core.PIR{{ReleaseID: s, Service: s, Team: s, RequiredAt: t}},
		},
	}
}

// TestMustJSONMatchesEncodingJSON: mustJSON's encoder writes what
// encoding/json writes, for the values the store encodes, including
// HTML characters, line and paragraph separators, control characters,
// invalid UTF-8, zones and nanoseconds, nil and empty collections.
func TestMustJSONMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 3, 29, 2, 30, 0, 123456789, time.FixedZone("CEST", 2*3600))
	values := map[string]any{
		"empty decision": core.GateDecision{},
		"empty facts":    core.GateDecision{Facts: &core.Facts{}},
		"audit data": struct {
			DecisionID string   `json:"decision_id"`
			Reasons    []string `json:"reasons"`
		}{"x", nil},
		"string list": []string{},
		"raw message": json.RawMessage(`{"a": [1, 2]}`),
	}
	for name, s := range map[string]string{
		"plain": "svc-1", "html": `<script>&"'</script>`, "separators": "a\u2028b\u2029c",
		"controls": "\x00\x01\t\n\r\x1f\x7f", "invalid UTF-8": "a\xffb\xc3(", "non-ASCII": "ünïcode ✓ 🚀", "backslashes": `\\"\u0041`,
	} {
		values[name] = awkwardDecision(s, at, len(s))
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			want, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustJSON(v); got != string(want) {
				t.Fatalf("mustJSON:      %s\nencoding/json: %s", got, want)
			}
		})
	}
}

func FuzzMustJSON(f *testing.F) {
	f.Add("svc", int64(0), 1)
	f.Add(`<&>"\`, int64(1774744200123456789), -3)
	f.Add("a\xff\u2028\x00", int64(-62135596800), 1<<40)
	f.Fuzz(func(t *testing.T, s string, nanos int64, n int) {
		v := awkwardDecision(s, time.Unix(0, nanos).In(time.FixedZone("X", n%50400)), n)
		want, err := json.Marshal(v)
		if err != nil {
			t.Skip(err) // a time encoding/json refuses (year outside 0–9999)
		}
		if got := mustJSON(v); got != string(want) {
			t.Fatalf("mustJSON:      %s\nencoding/json: %s", got, want)
		}
	})
}

// BenchmarkMustJSON encodes a decision document as the gate stores it,
// with mustJSON and with encoding/json.
func BenchmarkMustJSON(b *testing.B) {
	d := awkwardDecision("svc-042", time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), 3)
	for i := range 4 { // a few more incidents and changes, as in the load run's documents
		k := fmt.Sprintf("CHG%07d", i)
		d.Facts.Changes[k] = d.Facts.Changes["svc-042"]
		d.Facts.Incidents = append(d.Facts.Incidents, d.Facts.Incidents[0])
	}
	b.Run("mustJSON", func(b *testing.B) {
		b.SetBytes(int64(len(mustJSON(d))))
		b.ReportAllocs()
		for b.Loop() {
			_ = mustJSON(d)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(d); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestParseListMatchesEncodingJSON holds parseList's fast path to
// encoding/json's answer: the same list, or an error for both.
func TestParseListMatchesEncodingJSON(t *testing.T) {
	for _, s := range listShapes {
		checkParseList(t, s)
	}
}

var listShapes = []string{
	`["CHG-1"]`, `["a", "b"]`, `["a","b"]`, `[ "a" , "b" ]`, `[""]`, "[\n\"a\"\t]", `[ ]`,
	`["a\"b"]`, `["\u00e9"]`, `["é"]`, `["a",]`, `[,"a"]`, `["a" "b"]`, `["a"`, `"a"]`, `[1]`,
	`["a", 1]`, `[null]`, `["a"]]`, `[["a"]]`, "[\"a\x01\"]", `{"a":1}`, ` ["a"]`, `["a"] `,
}

func checkParseList(t *testing.T, s string) {
	t.Helper()
	if s == "" { // an empty column is an empty list, by design
		return
	}
	got, err := parseList(s)
	var want []string
	werr := json.Unmarshal([]byte(s), &want)
	if (err != nil) != (werr != nil) {
		t.Fatalf("parseList(%q) error %v; encoding/json %v", s, err, werr)
	}
	if err == nil && (fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(want)) {
		t.Fatalf("parseList(%q) = %q; encoding/json %q", s, got, want)
	}
}

func FuzzParseList(f *testing.F) {
	for _, s := range listShapes {
		f.Add(s)
	}
	f.Fuzz(checkParseList)
}
