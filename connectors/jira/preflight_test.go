package jira

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
)

// site is a fake Jira answering the preflight's reads: JSON answers by
// path, or a status instead; Basic testUser:testToken only.
type site struct {
	*httptest.Server
	mu      sync.Mutex
	answers map[string]any
	status  map[string]int
	methods []string
}

func newSite() *site {
	s := &site{status: map[string]int{}, answers: map[string]any{
		"/rest/api/2/myself": map[string]any{"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Ops Bot", "emailAddress": testUser},
		"/rest/api/2/project/OPS": map[string]any{"key": "OPS", "name": "Operations",
			"issueTypes": []any{map[string]any{"name": "Task"}, map[string]any{"name": "Change"}}},
		"/rest/servicedeskapi/servicedesk/1/requesttype/10": map[string]any{"id": "10", "name": "Request a change", "serviceDeskId": "1"},
		"/rest/webhooks/1.0/webhook": []any{
			map[string]any{"name": "chat", "url": "https://chat.example.com/hooks/jira", "enabled": true, "events": []any{"jira:issue_created"}},
			map[string]any{"name": "tollgate", "url": "https://tollgate.example.com/webhooks/ops?token=hook-secret-42", "enabled": true,
				"events": []any{"jira:issue_created", "jira:issue_updated"}, "self": "https://jira.example.com/rest/webhooks/1.0/webhook/3"},
		},
	}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

func (s *site) set(path string, answer any) {
	s.mu.Lock()
	s.answers[path] = answer
	s.mu.Unlock()
}

func (s *site) fail(path string, status int) {
	s.mu.Lock()
	s.status[path] = status
	s.mu.Unlock()
}

func (s *site) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.methods = append(s.methods, r.Method+" "+r.URL.Path)
	answer, ok := s.answers[r.URL.Path]
	status := s.status[r.URL.Path]
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if u, p, _ := r.BasicAuth(); u != testUser || p != testToken {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errorMessages":["You are not authenticated. Authentication required to perform this operation."],"errors":{}}`))
		return
	}
	switch {
	case status != 0:
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"errorMessages":[%q],"errors":{}}`, http.StatusText(status))
	case !ok:
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errorMessages":["No project could be found with key."],"errors":{}}`))
	default:
		_ = json.NewEncoder(w).Encode(answer)
	}
}

func (s *site) calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.methods...)
}

