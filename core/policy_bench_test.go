package core

import (
	"encoding/json"
	"os"
	"testing"
	"time"
)

// BenchmarkEvaluate measures one gate evaluation with realistic facts: a
// production release of a customer-facing service linking 2 approved
// changes, with 3 active incidents (one major on another service, one minor
// on the service, one major the release fixes), 1 pending PIR of the team,
// and 2 freezes configured (neither active). The decision is wait (the PIR).
//
//	go test ./core -run '^$' -bench BenchmarkEvaluate -benchmem
func BenchmarkEvaluate(b *testing.B) {
	cp := mustCompile(b, testPolicy())
	f := goodFacts()
	f.Request.Changes = []string{"CHG1", "CHG2"}
	c2 := goodChange("CHG2")
	c2.Approvals = append(c2.Approvals, Approval{Approver: "cab-dave", Decision: ApprovalApproved})
	f.Changes["CHG2"] = c2
	minor := majorIncident("INC2", "checkout")
	minor.Priority = 3
	fixed := majorIncident("INC3", "checkout")
	fixed.FixChanges = []string{"CHG2"}
	f.Incidents = []Incident{majorIncident("INC1", "ledger"), minor, fixed}
	f.PendingPIRs = []PIR{{ReleaseID: "rel-3", Service: "checkout", Version: "1.2.2", Environment: "production", Team: "payments", Status: PIRPending}}
	now := wednesday

	if d := Evaluate(cp, f, now); d.Decision != Wait || len(d.Reasons) != 1 {
		b.Fatalf("unexpected decision %s %+v", d.Decision, d.Reasons)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = Evaluate(cp, f, now)
	}
}

// BenchmarkCompile measures compiling the example policy (done once per
// policy version, not per request).
func BenchmarkCompile(b *testing.B) {
	p := testPolicy()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(p, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzCompilePolicy checks that no policy document makes Compile, or an
// evaluation with the compiled result, panic or loop.
func FuzzCompilePolicy(f *testing.F) {
	seed, err := os.ReadFile("testdata/policy_example.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	def, _ := json.Marshal(DefaultPolicy())
	f.Add(def)
	f.Add([]byte(`{"environments":{"p":{"rules":["FREEZE"]}},"freezes":[{"name":"x","weekly":[{"days":["sun"],"start":"23:59","end":"00:00"}]}],"business_hours":{"days":["sat"],"start":"23:00","end":"24:00"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Policy
		if json.Unmarshal(data, &p) != nil {
			return
		}
		cp, err := Compile(p, 1)
		if err != nil {
			if !IsKind(err, KindInvalid) {
				t.Fatalf("Compile error of kind %s: %v", KindOf(err), err)
			}
			return
		}
		now := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
		for _, env := range append(cp.Environments(), "qa") {
			fa := goodFacts()
			fa.Request.Environment = env
			_ = Evaluate(cp, fa, now)
		}
		_ = cp.AddBusinessHours(now, 30*time.Hour)
		_ = cp.BusinessHoursBetween(now, now.AddDate(0, 1, 0))
	})
}
