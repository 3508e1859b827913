package gitlab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
)

// fakeBlocked is GitLab's projects and deployments API for one project
// (acme/payments, id 30) with two deployments waiting for approval, one
// to a page, and one that already ran (a GitLab that ignores the filter).
type fakeBlocked struct {
	mu           sync.Mutex
	projectReads int
	recentPages  int
	status       int // answer every call with this status when set
}

func (f *fakeBlocked) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("PRIVATE-TOKEN") != "glpat-x" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if f.status != 0 {
		w.WriteHeader(f.status)
		_, _ = w.Write([]byte(`{"message":"404 Project Not Found"}`))
		return
	}
	deployment := func(id, status, sha, title string) map[string]any {
		return map[string]any{"id": json.Number(id), "ref": "main", "sha": sha, "status": status,
			"updated_at": "2026-12-06T10:0" + id[len(id)-1:] + ":00.000Z", "user": map[string]any{"username": "root", "name": "Administrator"},
			"environment": map[string]any{"name": "production", "external_url": "https://payments.example.com"},
			"deployable": map[string]any{"id": json.Number("79" + id), "commit": map[string]any{"title": title},
				"started_at": "2026-12-06T09:5" + id[len(id)-1:] + ":30.000Z"}}
	}
	switch {
	case r.URL.EscapedPath() == "/api/v4/projects/acme%2Fpayments/deployments/15": // the gate request's read-back
		_ = json.NewEncoder(w).Encode(deployment("15", "blocked", strings.Repeat("a", 40), "release CHG0001234"))
	case r.URL.EscapedPath() == "/api/v4/projects/acme%2Fpayments/deployments/17":
		_ = json.NewEncoder(w).Encode(deployment("17", "blocked", strings.Repeat("b", 40), "OPS-7 hotfix"))
	case r.URL.EscapedPath() == "/api/v4/projects/acme%2Fpayments":
		f.projectReads++
		_ = json.NewEncoder(w).Encode(map[string]any{"id": 30, "name": "payments", "path_with_namespace": "acme/payments", "web_url": "https://gitlab.example.com/acme/payments"})
	case r.URL.Path == "/api/v4/projects/30/deployments" && r.URL.Query().Get("order_by") == "updated_at":
		// Recent ones, oldest first, every status, two a page; the
		// first listing (from the poll's since) also holds one updated
		// before it (the poller skips it by itself). Later pages are
		// asked from the newest update read (package rebase).
		q := r.URL.Query()
		if q.Get("sort") != "asc" || q.Get("updated_after") < "2026-12-06T10:00:00Z" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		old := deployment("9", "success", strings.Repeat("9", 40), "old")
		old["updated_at"] = "2026-12-06T09:59:00.000Z"
		all := []map[string]any{old, deployment("13", "created", strings.Repeat("f", 40), "not yet"),
			deployment("16", "success", strings.Repeat("c", 40), "done"), deployment("17", "blocked", strings.Repeat("b", 40), "OPS-7 hotfix"),
			deployment("18", "failed", strings.Repeat("e", 40), "x")}
		var list []map[string]any
		for i, d := range all {
			if (i == 0 && q.Get("updated_after") == "2026-12-06T10:00:00Z") || d["updated_at"].(string)[:16] >= q.Get("updated_after")[:16] {
				list = append(list, d)
			}
		}
		page, _ := strconv.Atoi(q.Get("page"))
		from, to := min(2*(page-1), len(list)), min(2*page, len(list))
		if to < len(list) {
			w.Header().Set("X-Next-Page", strconv.Itoa(page+1))
		}
		f.recentPages++
		_ = json.NewEncoder(w).Encode(list[from:to])
	case r.URL.Path == "/api/v4/projects/30/deployments":
		q := r.URL.Query()
		if q.Get("status") != "blocked" || q.Get("per_page") != "100" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		switch q.Get("page") {
		case "1":
			w.Header().Set("X-Next-Page", "2")
			_ = json.NewEncoder(w).Encode([]any{deployment("15", "blocked", strings.Repeat("a", 40), "release CHG0001234")})
		case "2":
			w.Header().Set("X-Next-Page", "")
			_ = json.NewEncoder(w).Encode([]any{deployment("16", "success", strings.Repeat("c", 40), "done"),
				deployment("17", "blocked", strings.Repeat("b", 40), "OPS-7 hotfix")})
		default:
			_, _ = w.Write([]byte(`[]`))
		}
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// TestPollBlocked: the poller lists each project's deployments waiting
// for approval, page by page, as the Deployment Hook GitLab would have
// sent — a gate request for the project's service, the deployment's
// commit and the change keys of its commit title — after those updated
// since the watermark that ran or ended, oldest first (not those created
// only, nor one before since), reading the project once;
// a refusal is final (KindInvalid), a 401 transient.
func TestPollBlocked(t *testing.T) {
	f := &fakeBlocked{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	w, err := newWebhook(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef", Projects: []string{"acme/payments"},
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}, CIGate: &connectors.CIGate{Deadline: time.Hour, Services: map[string]string{"acme/payments": "payments-api"},
			ChangeKeyPatterns: []*regexp.Regexp{regexp.MustCompile(`CHG\d{7}`), regexp.MustCompile(`[A-Z][A-Z0-9]+-\d+`)}}},
		apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !w.Polls() {
		t.Fatal("Polls is false with an API and projects")
	}
	var recs []connectors.Record
	since := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 2; i++ {
		recs = nil
		if err := w.Poll(context.Background(), since, func(r connectors.Record) error { recs = append(recs, r); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if f.projectReads != 1 {
		t.Errorf("the project was read %d times over two polls, want 1", f.projectReads)
	}
	var keys []string
	for _, r := range recs {
		keys = append(keys, r.Key)
	}
	if want := "deployment:16 deployment:18 deployment:15 deployment:17"; strings.Join(keys, " ") != want {
		t.Fatalf("records %v, want %s (the recent ones oldest first, then the waiting ones)", keys, want)
	}
	for i, want := range []string{"success", "failed"} {
		var h map[string]any
		_ = json.Unmarshal(recs[i].Body, &h)
		if h["status"] != want || h["object_kind"] != "deployment" || h["status_changed_at"] != recs[i].UpdatedAt.Format(time.RFC3339) {
			t.Errorf("recent record %d: %s", i, recs[i].Body)
		}
		// The job's start, for the mapping's started_at: a deployment
		// polled once finished is judged as of when it ran.
		if started, _ := h["deployable_started_at"].(string); !strings.HasPrefix(started, "2026-12-06T09:5") {
			t.Errorf("recent record %d carries no job start: %s", i, recs[i].Body)
		}
		if _, gate, _ := w.GateRequest(context.Background(), recs[i].Type, recs[i].Body); gate {
			t.Errorf("recent record %d (%s) is a gate request", i, want)
		}
	}
	var first []string
	stop := core.Errorf(core.KindUnavailable, "database away")
	if err := w.Poll(context.Background(), since, func(r connectors.Record) error {
		if len(first) == 1 {
			return stop
		}
		first = append(first, r.Key)
		return nil
	}); err != stop || len(first) != 1 || first[0] != "deployment:16" {
		t.Errorf("a store failing at the second record: %v after %v, want the error after the oldest only", err, first)
	}
	recs = recs[2:] // the waiting ones
	if recs[0].Type != "Deployment Hook" || !recs[0].UpdatedAt.Equal(time.Date(2026, 12, 6, 10, 5, 0, 0, time.UTC)) {
		t.Errorf("record 0: type %q, updated %v", recs[0].Type, recs[0].UpdatedAt)
	}
	for i, want := range []struct{ sha, change string }{{strings.Repeat("a", 40), "CHG0001234"}, {strings.Repeat("b", 40), "OPS-7"}} {
		p, ok, err := w.GateRequest(context.Background(), recs[i].Type, recs[i].Body)
		if err != nil || !ok {
			t.Fatalf("record %d is not a gate request: %v %v\n%s", i, ok, err, recs[i].Body)
		}
		r := p.Request
		if r.Service != "payments-api" || r.Environment != "production" || r.Commit != want.sha || len(r.Changes) != 1 || r.Changes[0] != want.change ||
			r.Actor != "root" || p.Target["project_id"] != "30" || p.ExternalID != "deployment:"+recs[i].Key[len("deployment:"):] {
			t.Errorf("record %d: gate request %+v target %v", i, r, p.Target)
		}
		if !strings.HasPrefix(p.RunURL, "https://gitlab.example.com/acme/payments/-/jobs/79") {
			t.Errorf("record %d: run URL %q", i, p.RunURL)
		}
	}

	for _, c := range []struct {
		status int
		kind   core.ErrorKind
	}{{http.StatusNotFound, core.KindInvalid}, {http.StatusBadGateway, core.KindUnavailable}} {
		f.mu.Lock()
		f.status = c.status
		f.mu.Unlock()
		err := w.Poll(context.Background(), since, func(connectors.Record) error { return nil })
		if !core.IsKind(err, c.kind) || !strings.Contains(err.Error(), "GitLab gitlab: project acme/payments deployments since 2026-12-06T10:00:00Z") {
			t.Errorf("GitLab answering %d: %v, want %v naming what was asked", c.status, err, c.kind)
		}
	}
	noProjects, _ := New(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef",
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}, CIGate: &connectors.CIGate{Deadline: time.Hour}})
	if noProjects.Polls() {
		t.Error("Polls without projects")
	}
	recordsOnly, _ := New(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef", Projects: []string{"acme/payments"},
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}})
	if !recordsOnly.Polls() {
		t.Error("no Polls with an API and projects but no approvals (the deployments are still recorded)")
	}
}