func preflightClient(t *testing.T, url string, mut func(*connectors.Config)) *Client {
	t.Helper()
	api := connectors.API{URL: url, Username: testUser, Password: testToken, Timeout: 300 * time.Millisecond, PollInterval: time.Minute}
	cfg := connectors.Config{Name: "ops", Type: Type, API: &api, Projects: []string{"OPS"},
		ChangeCreation: &connectors.ChangeCreation{Environments: []string{"production"}, Project: "OPS", IssueType: "change"}}
	if mut != nil {
		mut(&cfg)
	}
	hc := apiclient.New(apiclient.Options{Instance: "ops", Timeout: api.Timeout, RetryMax: 2,
		RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond, FailuresToOpen: 100})
	c, err := NewClient(cfg, hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// finding is what a test expects of one preflight finding: its check,
// its status and a part of its detail.
type finding struct {
	check  string
	status connectors.Status
	detail string
}

var allGood = []finding{
	{"credentials", connectors.StatusOK, "as Ops Bot (5b10ac8d82e05b22cc7d4ef5)"},
	{"project OPS", connectors.StatusOK, "read (Operations)"},
	{"change creation", connectors.StatusOK, "issue type Change of project OPS"},
	{"webhook", connectors.StatusOK, `webhook "tollgate" (https://tollgate.example.com/webhooks/ops) points at …/webhooks/ops, enabled`},
}

// but is allGood with finding i replaced by f.
func but(i int, f finding) []finding {
	out := append([]finding(nil), allGood...)
	out[i] = f
	return out
}

func TestPreflight(t *testing.T) {
	hook := func(enabled bool, url string, events ...string) func(*site, *connectors.Config) {
		return func(s *site, _ *connectors.Config) {
			s.set("/rest/webhooks/1.0/webhook", []any{map[string]any{"name": "tollgate", "url": url, "enabled": enabled, "events": events}})
		}
	}
	types := make([]any, 12)
	for i := range types {
		types[i] = map[string]any{"name": fmt.Sprintf("Type %d", i+1)}
	}
	tests := []struct {
		name   string
		setup  func(*site, *connectors.Config)
		events []string
		want   []finding
	}{
		{name: "all good", want: allGood},
		{name: "Data Center user, any event", events: []string{}, setup: func(s *site, _ *connectors.Config) {
			s.set("/rest/api/2/myself", map[string]any{"name": "ops-bot", "key": "JIRAUSER10100", "displayName": "Ops Bot"})
		}, want: but(0, finding{"credentials", connectors.StatusOK, "as Ops Bot (ops-bot)"})},
		{name: "a user west of UTC (the poller writes its dates in the user's zone)", setup: func(s *site, _ *connectors.Config) {
			s.set("/rest/api/2/myself", map[string]any{"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Ops Bot", "timeZone": "America/New_York"})
		}, want: allGood},
		{name: "a user in a zone unknown here", setup: func(s *site, _ *connectors.Config) {
			s.set("/rest/api/2/myself", map[string]any{"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Ops Bot", "timeZone": "Mars/Olympus_Mons"})
		}, want: but(0, finding{"credentials", connectors.StatusWarn, `as Ops Bot (5b10ac8d82e05b22cc7d4ef5), whose time zone "Mars/Olympus_Mons" is unknown here`})},
		{name: "credentials refused", setup: func(_ *site, cfg *connectors.Config) { cfg.API.Password = "wrong-token-xyz" },
			want: []finding{{"credentials", connectors.StatusFail, `credentials refused (Jira ops: credentials: HTTP 401: You are not authenticated. Authentication required to perform this operation.): check the user "ops-bot@example.com"`}}},
		{name: "site unreachable", setup: func(s *site, _ *connectors.Config) { s.Close() },
			want: []finding{{"credentials", connectors.StatusFail, "Jira ops: credentials: "}}},
		{name: "project not browsable", setup: func(s *site, cfg *connectors.Config) {
			cfg.Projects = []string{"OPS", "SEC"}
		}, want: []finding{allGood[0], allGood[1],
			{"project SEC", connectors.StatusFail, "no project SEC, or the user may not browse it: the poller cannot read its issues"},
			allGood[2], allGood[3]}},
		{name: "a 500 on the project leaves the others running", setup: func(s *site, _ *connectors.Config) {
			s.fail("/rest/api/2/project/OPS", http.StatusInternalServerError)
		}, want: []finding{allGood[0],
			{"project OPS", connectors.StatusFail, "Jira ops: project OPS: HTTP 500: Internal Server Error"},
			{"change creation", connectors.StatusFail, "Jira ops: project OPS: HTTP 500"},
			allGood[3]}},
		{name: "issue type missing", setup: func(s *site, _ *connectors.Config) {
			s.set("/rest/api/2/project/OPS", map[string]any{"key": "OPS", "name": "Operations", "issueTypes": types})
		}, want: but(2, finding{"change creation", connectors.StatusFail,
			`project OPS has no issue type "change": changes cannot be opened; it has Type 1, Type 2, Type 3, Type 4, Type 5, Type 6, Type 7, Type 8, Type 9, Type 10 and 2 more`})},
		{name: "JSM request type", setup: func(_ *site, cfg *connectors.Config) {
			cfg.ChangeCreation = &connectors.ChangeCreation{Environments: []string{"production"}, ServiceDeskID: "1", RequestTypeID: "10"}
		}, want: but(2, finding{"change creation", connectors.StatusOK, `JSM request type "Request a change" (10) of service desk 1`})},
		{name: "JSM request type unknown", setup: func(_ *site, cfg *connectors.Config) {
			cfg.ChangeCreation = &connectors.ChangeCreation{Environments: []string{"production"}, ServiceDeskID: "1", RequestTypeID: "99"}
		}, want: but(2, finding{"change creation", connectors.StatusFail, "no request type 99 in service desk 1, or the user may not see it"})},
		{name: "no change creation, no project", setup: func(_ *site, cfg *connectors.Config) { cfg.ChangeCreation, cfg.Projects = nil, nil },
			want: []finding{allGood[0], allGood[3]}},
		{name: "webhooks forbidden", setup: func(s *site, _ *connectors.Config) { s.fail("/rest/webhooks/1.0/webhook", http.StatusForbidden) },
			want: but(3, finding{"webhook", connectors.StatusWarn, "cannot list webhooks (needs the Jira administrator permission): whether one points at …/webhooks/ops is not checked"})},
		{name: "webhooks unauthorized", setup: func(s *site, _ *connectors.Config) { s.fail("/rest/webhooks/1.0/webhook", http.StatusUnauthorized) },
			want: but(3, finding{"webhook", connectors.StatusWarn, "needs the Jira administrator permission"})},
		{name: "webhooks 500", setup: func(s *site, _ *connectors.Config) { s.fail("/rest/webhooks/1.0/webhook", http.StatusBadGateway) },
			want: but(3, finding{"webhook", connectors.StatusWarn, "cannot list webhooks (Jira ops: webhooks: HTTP 502: Bad Gateway)"})},
		{name: "no webhook points here", setup: hook(true, "https://tollgate.example.com/webhooks/ops2", "jira:issue_updated"),
			want: but(3, finding{"webhook", connectors.StatusWarn, "no webhook points at …/webhooks/ops: unless an automation rule sends them"})},
		{name: "no webhook and no poller", setup: func(s *site, cfg *connectors.Config) {
			hook(true, "https://elsewhere.example.com/")(s, cfg)
			cfg.API.PollInterval = 0
		}, want: but(3, finding{"webhook", connectors.StatusWarn, "and no poller runs"})},
		{name: "webhook disabled", setup: hook(false, "https://tollgate.example.com/webhooks/ops/?secret=hook-secret-42", "jira:issue_updated"),
			want: but(3, finding{"webhook", connectors.StatusFail, `webhook "tollgate" (https://tollgate.example.com/webhooks/ops/) is disabled: Jira sends it nothing`})},
		{name: "webhook misses events", events: []string{"jira:issue_updated", "Comment_Created", "jira:issue_created"},
			setup: hook(true, "https://tollgate.example.com/webhooks/ops", "jira:issue_created"),
			want:  but(3, finding{"webhook", connectors.StatusWarn, "is not subscribed to jira:issue_updated, Comment_Created: those events never reach tollgate"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite()
			defer s.Close()
			var setupCfg func(*connectors.Config)
			if tc.setup != nil {
				setupCfg = func(cfg *connectors.Config) { tc.setup(s, cfg) }
			}
			c := preflightClient(t, s.URL, setupCfg)
			events := tc.events
			if events == nil {
				events = []string{"jira:issue_updated"}
			}
			got := c.Preflight(context.Background(), connectors.PreflightInput{Name: "ops", Events: events})
			checkFindings(t, got, tc.want)
			for _, call := range s.calls() {
				if !strings.HasPrefix(call, "GET ") {
					t.Errorf("the preflight wrote: %s", call)
				}
			}
		})
	}
}

// TestPreflightCallsOnce: a project both polled and changes are opened in
// is read once.
func TestPreflightCallsOnce(t *testing.T) {
	s := newSite()
	defer s.Close()
	c := preflightClient(t, s.URL, nil)
	checkFindings(t, c.Preflight(context.Background(), connectors.PreflightInput{Name: "ops", Events: []string{"jira:issue_updated"}}), allGood)
	want := "GET /rest/api/2/myself, GET /rest/api/2/project/OPS, GET /rest/webhooks/1.0/webhook"
	if got := strings.Join(s.calls(), ", "); got != want {
		t.Errorf("calls %s, want %s", got, want)
	}
}

// checkFindings compares the findings with want, in order, and checks
// that no detail holds a secret.
func checkFindings(t *testing.T, got []connectors.Finding, want []finding) {
	t.Helper()
	ws := make([]hooktest.Want, len(want))
	for i, w := range want {
		ws[i] = hooktest.Want{Check: w.check, Status: w.status, Detail: w.detail}
	}
	hooktest.CheckFindings(t, got, ws, testToken, "wrong-token-xyz", "hook-secret-42", "?")
}
