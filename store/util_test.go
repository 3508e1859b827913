package store

import (
	"encoding/json"
	"fmt"
	"reflect"
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
			if d, ok := v.(core.GateDecision); ok {
				var buf []byte
				if doc, sum := encodeDecision(&buf, d); doc != string(want) || sum != core.DecisionDocSHA256(want) {
					t.Fatalf("encodeDecision: %s %s\nencoding/json: %s", doc, sum, want)
				}
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
	b.Run("encodeDecision", func(b *testing.B) { // the document and its hash, as SaveDecision
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			_, _ = encodeDecision(&buf, d)
		}
	})
	b.Run("mustJSON+hash", func(b *testing.B) { // what encodeDecision did before its buffer
		b.ReportAllocs()
		for b.Loop() {
			doc := mustJSONBytes(d)
			_, _ = string(doc), core.DecisionDocSHA256(doc)
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

// TestDecodeDocMatchesEncodingJSON: decodeDoc reads the documents the
// store writes (as written, and as PostgreSQL's jsonb gives them back,
// spaced and with keys reordered) to what encoding/json reads.
func TestDecodeDocMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 3, 29, 2, 30, 0, 123456789, time.FixedZone("CEST", 2*3600))
	for _, s := range []string{"svc-1", `<script>&"'</script>`, "a\u2028b\u2029c", "\x00\x01\t\n\r\x1f\x7f",
		"a\xffb\xc3(", "ünïcode ✓ 🚀", `\\"\u0041`, ""} {
		f := awkwardDecision(s, at, len(s)).Facts
		checkDecodeDoc(t, f.Changes[s])
		checkDecodeDoc(t, f.Changes["CHG1"])
		checkDecodeDoc(t, f.Incidents[0])
		checkDecodeDoc(t, core.Incident{})
	}
	for _, doc := range []string{ // jsonb's text form; null, and fields no longer in the type
		`{"key": "CHG1", "risk": "moderate", "type": "normal", "state": "scheduled", "source": "servicenow", "approval": "approved", "approvals": [{"at": "2026-01-01T09:00:00Z", "approver": "cab-1", "decision": "approved"}], "planned_end": "2026-02-01T00:00:00Z", "planned_start": null, "services": ["svc-1"], "old_field": {"a": [1, 2.5e3, true]}, "source_updated_at": "2026-01-01T09:00:00+01:00"}`,
		`{"key": "INC1", "major": true, "state": "open", "global": false, "priority": 1, "services": [], "opened_at": "2026-01-01T09:00:00.5Z", "fix_changes": null}`,
	} {
		var c1, c2 core.Change
		var i1, i2 core.Incident
		if err := decodeDoc([]byte(doc), &c1); err != nil || json.Unmarshal([]byte(doc), &c2) != nil || !reflect.DeepEqual(c1, c2) {
			t.Errorf("change %s: decodeDoc %#v (%v), encoding/json %#v", doc, c1, err, c2)
		}
		if err := decodeDoc([]byte(doc), &i1); err != nil || json.Unmarshal([]byte(doc), &i2) != nil || !reflect.DeepEqual(i1, i2) {
			t.Errorf("incident %s: decodeDoc %#v (%v), encoding/json %#v", doc, i1, err, i2)
		}
	}
}

// checkDecodeDoc encodes v as the store does and decodes it both ways.
func checkDecodeDoc[T any](t *testing.T, v T) {
	t.Helper()
	doc := mustJSONBytes(v)
	var got, want T
	if err := decodeDoc(doc, &got); err != nil {
		t.Fatalf("decodeDoc %s: %v", doc, err)
	}
	if err := json.Unmarshal(doc, &want); err != nil {
		t.Fatalf("encoding/json %s: %v", doc, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\ndecodeDoc     %#v\nencoding/json %#v", doc, got, want)
	}
}

// BenchmarkDecodeDoc decodes a change document as a fact-cache miss does,
// with decodeDoc and with encoding/json.
func BenchmarkDecodeDoc(b *testing.B) {
	doc := []byte(`{"key": "CHG0000042", "risk": "moderate", "type": "normal", "state": "scheduled", "source": "servicenow", "approval": "approved", "approvals": [{"at": "2026-01-01T09:00:00Z", "approver": "cab-0", "decision": "approved"}], "services": ["svc-42"], "planned_end": "2026-12-31T10:00:00Z", "requested_by": "dev-9", "planned_start": "2026-12-01T10:00:00Z", "has_backout_plan": true, "source_updated_at": "2026-01-01T09:00:00Z", "has_risk_assessment": true}`)
	for name, decode := range map[string]func([]byte, any) error{"decodeDoc": decodeDoc, "encoding-json": json.Unmarshal} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var c core.Change
				if err := decode(doc, &c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
