package mapping_test

import (
	"testing"

	"github.com/tollgate-dev/tollgate/mapping"
)

// reportCPU adds cpu-ns/op: the process's CPU time per iteration. On a
// loaded machine ns/op (wall time) includes time the benchmark waited for
// a CPU; cpu-ns/op is what one mapping costs a core (GC included). It is 0
// where the CPU time is not available.
func reportCPU(b *testing.B, loop func()) {
	b.Helper()
	start, n := cpuTime(), 0
	for b.Loop() {
		loop()
		n++
	}
	if used := cpuTime() - start; used > 0 && n > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(n), "cpu-ns/op")
	}
}

// BenchmarkApplyServiceNowChange maps the ServiceNow Change Management API
// record CHG0000024 (12.9 kB, {display_value,value} pairs in a {"result"}
// envelope) through the default servicenow-change profile: JSON
// validation, envelope unwrapping, 17 fields with fallbacks, maps and time
// parsing, traces. Run: go test -bench . -benchmem -cpu 1 ./mapping/
func BenchmarkApplyServiceNowChange(b *testing.B) {
	benchServiceNowChange(b, (*mapping.Compiled).Apply)
}

// BenchmarkApplyFastServiceNowChange is BenchmarkApplyServiceNowChange
// without traces, as the normalizer maps events.
func BenchmarkApplyFastServiceNowChange(b *testing.B) {
	benchServiceNowChange(b, (*mapping.Compiled).ApplyFast)
}

func benchServiceNowChange(b *testing.B, apply func(*mapping.Compiled, []byte) mapping.Result) {
	set := defaultSet(b)
	c, ok := set.Get("servicenow-change")
	if !ok {
		b.Fatal("no servicenow-change profile")
	}
	payload := fixture(b, "servicenow/sn_chg_rest.get_change.response.json")
	if res := apply(c, payload); len(res.Errors) > 0 {
		b.Fatal(errString(res))
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	reportCPU(b, func() { _ = apply(c, payload) })
}

// BenchmarkSelectAndApplyGitHubDeploymentStatus is the whole normalize step
// for a GitHub deployment_status delivery: select among all default
// profiles, then apply.
func BenchmarkSelectAndApplyGitHubDeploymentStatus(b *testing.B) {
	set := defaultSet(b)
	payload := fixture(b, "github/deployment_status.created.json")
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	reportCPU(b, func() {
		c, ok := set.Select("github", "deployment_status", payload)
		if !ok {
			b.Fatal("no match")
		}
		_ = c.Apply(payload)
	})
}
