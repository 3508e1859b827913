package app_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// fakeCI is a fake GitHub API (App installation tokens checked against an
// RS256 JWT signed by the test key; protection-rule reviews checked for
// the token, state and comment; commits) and a fake GitLab deployment
// approval API (checked for the token, status and comment).
type fakeCI struct {
	t       testing.TB
	srv     *httptest.Server
	appID   string
	key     *rsa.PrivateKey
	keyFile string
	glToken string

	mu      sync.Mutex
	tokens  map[string]string // installation token → installation id
	commits map[string]string // "owner/repo@sha" → message
	answers []fakeAnswer
	fail    int // answer this many reviews with 502 first
	calls   []string

	// The App's webhook as GitHub sends it (fakeDeliveries).
	hookURL    string // "" while tollgate is down: attempts are refused
	deliveries []fakeDelivery
	sending    sync.WaitGroup

	// GitLab's deployments in project acme/ledger (id 31), newest update
	// first, whose Deployment Hooks never arrived.
	glDeployments []map[string]any
	// glProjects: the project (path) each deployment is in — a listed
	// deployment's own "project", else the project it was first read back
	// in; an approval is taken only there.
	glProjects map[string]string
	glHooks    []map[string]any // project 31's webhooks
	// Project 31's webhook 5 as GitLab sends it (glDeliver), and its log.
	glHookURL string // "" while tollgate is down
	glEvents  []fakeGLEvent
}

// fakeGLEvent is one logged attempt of GitLab's webhook 5.
type fakeGLEvent struct {
	ID             int               `json:"id"`
	Trigger        string            `json:"trigger"`
	RequestHeaders map[string]string `json:"request_headers"`
	ResponseStatus string            `json:"response_status"`
	CreatedAt      time.Time         `json:"created_at"`
	event          string
	body           []byte
}

// fakeAnswer is one accepted answer.
type fakeAnswer struct {
	Provider     string
	Run          string // GitHub run id, GitLab deployment id
	Installation string // GitHub installation id, GitLab project path
	Environment  string
	State        string
	Comment      string
	At           time.Time
}

var (
	fakeTokenPath    = regexp.MustCompile(`^/app/installations/([^/]+)/access_tokens$`)
	fakeReviewPath   = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/actions/runs/([0-9]+)/deployment_protection_rule$`)
	fakeCommitPath   = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/commits/([^/]+)$`)
	fakeApprPath     = regexp.MustCompile(`^/api/v4/projects/([^/]+)/deployments/([^/]+)/approval$`)
	fakeGLDeployment = regexp.MustCompile(`^/api/v4/projects/([^/]+)/deployments/([0-9]+)$`)
	fakeRedoPath     = regexp.MustCompile(`^/app/hook/deliveries/([0-9]+)/attempts$`)
	fakeRepoRedo     = regexp.MustCompile(`^/repos/acme/payments/hooks/11/deliveries/([0-9]+)/attempts$`)
	fakeResendPath   = regexp.MustCompile(`^/api/v4/projects/31/hooks/5/events/([0-9]+)/resend$`)
)

func newFakeCI(t testing.TB) *fakeCI {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCI{t: t, appID: "123456", key: k, glToken: "glpat-approver-0123456789",
		tokens: map[string]string{}, commits: map[string]string{}, glProjects: map[string]string{}}
	f.keyFile = filepath.Join(t.TempDir(), "app.pem")
	pemText := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	if err := os.WriteFile(f.keyFile, pemText, 0o600); err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	t.Cleanup(f.sending.Wait) // redeliveries under way end first
	return f
}