// fakeProjects is GitLab's deployments API over several projects (ids
// 40, 41, …, paths acme/p40, …): per_page and page honoured, the recent
// listing sorted by updated_at ascending and filtered by updated_after,
// the waiting one by status.
type fakeProjects struct {
	deployments map[int][]map[string]any // by project id
	// after, when set, is called after each listing is answered.
	after func()
}

func (f *fakeProjects) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var id int
	if _, err := fmt.Sscanf(r.URL.EscapedPath(), "/api/v4/projects/acme%%2Fp%d", &id); err == nil && !strings.Contains(r.URL.Path, "/deployments") {
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "name": fmt.Sprint("p", id), "path_with_namespace": fmt.Sprint("acme/p", id)})
		return
	}
	if _, err := fmt.Sscanf(r.URL.Path, "/api/v4/projects/%d/deployments", &id); err != nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	var list []map[string]any
	for _, d := range f.deployments[id] {
		switch {
		case q.Get("status") != "" && d["status"] != q.Get("status"):
		case q.Get("updated_after") != "" && updatedBefore(d["updated_at"].(string), q.Get("updated_after")):
		default:
			list = append(list, d)
		}
	}
	if q.Get("order_by") == "updated_at" {
		sort.SliceStable(list, func(i, j int) bool {
			return updatedBefore(list[i]["updated_at"].(string), list[j]["updated_at"].(string))
		})
	}
	page, _ := strconv.Atoi(q.Get("page"))
	per, _ := strconv.Atoi(q.Get("per_page"))
	from, to := min((page-1)*per, len(list)), min(page*per, len(list))
	if to < len(list) {
		w.Header().Set("X-Next-Page", strconv.Itoa(page+1))
	}
	_ = json.NewEncoder(w).Encode(list[from:to])
	if f.after != nil {
		f.after()
	}
}

