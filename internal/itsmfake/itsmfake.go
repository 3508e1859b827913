// Package itsmfake is a fake ServiceNow instance and Jira site on
// httptest, for tests of the connectors' API clients and of tollgate end
// to end. It answers the calls tollgate makes as the vendors document
// them (Table API lists with sysparm_limit/offset paging, the Change
// Management API's POST, OAuth client credentials, Jira's issue, search
// and JSM approval resources) and injects faults on demand: 429 with
// Retry-After, 5xx, slow answers, malformed JSON. Records are kept in the
// shape the test gives them; the fake filters on their values.
package itsmfake

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"
)

// Fault is an injected misbehaviour for the next Times calls whose path
// and query contain Match.
type Fault struct {
	Match      string
	Times      int
	Status     int           // answer this status (429, 500 …)
	RetryAfter string        // with this Retry-After header
	Slow       time.Duration // answer this much later
	Malformed  bool          // answer 200 with broken JSON
}

// Call is one API call the fake received.
type Call struct {
	At     time.Time
	Method string
	Path   string
	Query  string
	Body   string
	User   string // Basic user, "bearer:<token>" or ""
	Status int
}

// Server is the fake: ServiceNow and Jira on one httptest server.
type Server struct {
	*httptest.Server
	mu     sync.Mutex
	calls  []Call
	faults []*Fault

	// Credentials accepted: Basic user → password, bearer tokens.
	users  map[string]string
	tokens map[string]bool
	oauth  map[string]string // client id → secret

	sn   snData
	jira jiraData

	// after, when set, is called once each call is answered (outside
	// the lock): a test changes records between a client's pages.
	after func(Call)
}

// AfterEach has f called with every call once it is answered, before
// the client reads the end of the answer: records f changes are seen by
// the client's next call.
func (s *Server) AfterEach(f func(Call)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.after = f
}

// New starts a fake accepting Basic auth user:password.
func New(user, password string) *Server {
	s := &Server{users: map[string]string{user: password}, tokens: map[string]bool{}, oauth: map[string]string{}}
	s.sn.init()
	s.jira.init()
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// AddUser accepts another Basic user.
func (s *Server) AddUser(user, password string) {
	s.mu.Lock()
	s.users[user] = password
	s.mu.Unlock()
}

// AddOAuthClient accepts OAuth client credentials at /oauth_token.do.
func (s *Server) AddOAuthClient(id, secret string) {
	s.mu.Lock()
	s.oauth[id] = secret
	s.mu.Unlock()
}

// AddToken accepts a bearer token (a Jira personal access token).
func (s *Server) AddToken(tok string) {
	s.mu.Lock()
	s.tokens[tok] = true
	s.mu.Unlock()
}

// Inject adds a fault.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	if f.Times == 0 {
		f.Times = 1
	}
	s.faults = append(s.faults, &f)
	s.mu.Unlock()
}

// Calls returns the calls so far whose path and query contain match.
func (s *Server) Calls(match string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if strings.Contains(c.Path+"?"+c.Query, match) {
			out = append(out, c)
		}
	}
	// A call is kept once answered, so a client's next call on the same
	// connection can be kept before it: the order is the arrivals'.
	slices.SortStableFunc(out, func(a, b Call) int { return a.At.Compare(b.At) })
	return out
}

// ResetCalls forgets the calls so far.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	s.calls = nil
	s.mu.Unlock()
}

func (s *Server) takeFault(path, query string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if strings.Contains(path+"?"+query, f.Match) {
			f.Times--
			if f.Times <= 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
			cp := *f
			return &cp
		}
	}
	return nil
}

// recorder captures the status written.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) { r.status = code; r.ResponseWriter.WriteHeader(code) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body := readAll(r)
	dq := r.URL.RawQuery
	if uq, err := urlUnescape(dq); err == nil {
		dq = uq
	}
	call := Call{At: time.Now(), Method: r.Method, Path: r.URL.Path, Query: dq, Body: body}
	rec := &recorder{ResponseWriter: w, status: 200}
	defer func() {
		call.Status = rec.status
		s.mu.Lock()
		s.calls = append(s.calls, call)
		after := s.after
		s.mu.Unlock()
		if after != nil {
			after(call)
		}
	}()
	if r.URL.Path == "/oauth_token.do" {
		s.snOAuth(rec, r, body)
		return
	}
	user, ok := s.authenticate(r)
	call.User = user
	if !ok {
		writeJSON(rec, http.StatusUnauthorized, map[string]any{"error": map[string]string{"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"})
		return
	}
	if f := s.takeFault(r.URL.Path, dq); f != nil {
		if f.Slow > 0 {
			select {
			case <-time.After(f.Slow):
			case <-r.Context().Done():
				return
			}
		}
		switch {
		case f.Malformed:
			rec.Header().Set("Content-Type", "application/json")
			rec.WriteHeader(200)
			_, _ = rec.Write([]byte(`{"result": [{"number": "CHG`))
			return
		case f.Status != 0:
			if f.RetryAfter != "" {
				rec.Header().Set("Retry-After", f.RetryAfter)
			}
			writeJSON(rec, f.Status, map[string]any{"error": map[string]string{"message": http.StatusText(f.Status)}, "errorMessages": []string{http.StatusText(f.Status)}})
			return
		}
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/api/"):
		s.serviceNow(rec, r, body)
	case strings.HasPrefix(r.URL.Path, "/rest/"):
		s.jiraServe(rec, r, body)
	default:
		writeJSON(rec, 404, map[string]string{"error": "no such resource"})
	}
}

func (s *Server) authenticate(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case strings.HasPrefix(h, "Basic "):
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h, "Basic "))
		if err != nil {
			return "", false
		}
		u, p, _ := strings.Cut(string(b), ":")
		pw, ok := s.users[u]
		return u, ok && pw == p
	case strings.HasPrefix(h, "Bearer "):
		t := strings.TrimPrefix(h, "Bearer ")
		return "bearer", s.tokens[t]
	}
	return "", false
}

func (s *Server) snOAuth(w http.ResponseWriter, r *http.Request, body string) {
	form, _ := parseForm(body)
	s.mu.Lock()
	sec, ok := s.oauth[form["client_id"]]
	s.mu.Unlock()
	if !ok || sec != form["client_secret"] || form["grant_type"] != "client_credentials" {
		writeJSON(w, 401, map[string]string{"error": "access_denied"})
		return
	}
	tok := fmt.Sprintf("tok-%d", time.Now().UnixNano())
	s.AddToken(tok)
	writeJSON(w, 200, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 1799})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func readAll(r *http.Request) string {
	if r.Body == nil {
		return ""
	}
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := r.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return sb.String()
}

// Handler is the fake's handler, to serve it from another server (a
// faultfake.Server answering as the fake once its fault heals).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }
