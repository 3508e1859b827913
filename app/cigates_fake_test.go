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
}

// fakeAnswer is one accepted answer.
type fakeAnswer struct {
	Provider     string
	Run          string // GitHub run id, GitLab deployment id
	Installation string
	Environment  string
	State        string
	Comment      string
	At           time.Time
}

var (
	fakeTokenPath  = regexp.MustCompile(`^/app/installations/([^/]+)/access_tokens$`)
	fakeReviewPath = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/actions/runs/([0-9]+)/deployment_protection_rule$`)
	fakeCommitPath = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/commits/([^/]+)$`)
	fakeApprPath   = regexp.MustCompile(`^/api/v4/projects/([^/]+)/deployments/([^/]+)/approval$`)
)

func newFakeCI(t testing.TB) *fakeCI {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCI{t: t, appID: "123456", key: k, glToken: "glpat-approver-0123456789",
		tokens: map[string]string{}, commits: map[string]string{}}
	f.keyFile = filepath.Join(t.TempDir(), "app.pem")
	pemText := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	if err := os.WriteFile(f.keyFile, pemText, 0o600); err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
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
	case r.Method == "POST" && fakeApprPath.MatchString(p):
		m := fakeApprPath.FindStringSubmatch(p)
		if r.Header.Get("PRIVATE-TOKEN") != f.glToken {
			reply(401, map[string]string{"message": "401 Unauthorized"})
			return
		}
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