func updatedBefore(at, after string) bool {
	a, _ := time.Parse(time.RFC3339, at)
	b, _ := time.Parse(time.RFC3339, after)
	return a.Before(b)
}

// TestPollCatchesUp: a project with more deployments since the watermark
// than one poll reads is read oldest first up to the limit, and no record
// newer than the last one read is emitted, from any project (the waiting
// ones included), so the watermark never passes a deployment not read;
// the next poll, from the newest record emitted, reads the rest.
func TestPollCatchesUp(t *testing.T) {
	since := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	dep := func(id int, status string, at time.Time) map[string]any {
		return map[string]any{"id": id, "status": status, "sha": strings.Repeat("a", 40), "ref": "main",
			"updated_at": at.Format("2006-01-02T15:04:05.000Z"), "environment": map[string]any{"name": "production"}}
	}
	f := &fakeProjects{deployments: map[int][]map[string]any{}}
	for i := 0; i < 250; i++ { // a busy project: 250 deployments, one a minute
		f.deployments[40] = append(f.deployments[40], dep(1000+i, "success", since.Add(time.Duration(i)*time.Minute)))
	}
	f.deployments[41] = []map[string]any{
		dep(2000, "success", since.Add(30*time.Minute)), dep(2001, "blocked", since.Add(40*time.Minute)),
		dep(2002, "failed", since.Add(220*time.Minute)), dep(2003, "blocked", since.Add(230*time.Minute)),
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	w, err := newWebhook(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef", Projects: []string{"acme/p40", "acme/p41"},
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}}, apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w.api.pages = 2 // 200 deployments a project and poll

	seen := map[string]bool{}
	poll := func(since time.Time) (newest time.Time) {
		t.Helper()
		err := w.Poll(context.Background(), since, func(r connectors.Record) error {
			if r.UpdatedAt.After(newest) {
				newest = r.UpdatedAt
			}
			seen[r.Key] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return newest
	}
	first := poll(since)
	// Two pages: 0–99 minutes, then from the 99th again (its instant
	// read once more, package rebase) to the 198th.
	if cutoff := since.Add(198 * time.Minute); !first.Equal(cutoff) {
		t.Errorf("first poll's newest record at %v, want the last one read of the busy project (%v)", first, cutoff)
	}
	for _, k := range []string{"deployment:2002", "deployment:2003", "deployment:1199"} {
		if seen[k] {
			t.Errorf("first poll emitted %s, newer than the busy project's last one read", k)
		}
	}
	if !seen["deployment:2000"] || !seen["deployment:2001"] || !seen["deployment:1198"] {
		t.Errorf("first poll missed a deployment before the cutoff")
	}
	poll(first)
	for id := range f.deployments {
		for _, d := range f.deployments[id] {
			if k := fmt.Sprint("deployment:", d["id"]); !seen[k] {
				t.Errorf("%s never emitted", k)
			}
		}
	}
}

// TestPollWhileDeploymentsMove: deployments updated while a poll reads a
// project's pages move to the end of the listing; every other one is
// still read (with plain page numbers, the one at each page's boundary
// was skipped, and the watermark passed it for good).
func TestPollWhileDeploymentsMove(t *testing.T) {
	since := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	f := &fakeProjects{deployments: map[int][]map[string]any{}}
	for i := range 350 { // three a second
		f.deployments[40] = append(f.deployments[40], map[string]any{"id": 1000 + i, "status": "success", "sha": strings.Repeat("a", 40),
			"ref": "main", "updated_at": since.Add(time.Duration(i/3) * time.Second).Format("2006-01-02T15:04:05.000Z"),
			"environment": map[string]any{"name": "production"}})
	}
	moved := 0
	f.after = func() { // the oldest two read so far are updated
		for range 2 {
			f.deployments[40][moved]["updated_at"] = since.Add(time.Hour + time.Duration(moved)*time.Second).Format("2006-01-02T15:04:05.000Z")
			moved++
		}
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	w, err := newWebhook(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef", Projects: []string{"acme/p40"},
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}}, apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	if err := w.Poll(context.Background(), since, func(r connectors.Record) error { seen[r.Key] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	for i := range 350 {
		if k := fmt.Sprint("deployment:", 1000+i); !seen[k] {
			t.Errorf("%s never emitted", k)
		}
	}
}
