package jenkins

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config/mappings"
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/mapping"
)

// fakeJenkins is Jenkins's JSON API for two jobs, one in a folder, with
// Basic auth checked (the API token as the password).
func fakeJenkins(t *testing.T, status *int) *httptest.Server {
	at := func(hhmm string) int64 {
		ts, _ := time.Parse("2006-01-02 15:04", "2026-12-06 "+hhmm)
		return ts.UnixMilli()
	}
	build := func(n int, result string, building bool, start string, dur time.Duration, params ...string) map[string]any {
		var ps []map[string]any
		for i := 0; i+1 < len(params); i += 2 {
			ps = append(ps, map[string]any{"_class": "hudson.model.StringParameterValue", "name": params[i], "value": params[i+1]})
		}
		ps = append(ps, map[string]any{"_class": "hudson.model.PasswordParameterValue", "name": "DEPLOY_KEY"}) // no value: secret
		b := map[string]any{"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun", "number": n, "url": fmt.Sprintf("https://ci.example.com/job/x/%d/", n),
			"building": building, "timestamp": at(start), "duration": dur.Milliseconds(),
			"actions": []any{map[string]any{}, map[string]any{"_class": "hudson.model.ParametersAction", "parameters": ps},
				map[string]any{"_class": "hudson.plugins.git.util.BuildData", "lastBuiltRevision": map[string]any{"SHA1": strings.Repeat(string(rune('a'+n)), 40)}}}}
		if !building {
			b["result"] = result
		}
		return b
	}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "tollgate" || p != "api-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if *status != 0 {
			w.WriteHeader(*status)
			return
		}
		if !strings.HasPrefix(r.URL.Query().Get("tree"), "builds[number,url,result,building,timestamp,duration,actions[") {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		switch r.URL.Path {
		case "/job/deploy-payments/api/json":
			_ = json.NewEncoder(w).Encode(map[string]any{"builds": []any{
				build(7, "", true, "09:00", 0),
				build(6, "SUCCESS", false, "10:10", time.Minute, "SERVICE", "payments-api", "ENVIRONMENT", "production", "CHANGE_KEY", "CHG0000123"),
				build(5, "FAILURE", false, "09:50", 5*time.Minute),
				build(4, "SUCCESS", false, "09:58", 4*time.Minute, "SERVICE", "payments-api"),
			}})
		case "/job/team/job/deploy%20ledger/api/json", "/job/team/job/deploy ledger/api/json":
			_ = json.NewEncoder(w).Encode(map[string]any{"builds": []any{build(3, "UNSTABLE", false, "10:05", time.Minute, "SERVICE", "ledger")}})
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
}

// TestPollBuilds: the jobs' builds that started or ended since the
// watermark come back as the plugin's STARTED and COMPLETED messages,
// oldest first across the jobs (a running build as started, whenever it
// began); the jenkins-build profile maps them (service, environment,
// changes, commit, status, started and finished: a build that started
// before the watermark and ended after it, of which only COMPLETED is
// handed on, is recorded at its start, not its end); a secret parameter
// has no value to pass on; a refusal is final, a 5xx transient.
func TestPollBuilds(t *testing.T) {
	status := 0
	srv := fakeJenkins(t, &status)
	defer srv.Close()
	w, err := newWebhook(connectors.Config{Name: "jenkins", Type: Type, WebhookSecret: "0123456789abcdef", Jobs: []string{"deploy-payments", "team/deploy ledger"},
		API: &connectors.API{URL: srv.URL + "/", Username: "tollgate", Password: "api-token"}},
		apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !w.Polls() {
		t.Fatal("Polls is false with an API and jobs")
	}
	since := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	var recs []connectors.Record
	if err := w.Poll(context.Background(), since, func(r connectors.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Key+"@"+r.UpdatedAt.Format("15:04"))
	}
	want := "build:deploy-payments#7:STARTED@09:00 build:deploy-payments#4:COMPLETED@10:02 build:team/deploy ledger#3:STARTED@10:05 " +
		"build:team/deploy ledger#3:COMPLETED@10:06 build:deploy-payments#6:STARTED@10:10 build:deploy-payments#6:COMPLETED@10:11"
	if strings.Join(got, " ") != want {
		t.Fatalf("records\n%s\nwant\n%s", strings.Join(got, " "), want)
	}

	profiles, err := mapping.LoadDir(mappings.FS)
	if err != nil {
		t.Fatal(err)
	}
	set := mapping.NewSet(profiles...)
	deployment := func(r connectors.Record) core.Deployment {
		t.Helper()
		in, err := Classify(nil, r.Body)
		if err != nil || in.Type != r.Type {
			t.Fatalf("%s: classified %q, %v", r.Key, in.Type, err)
		}
		c, ok := set.Select(Type, in.Type, r.Body)
		if !ok {
			t.Fatalf("%s: no profile", r.Key)
		}
		res := c.Apply(r.Body)
		if len(res.Errors) > 0 {
			t.Fatalf("%s: %v", r.Key, res.Errors)
		}
		return *res.Record.(*core.Deployment)
	}
	started, done := deployment(recs[4]), deployment(recs[5])
	if started.Status != "started" || !started.StartedAt.Equal(recs[4].UpdatedAt) || done.Status != "succeeded" ||
		done.FinishedAt == nil || !done.FinishedAt.Equal(recs[5].UpdatedAt) || done.Service != "payments-api" || done.Environment != "production" ||
		done.Commit != strings.Repeat("g", 40) || done.RunID != "job/deploy-payments/6/" || len(done.Changes) != 1 || done.Changes[0] != "CHG0000123" {
		t.Errorf("build 6 mapped to\n%+v\n%+v", started, done)
	}
	if d, start := deployment(recs[1]), time.Date(2026, 12, 6, 9, 58, 0, 0, time.UTC); recs[1].Key != "build:deploy-payments#4:COMPLETED" ||
		!d.StartedAt.Equal(start) || d.FinishedAt == nil || !d.FinishedAt.Equal(start.Add(4*time.Minute)) {
		t.Errorf("build 4, started before the watermark, mapped from %s to started %v finished %v; want %v and 4 minutes later",
			recs[1].Key, d.StartedAt, d.FinishedAt, start)
	}
	if d := deployment(recs[3]); d.Service != "ledger" || d.Status != "failed" || d.RunID != "job/team/job/deploy%20ledger/3/" {
		t.Errorf("the unstable build in the folder mapped to %+v", d)
	}
	// The plugin names a job in a folder by its own name (the service when
	// no SERVICE parameter is set) and gives its URL with a job/ before
	// each folder: the poll's message for the same build must match it.
	var folder Notification
	if err := json.Unmarshal(recs[3].Body, &folder); err != nil || folder.Name != "deploy ledger" || folder.URL != "job/team/job/deploy%20ledger/" {
		t.Errorf("the folder job's message names %q at %q (%v)", folder.Name, folder.URL, err)
	}
	if strings.Contains(string(recs[5].Body), "DEPLOY_KEY") {
		t.Errorf("a secret parameter (no value) passed on: %s", recs[5].Body)
	}

	for _, c := range []struct {
		status int
		kind   core.ErrorKind
	}{{http.StatusNotFound, core.KindInvalid}, {http.StatusBadGateway, core.KindUnavailable}} {
		status = c.status
		err := w.Poll(context.Background(), since, func(connectors.Record) error { return nil })
		if !core.IsKind(err, c.kind) || !strings.Contains(err.Error(), "Jenkins jenkins: job deploy-payments builds") {
			t.Errorf("Jenkins answering %d: %v, want %v naming what was asked", c.status, err, c.kind)
		}
	}
	plain, _ := New(connectors.Config{Name: "jenkins", Type: Type, WebhookSecret: "0123456789abcdef"})
	if plain.Polls() {
		t.Error("Polls without an API")
	}
}

// TestPollBuildsPages: a job with more builds than one call lists is read
// back a page at a time until a page ends before the watermark; past the
// pages one poll reads, the messages read are handed on and the poll
// fails naming the job (the older builds are not recovered).
func TestPollBuildsPages(t *testing.T) {
	base := time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC)
	const builds = 250 // build n started n minutes after base, ran 30 s; the newest still runs
	var calls []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var from, to int
		tree := r.URL.Query().Get("tree")
		if _, err := fmt.Sscanf(tree[strings.LastIndex(tree, "{"):], "{%d,%d}", &from, &to); err != nil || r.URL.Path != "/job/busy/api/json" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		calls = append(calls, fmt.Sprintf("%d-%d", from, to))
		var out []map[string]any
		for n := builds - from; n > builds-to && n > 0; n-- {
			b := map[string]any{"number": n, "url": fmt.Sprintf("%s/job/busy/%d/", "https://ci.example.com", n), "building": n == builds,
				"timestamp": base.Add(time.Duration(n) * time.Minute).UnixMilli(), "duration": 30000, "actions": []any{}}
			if n != builds {
				b["result"] = "SUCCESS"
			}
			out = append(out, b)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"builds": out})
	}))
	defer srv.Close()
	w, err := newWebhook(connectors.Config{Name: "jenkins", Type: Type, WebhookSecret: "0123456789abcdef", Jobs: []string{"busy"},
		API: &connectors.API{URL: srv.URL, Username: "u", Password: "p"}},
		apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	poll := func(since time.Time) ([]connectors.Record, error) {
		calls = nil
		var recs []connectors.Record
		err := w.Poll(context.Background(), since, func(r connectors.Record) error { recs = append(recs, r); return nil })
		return recs, err
	}
	recs, err := poll(base.Add(120 * time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// Builds 120 to 249 started and ended since; 250 started and runs.
	if want := 2*(249-120+1) + 1; len(recs) != want || recs[0].Key != "build:busy#120:STARTED" || recs[len(recs)-1].Key != "build:busy#250:STARTED" {
		t.Errorf("%d records from %s to %s, want %d from build 120's start to build 250's", len(recs), recs[0].Key, recs[len(recs)-1].Key, want)
	}
	if strings.Join(calls, " ") != "0-100 100-200" {
		t.Errorf("read %v, want two pages (the second ends with a build that ended before since)", calls)
	}

	w.api.pages = 1
	recs, err = poll(base)
	if !core.IsKind(err, core.KindUnavailable) || !strings.Contains(err.Error(), "job busy: more than 100 builds since 2026-12-06T06:00:00Z") {
		t.Errorf("a poll that could not read back to since: %v, want an error naming the job", err)
	}
	if len(recs) != 2*99+1 || recs[0].Key != "build:busy#151:STARTED" {
		t.Errorf("%d records from %s, want the newest page's, handed on before the error", len(recs), recs[0].Key)
	}
}

// TestRawEncode: a job's name is escaped as Jenkins's Util.rawEncode
// escapes it in the URLs the plugin sends, so a polled build's run id is
// the plugin's.
func TestRawEncode(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"deploy-payments_2.x", "deploy-payments_2.x"},
		{"deploy ledger", "deploy%20ledger"},
		{"a(b)!*'+,=@$&", "a(b)!*'+,=@$&"},
		{`x:y;z?#%"<>[\]^` + "`", "x%3Ay%3Bz%3F%23%25%22%3C%3E%5B%5C%5D%5E%60"},
		{"{|}~", "%7B%7C%7D%7E"},
		{"zürich", "z%C3%BCrich"},
		{"tab\there", "tab%09here"},
	} {
		if got := rawEncode(c.name); got != c.want {
			t.Errorf("rawEncode(%q) = %q, want %q", c.name, got, c.want)
		}
	}
	if got := jobURL("team a/deploy(prod)"); got != "job/team%20a/job/deploy(prod)/" {
		t.Errorf("jobURL = %q", got)
	}
}
