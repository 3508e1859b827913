package github

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/inert"
)

// ruleFromFixture is the recorded deployment payload in the shape of a
// deployment_protection_rule "requested" event.
func ruleFromFixture(t testing.TB, callback string, mutate func(map[string]any)) []byte {
	raw, err := os.ReadFile("testdata/deployment.created.json")
	if err != nil {
		t.Fatal(err)
	}
	var dep map[string]any
	if err := json.Unmarshal(raw, &dep); err != nil {
		t.Fatal(err)
	}
	ev := map[string]any{"action": "requested", "environment": "production", "event": "push",
		"deployment_callback_url": callback + "/repos/Codertocat/Hello-World/actions/runs/77/deployment_protection_rule",
		"deployment":              dep["deployment"], "pull_requests": []any{map[string]any{"title": "OPS-12 fix the ledger"}},
		"repository": dep["repository"], "sender": dep["sender"], "installation": map[string]any{"id": 99}}
	if mutate != nil {
		mutate(ev)
	}
	b, _ := json.Marshal(ev)
	return b
}

func testGate() *connectors.CIGate {
	return &connectors.CIGate{Deadline: time.Hour, Services: map[string]string{"codertocat/hello-world": "hello-api"},
		ChangeKeyPatterns: []*regexp.Regexp{regexp.MustCompile(`CHG\d{7}`), regexp.MustCompile(`[A-Z][A-Z0-9]+-\d+`)}}
}

// TestParseProtectionRule: a requested rule is a gate request for the
// repository's service, the environment and the deployment's commit, with
// the change keys of its texts; other events and actions are not; a
// malformed one is refused with the field.
func TestParseProtectionRule(t *testing.T) {
	w := &Webhook{gate: testGate()}
	p, ok, err := w.GateRequest(context.Background(), EventProtectionRule, ruleFromFixture(t, "https://api.github.com", nil))
	if err != nil || !ok {
		t.Fatalf("requested rule: ok %v, %v", ok, err)
	}
	r := p.Request
	if r.Service != "hello-api" || r.Environment != "production" || r.Commit != "f95f852bd8fca8fcc58a9a2d6c842781e32a215e" ||
		r.Version != r.Commit || strings.Join(r.Changes, ",") != "OPS-12" || r.Pipeline.RunID != "77" ||
		p.Target["installation_id"] != "99" || p.ExternalID != "deployment:145988746" || !strings.HasSuffix(p.RunURL, "/actions/runs/77") {
		t.Fatalf("request %+v target %v ext %s url %s", r, p.Target, p.ExternalID, p.RunURL)
	}
	if _, ok, _ := w.GateRequest(context.Background(), "deployment", ruleFromFixture(t, "x", nil)); ok {
		t.Error("a deployment event is not a gate request")
	}
	if _, ok, _ := w.GateRequest(context.Background(), EventProtectionRule, ruleFromFixture(t, "x", func(m map[string]any) { m["action"] = "completed" })); ok {
		t.Error("an action other than requested is not a gate request")
	}
	bad := []struct {
		name, field string
		mutate      func(map[string]any)
	}{
		{"no environment", "environment", func(m map[string]any) { delete(m, "environment") }},
		{"no installation", "installation.id", func(m map[string]any) { delete(m, "installation") }},
		{"foreign callback", "deployment_callback_url", func(m map[string]any) {
			m["deployment_callback_url"] = "https://api.github.com/repos/evil/repo/actions/runs/1/deployment_protection_rule"
		}},
		{"not a callback", "deployment_callback_url", func(m map[string]any) { m["deployment_callback_url"] = "https://example.com/" }},
		{"no deployment", "deployment.sha", func(m map[string]any) { delete(m, "deployment") }},
	}
	for _, b := range bad {
		_, ok, err := w.GateRequest(context.Background(), EventProtectionRule, ruleFromFixture(t, "https://api.github.com", b.mutate))
		var ce *core.Error
		if !ok || err == nil || !core.IsKind(err, core.KindInvalid) || !strings.Contains(err.Error(), b.field) {
			t.Errorf("%s: ok %v err %v (%T %v), want invalid naming %s", b.name, ok, err, ce, err, b.field)
		}
	}
	if _, _, err := w.GateRequest(context.Background(), EventProtectionRule, []byte(`{"action":`)); err == nil {
		t.Error("broken JSON accepted")
	}
}

