package mapping_test

import (
	"testing"
)

// BenchmarkApplyServiceNowChange maps the ServiceNow Change Management API
// record CHG0000024 (12.9 kB, {display_value,value} pairs in a {"result"}
// envelope) through the default servicenow-change profile: JSON
// validation, envelope unwrapping, 17 fields with fallbacks, maps and time
// parsing, traces. Run: go test -bench . -benchmem -cpu 1 ./mapping/
func BenchmarkApplyServiceNowChange(b *testing.B) {
	set := defaultSet(b)
	c, ok := set.Get("servicenow-change")
	if !ok {
		b.Fatal("no servicenow-change profile")
	}
	payload := fixture(b, "servicenow/sn_chg_rest.get_change.response.json")
	if res := c.Apply(payload); len(res.Errors) > 0 {
		b.Fatal(errString(res))
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		_ = c.Apply(payload)
	}
}

// BenchmarkSelectAndApplyGitHubDeploymentStatus is the whole normalize step
// for a GitHub deployment_status delivery: select among all default
// profiles, then apply.
func BenchmarkSelectAndApplyGitHubDeploymentStatus(b *testing.B) {
	set := defaultSet(b)
	payload := fixture(b, "github/deployment_status.created.json")
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		c, ok := set.Select("github", "deployment_status", payload)
		if !ok {
			b.Fatal("no match")
		}
		_ = c.Apply(payload)
	}
}