func (f *fakeCI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	f.mu.Unlock()
	reply := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if v != nil {
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	bearer := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch p := r.URL.Path; {
	case r.Method == "GET" && (p == "/app" || p == "/app/hook/config" || p == "/app/installations"):
		if err := f.checkJWT(bearer); err != nil {
			reply(401, map[string]string{"message": err.Error()})
			return
		}
		reply(200, f.appInfo(p))
	case strings.HasPrefix(p, "/app/hook/deliveries"):
		if err := f.checkJWT(bearer); err != nil {
			reply(401, map[string]string{"message": err.Error()})
			return
		}
		f.serveDeliveries(w, r, reply)
	case p == "/repos/acme/payments/installation":
		if err := f.checkJWT(bearer); err != nil {
			reply(401, map[string]string{"message": err.Error()})
			return
		}
		reply(200, map[string]any{"id": 4242001})
	case strings.HasPrefix(p, "/repos/acme/payments/hooks"):
		f.mu.Lock()
		_, ok := f.tokens[bearer]
		f.mu.Unlock()
		if !ok {
			reply(401, map[string]string{"message": "Bad credentials"})
			return
		}
		f.serveRepoHook(w, r, reply)
	case r.Method == "POST" && fakeTokenPath.MatchString(p):
		inst := fakeTokenPath.FindStringSubmatch(p)[1]
		if err := f.checkJWT(bearer); err != nil {
			f.t.Errorf("fake GitHub: app JWT refused: %v", err)
			reply(401, map[string]string{"message": err.Error()})
			return
		}
		tok := fmt.Sprintf("ghs_test%d", time.Now().UnixNano())
		f.mu.Lock()
		f.tokens[tok] = inst
		f.mu.Unlock()
		reply(201, map[string]any{"token": tok, "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	case r.Method == "POST" && fakeReviewPath.MatchString(p):
		m := fakeReviewPath.FindStringSubmatch(p)
		f.mu.Lock()
		inst, ok := f.tokens[bearer]
		failing := f.fail > 0
		if failing {
			f.fail--
		}
		f.mu.Unlock()
		if !ok {
			reply(401, map[string]string{"message": "Bad credentials"})
			return
		}
		if failing {
			reply(502, map[string]string{"message": "bad gateway"})
			return
		}
		var b struct {
			EnvironmentName string  `json:"environment_name"`
			State           string  `json:"state"`
			Comment         *string `json:"comment"`
		}
		if err := json.Unmarshal(body, &b); err != nil || b.EnvironmentName == "" || (b.State != "approved" && b.State != "rejected") ||
			b.Comment == nil || len(*b.Comment) > 1024 {
			f.t.Errorf("fake GitHub: bad review body %s", body)
			reply(422, map[string]string{"message": "Validation Failed"})
			return
		}
		f.record(fakeAnswer{Provider: "github", Run: m[2], Installation: inst, Environment: b.EnvironmentName, State: b.State, Comment: *b.Comment})
		w.WriteHeader(204)
	case r.Method == "GET" && fakeCommitPath.MatchString(p):
		m := fakeCommitPath.FindStringSubmatch(p)
		f.mu.Lock()
		msg, ok := f.commits[m[1]+"@"+m[2]]
		_, tokOK := f.tokens[bearer]
		f.mu.Unlock()
		if !ok || !tokOK {
			reply(404, map[string]string{"message": "Not Found"})
			return
		}
		reply(200, map[string]any{"sha": m[2], "commit": map[string]any{"message": msg}})
	case r.Method == "GET" && p == "/api/v4/personal_access_tokens/self":
		if r.Header.Get("PRIVATE-TOKEN") != f.glToken {
			reply(401, map[string]string{"message": "401 Unauthorized"})
			return
		}
		reply(200, map[string]any{"name": "tollgate", "scopes": []string{"api"}, "active": true, "revoked": false,
			"expires_at": time.Now().AddDate(0, 6, 0).Format(time.DateOnly)})
	case r.Method == "GET" && strings.HasPrefix(p, "/api/v4/projects/"):
		if r.Header.Get("PRIVATE-TOKEN") != f.glToken {
			reply(401, map[string]string{"message": "401 Unauthorized"})
			return
		}
		f.mu.Lock()
		var listed []map[string]any
		for _, d := range f.glDeployments {
			if st := r.URL.Query().Get("status"); st == "" || d["status"] == st {
				listed = append(listed, d)
			}
		}
		f.mu.Unlock()
		switch {
		case fakeGLDeployment.MatchString(r.URL.EscapedPath()):
			// A gate request's read-back: the deployment when the fake
			// lists it, else a blocked one GitLab tells nothing more of
			// (the hook's commit and environment stand).
			// A listed deployment is found only in its own project (its
			// "project", the fake's own key).
			m := fakeGLDeployment.FindStringSubmatch(r.URL.EscapedPath())
			project, _ := url.PathUnescape(m[1])
			f.mu.Lock()
			found := f.glDeployment(m[2])
			if found == nil && f.glProjects[m[2]] == "" {
				f.glProjects[m[2]] = project
			}
			known := f.glProjects[m[2]]
			f.mu.Unlock()
			switch {
			case found == nil && known != project:
				reply(404, map[string]string{"message": "404 Not found"})
			case found == nil:
				reply(200, map[string]any{"id": json.Number(m[2]), "status": "blocked"})
			case found["project"] != nil && found["project"] != project:
				reply(404, map[string]string{"message": "404 Not found"})
			default:
				reply(200, found)
			}
		case r.URL.EscapedPath() == "/api/v4/projects/acme%2Fledger":
			reply(200, map[string]any{"id": 31, "name": "ledger", "path_with_namespace": "acme/ledger", "web_url": f.srv.URL + "/acme/ledger"})
		case p == "/api/v4/projects/31/hooks/5/events":
			f.mu.Lock()
			out := make([]fakeGLEvent, 0, len(f.glEvents))
			for i := len(f.glEvents) - 1; i >= 0; i-- { // newest first
				out = append(out, f.glEvents[i])
			}
			f.mu.Unlock()
			reply(200, out)
		case p == "/api/v4/projects/31/hooks":
			f.mu.Lock()
			hooks := append([]map[string]any{}, f.glHooks...)
			f.mu.Unlock()
			reply(200, hooks)
		case p == "/api/v4/projects/31/deployments" && r.URL.Query().Get("page") == "1":
			reply(200, listed)
		case p == "/api/v4/projects/31/deployments":
			reply(200, []any{})
		default:
			reply(404, map[string]string{"message": "404 Not Found"})
		}
	case r.Method == "POST" && fakeResendPath.MatchString(p):
		if r.Header.Get("PRIVATE-TOKEN") != f.glToken {
			reply(401, map[string]string{"message": "401 Unauthorized"})
			return
		}
		id := fakeResendPath.FindStringSubmatch(p)[1]
		f.mu.Lock()
		var ev *fakeGLEvent
		for i := range f.glEvents {
			if fmt.Sprint(f.glEvents[i].ID) == id {
				ev = &f.glEvents[i]
			}
		}
		f.mu.Unlock()
		if ev == nil {
			reply(404, map[string]string{"message": "404 Not Found"})
			return
		}
		f.sending.Add(1)
		go func(event, key string, body []byte) {
			defer f.sending.Done()
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
				f.mu.Lock()
				up := f.glHookURL != ""
				f.mu.Unlock()
				if up {
					break
				}
			}
			f.glDeliver(event, key, body)
		}(ev.event, ev.RequestHeaders["Idempotency-Key"], ev.body)
		reply(201, map[string]any{})
	case r.Method == "POST" && fakeApprPath.MatchString(r.URL.EscapedPath()):
		m := fakeApprPath.FindStringSubmatch(r.URL.EscapedPath())
		if r.Header.Get("PRIVATE-TOKEN") != f.glToken {
			reply(401, map[string]string{"message": "401 Unauthorized"})
			return
		}
		// GitLab finds the deployment only in its own project: an id, or
		// another project's path, is refused.
		project, _ := url.PathUnescape(m[1])
		f.mu.Lock()
		in := f.glProjects[m[2]]
		if d := f.glDeployment(m[2]); d != nil {
			in = "acme/ledger" // the listed ones' project, unless they name another
			if d["project"] != nil {
				in = fmt.Sprint(d["project"])
			}
		}
		f.mu.Unlock()
		if in == "" || project != in {
			f.t.Errorf("fake GitLab: deployment %s approved in project %q, it is in %q", m[2], project, in)
			reply(404, map[string]string{"message": "404 Deployment Not Found"})
			return
		}
		m[1] = project
		var b struct{ Status, Comment string }
		if err := json.Unmarshal(body, &b); err != nil || (b.Status != "approved" && b.Status != "rejected") {
			reply(400, map[string]string{"error": "status does not have a valid value"})
			return
		}
		f.record(fakeAnswer{Provider: "gitlab", Run: m[2], Installation: m[1], State: b.Status, Comment: b.Comment})
		reply(201, map[string]any{"status": b.Status})
	default:
		reply(404, map[string]string{"message": "Not Found"})
	}
}

// glDeployment is a listed deployment by id (nil when not listed); f.mu
// held.
func (f *fakeCI) glDeployment(id string) map[string]any {
	for _, d := range f.glDeployments {
		if fmt.Sprint(d["id"]) == id {
			return d
		}
	}
	return nil
}

// checkJWT verifies a GitHub App JWT: RS256 with the test key, issuer the
// app id, expiry in the future and at most 10 minutes ahead.
func (f *fakeCI) checkJWT(s string) error {
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(s, &claims, func(*jwt.Token) (any, error) { return &f.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(f.appID), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if err != nil {
		return err
	}
	if claims.ExpiresAt.Time.After(time.Now().Add(10*time.Minute + 5*time.Second)) {
		return fmt.Errorf("exp more than 10 minutes ahead")
	}
	return nil
}

func (f *fakeCI) record(a fakeAnswer) {
	a.At = time.Now()
	f.mu.Lock()
	f.answers = append(f.answers, a)
	f.mu.Unlock()
}

func (f *fakeCI) commit(repo, sha, message string) {
	f.mu.Lock()
	f.commits[repo+"@"+sha] = message
	f.mu.Unlock()
}

// answer waits up to d for an answer to run and returns it.
func (f *fakeCI) answer(run string, d time.Duration) (fakeAnswer, bool) {
	end := time.Now().Add(d)
	for {
		f.mu.Lock()
		for _, a := range f.answers {
			if a.Run == run {
				f.mu.Unlock()
				return a, true
			}
		}
		f.mu.Unlock()
		if time.Now().After(end) {
			return fakeAnswer{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fakeCI) answerCount(run string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, a := range f.answers {
		if a.Run == run {
			n++
		}
	}
	return n
}

func hmacHexWith(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// fakeDelivery is one attempt of the App's webhook, as GitHub lists it
// (GET /app/hook/deliveries), with what it sent.
type fakeDelivery struct {
	ID          int64     `json:"id"`
	GUID        string    `json:"guid"`
	DeliveredAt time.Time `json:"delivered_at"`
	Redelivery  bool      `json:"redelivery"`
	Status      string    `json:"status"`
	StatusCode  int       `json:"status_code"`
	Event       string    `json:"event"`
	Action      string    `json:"action"`
	body        []byte
	repo        bool // an attempt of acme/payments's webhook 11, not the App's
}

// setHook points the App's webhook at url (tollgate is up).
func (f *fakeCI) setHook(url string) {
	f.mu.Lock()
	f.hookURL = url
	f.mu.Unlock()
}

// deliver sends one delivery of the App's webhook as GitHub does — signed,
// once — and logs the attempt; with no hook URL (tollgate down) the
// attempt fails with no answer.
func (f *fakeCI) deliver(event, guid string, body []byte, redelivery bool) {
	f.send(event, guid, body, redelivery, false)
}

// send is deliver through the App's webhook or (repo) acme/payments's
// webhook 11: both go to the connector github.
func (f *fakeCI) send(event, guid string, body []byte, redelivery, repo bool) {
	f.mu.Lock()
	url := f.hookURL
	f.mu.Unlock()
	code, status := 0, "failed to connect to host"
	if url != "" {
		req, _ := http.NewRequest("POST", url, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", guid)
		req.Header.Set("X-Hub-Signature-256", "sha256="+hmacHexWith(authoritySecret, body))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			code, status = resp.StatusCode, fmt.Sprintf("Invalid HTTP Response: %d", resp.StatusCode)
			if code/100 == 2 {
				status = "OK"
			}
		}
	}
	var action struct{ Action string }
	_ = json.Unmarshal(body, &action)
	f.mu.Lock()
	f.deliveries = append(f.deliveries, fakeDelivery{ID: int64(len(f.deliveries) + 1), GUID: guid, DeliveredAt: time.Now().UTC(),
		Redelivery: redelivery, Status: status, StatusCode: code, Event: event, Action: action.Action, body: body, repo: repo})
	f.mu.Unlock()
}

// attempts returns the logged attempts of guid.
func (f *fakeCI) attempts(guid string) []fakeDelivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeDelivery
	for _, d := range f.deliveries {
		if d.GUID == guid {
			out = append(out, d)
		}
	}
	return out
}

// serveDeliveries lists the attempts newest first (one page) and
// redelivers one on request: 202 at once, the attempt made afterwards.
func (f *fakeCI) serveDeliveries(w http.ResponseWriter, r *http.Request, reply func(int, any)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method == "GET" && r.URL.Path == "/app/hook/deliveries" {
		reply(200, f.logged(false))
		return
	}
	f.redeliver(fakeRedoPath, w, r, reply)
}

// serveRepoHook is acme/payments's webhook 11, pointing at the connector
// github: listed, its attempts listed newest first, one redelivered on
// request as the App's are.
func (f *fakeCI) serveRepoHook(w http.ResponseWriter, r *http.Request, reply func(int, any)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == "GET" && r.URL.Path == "/repos/acme/payments/hooks":
		reply(200, []map[string]any{{"id": 11, "active": true, "events": []string{"deployment", "deployment_status"},
			"config": map[string]any{"url": "https://tollgate.example.com/webhooks/github", "content_type": "json"}}})
	case r.Method == "GET" && r.URL.Path == "/repos/acme/payments/hooks/11/deliveries":
		reply(200, f.logged(true))
	default:
		f.redeliver(fakeRepoRedo, w, r, reply)
	}
}

// logged lists the App's attempts, or (repo) webhook 11's, newest first.
func (f *fakeCI) logged(repo bool) []fakeDelivery {
	out := []fakeDelivery{}
	for i := len(f.deliveries) - 1; i >= 0; i-- {
		if f.deliveries[i].repo == repo {
			out = append(out, f.deliveries[i])
		}
	}
	return out
}

// redeliver answers a redelivery request matching path: 202 at once,
// the attempt made afterwards. f.mu is held.
func (f *fakeCI) redeliver(path *regexp.Regexp, _ http.ResponseWriter, r *http.Request, reply func(int, any)) {
	m := path.FindStringSubmatch(r.URL.Path)
	if r.Method != "POST" || m == nil {
		reply(404, map[string]string{"message": "Not Found"})
		return
	}
	for _, d := range f.deliveries {
		if fmt.Sprint(d.ID) == m[1] {
			f.sending.Add(1)
			go func() {
				defer f.sending.Done()
				// GitHub redelivers after it answered; a tollgate that
				// is starting gets up to 10 s to be pointed at.
				for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
					f.mu.Lock()
					up := f.hookURL != ""
					f.mu.Unlock()
					if up {
						break
					}
				}
				f.send(d.Event, d.GUID, d.body, true, d.repo)
			}()
			reply(202, map[string]any{})
			return
		}
	}
	reply(404, map[string]string{"message": "Not Found"})
}

// glDeliver sends one event of GitLab's webhook 5 as GitLab does — with
// its token and Idempotency-Key, once — and logs the attempt; with no
// hook URL (tollgate down) it gets no answer ("internal error").
func (f *fakeCI) glDeliver(event, key string, body []byte) {
	f.mu.Lock()
	url := f.glHookURL
	f.mu.Unlock()
	status := "internal error"
	headers := map[string]string{"X-Gitlab-Event": event, "Idempotency-Key": key, "Content-Type": "application/json"}
	if url != "" {
		req, _ := http.NewRequest("POST", url, strings.NewReader(string(body)))
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		req.Header.Set("X-Gitlab-Token", authoritySecret)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			status = fmt.Sprint(resp.StatusCode)
		}
	}
	f.mu.Lock()
	f.glEvents = append(f.glEvents, fakeGLEvent{ID: 700 + len(f.glEvents), Trigger: "pipeline_hooks", RequestHeaders: headers,
		ResponseStatus: status, CreatedAt: time.Now().UTC(), event: event, body: body})
	f.mu.Unlock()
}

// glAttempts returns the logged attempts of the event with key.
func (f *fakeCI) glAttempts(key string) []fakeGLEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeGLEvent
	for _, e := range f.glEvents {
		if e.RequestHeaders["Idempotency-Key"] == key {
			out = append(out, e)
		}
	}
	return out
}

// appInfo is what the fake App's read-only endpoints answer (the doctor's
// calls): the App subscribed to every event tollgate reads, its webhook at
// hookURL (or a connector named github), one installation.
func (f *fakeCI) appInfo(path string) any {
	switch path {
	case "/app":
		return map[string]any{"id": 123456, "slug": "tollgate-test",
			"events":      []string{"deployment", "deployment_protection_rule", "deployment_status", "workflow_job", "workflow_run"},
			"permissions": map[string]string{"actions": "read", "contents": "read", "deployments": "write"}}
	case "/app/hook/config":
		f.mu.Lock()
		url := f.hookURL
		f.mu.Unlock()
		if url == "" {
			url = "https://tollgate.example.com/webhooks/github"
		}
		return map[string]any{"url": url, "content_type": "json", "secret": "********", "insecure_ssl": "0"}
	}
	return []map[string]any{{"id": 4242001, "account": map[string]any{"login": "acme"},
		"permissions": map[string]string{"contents": "read", "deployments": "write"}}}
}
