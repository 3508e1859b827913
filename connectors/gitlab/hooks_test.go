package gitlab

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
)

// TestHookStates: the state of each project webhook whose URL is the
// connector's (…/webhooks/gitlab), as GitLab's alert_status gives it; a
// project with none is "absent"; a project whose webhooks the token may
// not read (403) is said once in an error, then passed over.
func TestHookStates(t *testing.T) {
	var mu sync.Mutex
	hookReads := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("PRIVATE-TOKEN") != "glpat-x" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		projects := map[string]int{"acme%2Fpayments": 30, "acme%2Fledger": 31, "acme%2Fsecret": 32}
		if id, ok := projects[strings.TrimPrefix(r.URL.EscapedPath(), "/api/v4/projects/")]; ok {
			_ = json.NewEncoder(w).Encode(map[string]any{"id": id})
			return
		}
		hookReads[r.URL.Path]++
		switch r.URL.Path {
		case "/api/v4/projects/30/hooks":
			_, _ = w.Write([]byte(`[
				{"id": 7, "url": "https://tollgate.example.com/webhooks/gitlab", "alert_status": "temporarily_disabled", "disabled_until": "2026-12-06T12:30:00.000Z"},
				{"id": 8, "url": "https://chat.example.com/hooks/gitlab", "alert_status": "disabled", "disabled_until": null},
				{"id": 9, "url": "https://tollgate-b.example.com/webhooks/gitlab/?x=1", "alert_status": "executable", "disabled_until": null},
				{"id": 10, "url": "https://tollgate.example.com/webhooks/gitlab-other", "alert_status": "disabled", "disabled_until": null}]`))
		case "/api/v4/projects/31/hooks":
			_, _ = w.Write([]byte(`[]`))
		case "/api/v4/projects/32/hooks":
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"message":"403 Forbidden"}`))
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	w, err := newWebhook(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef", Projects: []string{"acme/payments", "acme/ledger", "acme/secret"},
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}}, apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	want := []connectors.HookState{
		{Where: "project acme/payments hook 7", Disabled: true, Until: time.Date(2026, 12, 6, 12, 30, 0, 0, time.UTC), Status: "temporarily_disabled"},
		{Where: "project acme/payments hook 9", Status: "executable"},
		{Where: "project acme/ledger", Disabled: true, Status: "absent"},
	}
	for round := 0; round < 2; round++ {
		got, err := w.HookStates(context.Background())
		if len(got) != len(want) {
			t.Fatalf("round %d: states %+v, want %+v", round, got, want)
		}
		for i := range want {
			if got[i].Where != want[i].Where || got[i].Disabled != want[i].Disabled || !got[i].Until.Equal(want[i].Until) || got[i].Status != want[i].Status {
				t.Errorf("round %d: state %d %+v, want %+v", round, i, got[i], want[i])
			}
		}
		switch {
		case round == 0 && (!core.IsKind(err, core.KindInvalid) || !strings.Contains(err.Error(), "project acme/secret webhooks") || !strings.Contains(err.Error(), "Maintainer")):
			t.Errorf("the first read: %v, want the forbidden project named", err)
		case round == 1 && err != nil:
			t.Errorf("the second read: %v, want the forbidden project passed over", err)
		}
	}
	if hookReads["/api/v4/projects/32/hooks"] != 1 {
		t.Errorf("the forbidden project's webhooks were asked for %d times, want once", hookReads["/api/v4/projects/32/hooks"])
	}
	noProjects, _ := New(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef", API: &connectors.API{URL: srv.URL, Token: "glpat-x"}})
	if s, err := noProjects.HookStates(context.Background()); s != nil || err != nil {
		t.Errorf("without projects: %v %v", s, err)
	}
}

// TestGroupHooks: a configured group's own webhooks are watched, their
// events read (each webhook its own log) and resent through the group's
// endpoints, as a project's are; a group whose webhooks the token may not
// read (the Owner role) is said once, then passed over; the doctor looks
// at each group.
func TestGroupHooks(t *testing.T) {
	var (
		mu     sync.Mutex
		resent []string
		denied int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("PRIVATE-TOKEN") != "glpat-x" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch p := r.URL.EscapedPath(); {
		case p == "/api/v4/groups/acme%2Fplatform/hooks":
			_, _ = w.Write([]byte(`[{"id": 9, "url": "https://tollgate.example.com/webhooks/gitlab", "alert_status": "temporarily_disabled",
				"disabled_until": "2026-12-06T13:00:00Z", "deployment_events": true, "job_events": true, "pipeline_events": true, "enable_ssl_verification": true},
				{"id": 10, "url": "https://chat.example.com/hook", "alert_status": "executable"}]`))
		case p == "/api/v4/groups/secret/hooks":
			denied++
			w.WriteHeader(http.StatusForbidden)
		case p == "/api/v4/groups/acme%2Fplatform/hooks/9/events":
			_, _ = w.Write([]byte(`[{"id": 501, "trigger": "deployment_hooks", "response_status": "internal error",
				"request_headers": {"Idempotency-Key": "gk1"}, "created_at": "2026-12-06T11:55:00Z"}]`))
		case r.Method == http.MethodPost && p == "/api/v4/groups/acme%2Fplatform/hooks/9/events/501/resend":
			resent = append(resent, p)
			w.WriteHeader(http.StatusCreated)
		default:
			t.Errorf("unexpected %s %s", r.Method, p)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	w, err := newWebhook(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef", Groups: []string{"acme/platform", "secret"},
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}}, apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if !w.RedeliversFailed() || !w.Polls() {
		t.Fatal("groups without projects: resent, and watched after each poll")
	}
	states, err := w.HookStates(ctx)
	if len(states) != 1 || states[0].Where != "group acme/platform hook 9" || !states[0].Disabled || states[0].Until.IsZero() {
		t.Errorf("states %+v", states)
	}
	if err == nil || !strings.Contains(err.Error(), "Owner role") {
		t.Errorf("the group the token may not read: %v, want it said with the role it needs", err)
	}
	var got []connectors.Delivery
	err = w.Deliveries(ctx, func(string) time.Time { return time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC) }, func(d connectors.Delivery) error {
		got = append(got, d)
		return nil
	})
	if err != nil || len(got) != 1 || got[0].ID != "groups/acme%2Fplatform/9/501" || got[0].Log != "groups/acme%2Fplatform/9" || got[0].GUID != "gk1" || !got[0].Transient() {
		t.Errorf("deliveries %+v, %v", got, err)
	}
	if denied != 1 {
		t.Errorf("the forbidden group asked %d times, want once", denied)
	}
	if err := w.Redeliver(ctx, got[0]); err != nil || len(resent) != 1 {
		t.Errorf("resend: %v, %v", err, resent)
	}
	fs := w.checkGroup(ctx, "acme/platform", connectors.PreflightInput{Name: "gitlab", Events: []string{"Deployment Hook"}})
	if len(fs) != 1 || fs[0].Check != "group acme/platform" || fs[0].Status != connectors.StatusWarn || !strings.Contains(fs[0].Detail, "temporarily disabled") {
		t.Errorf("doctor: %+v", fs)
	}
	if fs := w.checkGroup(ctx, "secret", connectors.PreflightInput{Name: "gitlab"}); len(fs) != 1 || !strings.Contains(fs[0].Detail, "Owner role") {
		t.Errorf("doctor, forbidden group: %+v", fs)
	}
}