// FuzzParseProtectionRule: no input panics the parser.
func FuzzParseProtectionRule(f *testing.F) {
	f.Add(ruleFromFixture(f, "https://api.github.com", nil))
	f.Add([]byte(`{"action":"requested","deployment":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = ParseProtectionRule(EventProtectionRule, b)
	})
}

// TestAppAnswer: the answer goes to the run's callback with an
// installation token bought with a valid App JWT (by PrepareAnswer, before
// the answer); the token is cached across answers, and bought again when
// GitHub refuses it.
func TestAppAnswer(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	var tokens, reviews atomic.Int32
	var revoke atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		switch {
		case r.URL.Path == "/app/installations/99/access_tokens":
			var c jwt.RegisteredClaims
			if _, err := jwt.ParseWithClaims(auth, &c, func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
				jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer("42"), jwt.WithExpirationRequired()); err != nil {
				t.Errorf("app JWT: %v", err)
				w.WriteHeader(401)
				return
			}
			n := tokens.Add(1)
			w.WriteHeader(201)
			_ = json.NewEncoder(w).Encode(map[string]any{"token": "ghs_" + string(rune('a'+n)), "expires_at": time.Now().Add(time.Hour)})
		case r.URL.Path == "/repos/Codertocat/Hello-World/actions/runs/77/deployment_protection_rule":
			if revoke.CompareAndSwap(true, false) || !strings.HasPrefix(auth, "ghs_") {
				w.WriteHeader(401)
				return
			}
			var b reviewBody
			if err := json.NewDecoder(r.Body).Decode(&b); err != nil || b.EnvironmentName != "production" || b.State != "rejected" || b.Comment != "why" {
				t.Errorf("review body %+v %v", b, err)
			}
			reviews.Add(1)
			w.WriteHeader(204)
		default:
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	w, p := appGateRequest(t, srv.URL, pemKey)
	if p.Repository != "codertocat/hello-world" {
		t.Fatalf("gate request: repository %q (want the lower-cased full name)", p.Repository)
	}
	// Prepared, the token is bought before the review goes.
	if err := w.PrepareAnswer(context.Background(), p); err != nil || tokens.Load() != 1 || reviews.Load() != 0 {
		t.Fatalf("prepare: %v, %d tokens, %d reviews; want the token alone", err, tokens.Load(), reviews.Load())
	}
	for i := 0; i < 2; i++ {
		if err := w.Answer(context.Background(), p, false, "why"); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
	}
	if tokens.Load() != 1 || reviews.Load() != 2 {
		t.Fatalf("%d tokens for %d reviews, want one cached token", tokens.Load(), reviews.Load())
	}
	revoke.Store(true)
	if err := w.Answer(context.Background(), p, false, "why"); !core.IsKind(err, core.KindUnavailable) {
		t.Fatalf("refused token: %v, want a transient error", err)
	}
	if err := w.Answer(context.Background(), p, false, "why"); err != nil || tokens.Load() != 2 {
		t.Fatalf("after a refused token: %v, %d tokens; want a new one", err, tokens.Load())
	}
}

// TestAnswerCommentInert: GitHub renders the review's comment as Markdown,
// and a reason quotes ITSM and pipeline text: what is sent pings no one,
// links to nothing and fetches no image, and fits GitHub's limit once
// escaped.
func TestAnswerCommentInert(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	var sent string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/app/installations/99/access_tokens":
			w.WriteHeader(201)
			_ = json.NewEncoder(w).Encode(map[string]any{"token": "ghs_a", "expires_at": time.Now().Add(time.Hour)})
		case "/repos/Codertocat/Hello-World/actions/runs/77/deployment_protection_rule":
			var b reviewBody
			_ = json.NewDecoder(r.Body).Decode(&b)
			sent = b.Comment
			w.WriteHeader(204)
		default:
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	w, p := appGateRequest(t, srv.URL, pemKey)
	head := "tollgate: deny (decision 0190f3a4-7b1c-7d2e-9f00-123456789abc)\n- CHANGE_NOT_APPROVED CHG0097001: "
	for _, tc := range []struct {
		name, reason string
		never        []string // markup the renderer would act on
	}{
		{"mention", "approved by @octocat, ask @acme/release-team", []string{"@octocat", "@acme"}},
		{"image", "![x](https://evil.example/pixel.png)", []string{"![", "](", "https://"}},
		{"link", "[approve here](https://evil.example)", []string{"[approve", "](", "://"}},
		{"html", "<img src=https://evil.example/p><details open>", []string{"<img", "<details"}},
		{"issue refs", "see #12, GH-13 and acme/api#14", []string{"#12", "GH-13", "#14"}},
		{"code span", "`curl evil | sh`", []string{" `c", "h`"}},
		{"long", strings.Repeat("<@x> ", 400), []string{"@x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := connectors.Comment(head + tc.reason)
			if err := w.Answer(context.Background(), p, false, in); err != nil {
				t.Fatal(err)
			}
			if want := inert.MarkdownClip(in, connectors.MaxComment); sent != want {
				t.Fatalf("comment sent %q, want %q", sent, want)
			}
			if len(sent) > connectors.MaxComment || !strings.Contains(sent, "CHANGE_NOT_APPROVED CHG0097001: ") {
				t.Fatalf("comment sent (%d bytes) %q, want at most %d with the reason's code and key readable", len(sent), sent, connectors.MaxComment)
			}
			for _, bad := range tc.never {
				if hooktest.LiveMarkup(sent, bad) {
					t.Errorf("comment sent %q carries %q", sent, bad)
				}
			}
		})
	}
}

// TestAnswerTaken: what a deployment's statuses tell of an answer whose
// reply was lost. Only a deployment that ran shows an approval taken;
// only one stopped without running shows a rejection taken; anything else
// cannot tell, and says what GitHub shows.
func TestAnswerTaken(t *testing.T) {
	tests := []struct {
		name     string
		statuses string // the JSON answer, "" for a 404
		approved bool
		taken    bool
		why      string
		kind     core.ErrorKind // of the error, "" for none
	}{
		{name: "ran, approval", statuses: `[{"state":"success"},{"state":"in_progress"},{"state":"waiting"}]`, approved: true, taken: true, why: "it ran, so the approval was taken"},
		{name: "ran, rejection", statuses: `[{"state":"in_progress"},{"state":"waiting"}]`, why: "it ran although tollgate rejected it"},
		{name: "stopped, rejection", statuses: `[{"state":"failure"},{"state":"waiting"}]`, taken: true, why: "never ran, so the rejection was taken"},
		{name: "stopped, approval", statuses: `[{"state":"error"}]`, approved: true, why: "never ran, so the approval was not taken"},
		{name: "queued only", statuses: `[{"state":"queued"},{"state":"waiting"}]`, approved: true, why: "statuses queued, waiting: it has not run yet"},
		{name: "no status", statuses: `[]`, approved: true, why: "with no status: it has not run yet"},
		{name: "no such deployment", approved: true, kind: core.KindInvalid},
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.URL.Path == "/app/installations/99/access_tokens":
					w.WriteHeader(201)
					_ = json.NewEncoder(w).Encode(map[string]any{"token": "ghs_x", "expires_at": time.Now().Add(time.Hour)})
				case r.URL.Path == "/repos/Codertocat/Hello-World/deployments/4242/statuses" && tt.statuses != "":
					if r.Method != http.MethodGet || r.Header.Get("Authorization") != "Bearer ghs_x" {
						t.Errorf("%s with %q", r.Method, r.Header.Get("Authorization"))
					}
					_, _ = w.Write([]byte(tt.statuses))
				default:
					w.WriteHeader(404)
				}
			}))
			defer srv.Close()
			w, err := New(connectors.Config{Name: "github", Type: Type, WebhookSecret: "0123456789abcdef",
				API: &connectors.API{URL: srv.URL, AppID: "42", PrivateKey: pemKey}, CIGate: testGate()})
			if err != nil {
				t.Fatal(err)
			}
			p := core.PendingGate{Target: map[string]string{"repository": "Codertocat/Hello-World", "run_id": "77",
				"environment_name": "production", "installation_id": "99", "deployment_id": "4242"}}
			taken, why, err := w.AnswerTaken(context.Background(), p, tt.approved)
			if tt.kind != "" {
				if !core.IsKind(err, tt.kind) {
					t.Fatalf("error %v, want %s", err, tt.kind)
				}
				return
			}
			if err != nil || taken != tt.taken || !strings.Contains(why, tt.why) {
				t.Errorf("taken %t, why %q, err %v; want taken %t saying %q", taken, why, err, tt.taken, tt.why)
			}
		})
	}
}

// appGateRequest is a connector answering as the GitHub App (key pemKey,
// id 42) at api, and the gate request of the fixture's protection rule.
func appGateRequest(t *testing.T, api string, pemKey []byte) (*Webhook, core.PendingGate) {
	t.Helper()
	w, err := New(connectors.Config{Name: "github", Type: Type, WebhookSecret: "0123456789abcdef",
		API: &connectors.API{URL: api, AppID: "42", PrivateKey: pemKey}, CIGate: testGate()})
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := w.GateRequest(context.Background(), EventProtectionRule, ruleFromFixture(t, api, nil))
	if err != nil {
		t.Fatalf("gate request: %v", err)
	}
	return w, p
}
