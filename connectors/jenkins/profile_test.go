package jenkins_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config/mappings"
	"github.com/tollgate-dev/tollgate/connectors/jenkins"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/mapping"
)

// current is the current Notification plugin's message as its model
// serialises it (gson, lower_case_with_underscores; JobState, BuildState,
// ScmState @ jenkinsci/notification-plugin 720ea449, see
// shared/fixtures/SOURCES.md): hand-written from that model, since no
// published example of the current shape exists. build.timestamp is the
// phase's moment (JobListener @ 720ea449): for STARTED the start, for
// COMPLETED the start plus the duration, for FINALIZED when it was
// finalized (here finalizeLag after it completed); build.duration is
// Run.getDuration, 0 until the build completes.
func current(phase, status string, params map[string]string, scm map[string]any) []byte {
	at, took := buildStart.UnixMilli(), buildTook.Milliseconds()
	switch phase {
	case "STARTED":
		took = 0
	case "COMPLETED":
		at += took
	case "FINALIZED":
		at += took + finalizeLag.Milliseconds()
	}
	build := map[string]any{
		"full_url": "https://ci.example.com/job/payments-api/412/", "number": 412, "queue_id": 90321,
		"timestamp": at, "duration": took, "phase": phase, "url": "job/payments-api/412/",
		"display_name": "#412", "scm": scm, "log": "", "notes": "", "artifacts": map[string]any{},
		"test_summary": map[string]any{"total": 0, "failed": 0, "passed": 0, "skipped": 0, "failed_tests": []string{}},
	}
	if status != "" {
		build["status"] = status
	}
	if params != nil {
		build["parameters"] = params
	}
	b, _ := json.Marshal(map[string]any{"name": "payments-api", "display_name": "payments-api", "url": "job/payments-api/", "build": build})
	return b
}

// buildStart is when current's build started, buildTook how long it ran,
// finalizeLag how long after it completed it was finalized.
var (
	buildStart  = time.UnixMilli(1767600000000).UTC()
	buildTook   = 93 * time.Second
	finalizeLag = 2 * time.Second
)

// TestBuiltInProfile runs Notification plugin messages through the
// connector and the built-in jenkins-build profile: the current plugin's
// build.scm.commit and build.parameters (SERVICE, ENVIRONMENT, VERSION,
// CHANGE_KEY/CHANGES/CHANGE, empty ones absent), the build's start as
// started_at whichever phase tells it (the phase's timestamp less the
// build's duration: a COMPLETED or FINALIZED message is not judged at its
// end) and, for COMPLETED, its timestamp as finished_at; the wiki's old
// shape still maps.
func TestBuiltInProfile(t *testing.T) {
	profiles, err := mapping.LoadDir(mappings.FS)
	if err != nil {
		t.Fatal(err)
	}
	set := mapping.NewSet(profiles...)
	commit := map[string]any{"url": "https://git.example.com/payments.git", "branch": "origin/main",
		"commit": "c6d86dc654b12425e706bcf951adfe5a8627a517", "changes": []string{"src/app.go"}, "culprits": []string{"alice"}}
	at, end := buildStart, buildStart.Add(buildTook)
	wiki, err := os.ReadFile(filepath.Join("testdata", "notification-plugin.job_completed.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		body     []byte
		want     core.Deployment
		finished bool
	}{
		{"completed, parameters and commit", current("COMPLETED", "SUCCESS",
			map[string]string{"ENVIRONMENT": "production", "CHANGE_KEY": "CHG0030001", "VERSION": ""}, commit),
			core.Deployment{Service: "payments-api", Environment: "production", Version: "c6d86dc654b12425e706bcf951adfe5a8627a517",
				Commit: "c6d86dc654b12425e706bcf951adfe5a8627a517", Status: "succeeded", StartedAt: at, Changes: []string{"CHG0030001"},
				Provider: "jenkins", RunID: "job/payments-api/412/", URL: "https://ci.example.com/job/payments-api/412/"}, true},
		{"started before the checkout: no commit yet, empty parameters", current("STARTED", "",
			map[string]string{"CHANGE_KEY": "", "CHANGES": ""}, map[string]any{}),
			core.Deployment{Service: "payments-api", Version: "412", Status: "started", StartedAt: at,
				Provider: "jenkins", RunID: "job/payments-api/412/", URL: "https://ci.example.com/job/payments-api/412/"}, false},
		{"completed, its STARTED message lost", current("COMPLETED", "FAILURE", nil, commit),
			core.Deployment{Service: "payments-api", Version: "c6d86dc654b12425e706bcf951adfe5a8627a517",
				Commit: "c6d86dc654b12425e706bcf951adfe5a8627a517", Status: "failed", StartedAt: at,
				Provider: "jenkins", RunID: "job/payments-api/412/", URL: "https://ci.example.com/job/payments-api/412/"}, true},
		{"multibranch job named after its branch, SERVICE and CHANGES parameters", func() []byte {
			var m map[string]any
			_ = json.Unmarshal(current("FINALIZED", "FAILURE",
				map[string]string{"SERVICE": " Payments-API ", "VERSION": "1.4.2", "CHANGES": "CHG0030001, CHG0030002"}, commit), &m)
			m["name"] = "main"
			b, _ := json.Marshal(m)
			return b
		}(), core.Deployment{Service: "payments-api", Version: "1.4.2", Commit: "c6d86dc654b12425e706bcf951adfe5a8627a517",
			Status: "failed", StartedAt: at.Add(finalizeLag), Changes: []string{"CHG0030001", "CHG0030002"},
			Provider: "jenkins", RunID: "job/payments-api/412/", URL: "https://ci.example.com/job/payments-api/412/"}, false},
		{"wiki example (old shape, no timestamp)", wiki,
			core.Deployment{Service: "asgard", Version: "c6d86dc654b12425e706bcf951adfe5a8627a517",
				Commit: "c6d86dc654b12425e706bcf951adfe5a8627a517", Status: "succeeded",
				Provider: "jenkins", RunID: "job/asgard/18/", URL: "http://localhost:8080/job/asgard/18/"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := jenkins.Classify(nil, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			c, ok := set.Select(jenkins.Type, in.Type, tc.body)
			if !ok || c.Name() != "jenkins-build" {
				t.Fatalf("phase %s: no jenkins-build profile", in.Type)
			}
			res := c.Apply(tc.body)
			if len(res.Errors) > 0 {
				t.Fatalf("mapping errors: %v", res.Errors)
			}
			got := *res.Record.(*core.Deployment)
			if (got.FinishedAt != nil) != tc.finished || (got.FinishedAt != nil && !got.FinishedAt.Equal(end)) {
				t.Fatalf("finished_at %v, want set: %v", got.FinishedAt, tc.finished)
			}
			got.FinishedAt = nil
			if !got.StartedAt.Equal(tc.want.StartedAt) || !slices.Equal(got.Changes, tc.want.Changes) {
				t.Fatalf("got started %v changes %q; want %v %q", got.StartedAt, got.Changes, tc.want.StartedAt, tc.want.Changes)
			}
			got.StartedAt, got.Changes, tc.want.StartedAt, tc.want.Changes = time.Time{}, nil, time.Time{}, nil
			if got.Service != tc.want.Service || got.Environment != tc.want.Environment || got.Version != tc.want.Version ||
				got.Commit != tc.want.Commit || got.Status != tc.want.Status || got.Provider != tc.want.Provider ||
				got.RunID != tc.want.RunID || got.URL != tc.want.URL {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
