package gitlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
)

// TestDeliveries: the events of the projects' webhooks that point at the
// connector, newest first back to since, page by page, each with the
// delivery id Classify reads (Idempotency-Key, else X-Gitlab-Event-UUID)
// and GitLab's status ("internal error": no answer); a project whose
// webhooks the token may not read and a GitLab without the events API
// are said once, then passed over; a resend goes to the event's own
// path, and GitLab's refusals keep their kinds, but for a webhook GitLab
// holds disabled (asked for again later).
func TestDeliveries(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(min int) string { return now.Add(time.Duration(-min) * time.Minute).Format(time.RFC3339) }
	var mu sync.Mutex
	calls := map[string]int{}
	var resent []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("PRIVATE-TOKEN") != "glpat-x" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		calls[r.Method+" "+r.URL.Path]++
		projects := map[string]int{"acme%2Fpayments": 30, "acme%2Fsecret": 31, "acme%2Fold": 32}
		if id, ok := projects[strings.TrimPrefix(r.URL.EscapedPath(), "/api/v4/projects/")]; ok {
			_ = json.NewEncoder(w).Encode(map[string]any{"id": id})
			return
		}
		event := func(id, min int, status string, headers map[string]string) map[string]any {
			return map[string]any{"id": id, "trigger": "pipeline_hooks", "url": "https://tollgate.example.com/webhooks/gitlab",
				"request_headers": headers, "request_data": map[string]any{"object_kind": "pipeline"}, "response_status": status, "created_at": at(min)}
		}
		switch p := r.URL.Path; {
		case p == "/api/v4/projects/30/hooks" || p == "/api/v4/projects/32/hooks":
			_, _ = w.Write([]byte(`[{"id": 7, "url": "https://tollgate.example.com/webhooks/gitlab", "alert_status": "executable"},
				{"id": 8, "url": "https://chat.example.com/hook", "alert_status": "executable"}]`))
		case p == "/api/v4/projects/31/hooks":
			w.WriteHeader(http.StatusForbidden)
		case p == "/api/v4/projects/30/hooks/7/events" && r.URL.Query().Get("page") == "1":
			w.Header().Set("X-Next-Page", "2")
			_ = json.NewEncoder(w).Encode([]any{
				event(103, 1, "internal error", map[string]string{"Idempotency-Key": "k3", "X-Gitlab-Event-UUID": "u3"}),
				event(102, 5, "503", map[string]string{"X-Gitlab-Event-UUID": "u2"})})
		case p == "/api/v4/projects/30/hooks/7/events" && r.URL.Query().Get("page") == "2":
			w.Header().Set("X-Next-Page", "3")
			_ = json.NewEncoder(w).Encode([]any{
				event(101, 10, "200", map[string]string{"idempotency-key": "k1"}),
				event(100, 120, "500", map[string]string{"Idempotency-Key": "k0"})})
		case p == "/api/v4/projects/32/hooks/7/events":
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"404 Not Found"}`))
		case r.Method == "POST" && p == "/api/v4/projects/30/hooks/7/events/103/resend":
			resent = append(resent, "103")
			w.WriteHeader(http.StatusCreated)
		case r.Method == "POST" && p == "/api/v4/projects/30/hooks/7/events/101/resend":
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = w.Write([]byte(`{"message":"Hook disabled"}`))
		case r.Method == "POST" && p == "/api/v4/projects/30/hooks/7/events/100/resend":
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = w.Write([]byte(`{"message":"The hook URL has changed, and this log entry cannot be retried"}`))
		case r.Method == "POST" && p == "/api/v4/projects/30/hooks/7/events/102/resend":
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"message":"This endpoint has been requested too many times. Try again later."}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"message":"404 Not Found"}`))
		}
	}))
	defer srv.Close()
	w, err := newWebhook(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef", Projects: []string{"acme/payments", "acme/secret", "acme/old"},
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}}, apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !w.RedeliversFailed() {
		t.Fatal("RedeliversFailed is false with an API and projects")
	}
	for round := 0; round < 2; round++ {
		var got, logs []string
		since := func(log string) time.Time { logs = append(logs, log); return now.Add(-time.Hour) }
		err := w.Deliveries(context.Background(), since, func(d connectors.Delivery) error {
			if d.Log != "30/7" {
				t.Errorf("event %s in log %q, want its webhook's, 30/7", d.ID, d.Log)
			}
			got = append(got, fmt.Sprintf("%s %s %s %s ok=%v %d transient=%v", d.ID, d.GUID, d.At.Format("15:04"), d.Event, d.OK, d.StatusCode, d.Transient()))
			return nil
		})
		want := "30/7/103 k3 11:59 pipeline_hooks ok=false 0 transient=true|30/7/102 u2 11:55 pipeline_hooks ok=false 503 transient=true|" +
			"30/7/101 k1 11:50 pipeline_hooks ok=true 200 transient=false"
		if !slices.Equal(logs, []string{"30/7", "32/7"}) {
			t.Errorf("round %d: read the logs %v from their watermarks, want each own webhook's, [30/7 32/7]", round, logs)
		}
		if strings.Join(got, "|") != want {
			t.Errorf("round %d: deliveries\n%s\nwant\n%s", round, strings.Join(got, "|"), want)
		}
		switch {
		case round == 0 && (err == nil || !strings.Contains(err.Error(), "project acme/secret webhooks") || !strings.Contains(err.Error(), "Maintainer") ||
			!strings.Contains(err.Error(), "17.4")):
			t.Errorf("the first read: %v, want the forbidden project and the GitLab without events named", err)
		case round == 1 && err != nil:
			t.Errorf("the second read: %v, want both passed over", err)
		}
	}
	if calls["GET /api/v4/projects/30/hooks/7/events"] != 4 || calls["GET /api/v4/projects/31/hooks"] != 1 {
		t.Errorf("calls %v: want two pages a read, and the forbidden project asked once", calls)
	}

	ctx := context.Background()
	if err := w.Redeliver(ctx, connectors.Delivery{ID: "30/7/103"}); err != nil || len(resent) != 1 {
		t.Errorf("resend: %v (resent %v)", err, resent)
	}
	for _, c := range []struct {
		id       string
		kind     core.ErrorKind
		deferred bool
	}{{"30/7/102", core.KindUnavailable, false}, {"30/7/101", core.KindUnavailable, true}, {"30/7/100", core.KindInvalid, false},
		{"30/7/999", core.KindInvalid, false}, {"not-an-event", core.KindInvalid, false}} {
		err := w.Redeliver(ctx, connectors.Delivery{ID: c.id})
		if !core.IsKind(err, c.kind) || errors.Is(err, connectors.ErrDeferred) != c.deferred {
			t.Errorf("resend of %s: %v, want %v (deferred %v)", c.id, err, c.kind, c.deferred)
		}
	}
}

// TestDeliveriesUnread: a webhook whose events since its watermark run
// past the pages one run reads hands on those it read and is named in an
// ErrUnread with how far back they go; the other webhooks are still read,
// and no other error is joined.
func TestDeliveriesUnread(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		event := func(id, min int) map[string]any {
			return map[string]any{"id": id, "trigger": "job_hooks", "request_headers": map[string]string{"Idempotency-Key": fmt.Sprint("k", id)},
				"response_status": "internal error", "created_at": now.Add(time.Duration(-min) * time.Minute).Format(time.RFC3339)}
		}
		switch r.URL.Path {
		case "/api/v4/projects/acme%2Fbusy", "/api/v4/projects/acme/busy":
			_, _ = w.Write([]byte(`{"id": 40}`))
		case "/api/v4/projects/40/hooks":
			_, _ = w.Write([]byte(`[{"id": 7, "url": "https://tollgate.example.com/webhooks/gitlab", "alert_status": "executable"},
				{"id": 9, "url": "https://tollgate.example.com/webhooks/gitlab", "alert_status": "executable"}]`))
		case "/api/v4/projects/40/hooks/7/events": // a busy one: a next page always
			w.Header().Set("X-Next-Page", strconv.Itoa(page+1))
			_ = json.NewEncoder(w).Encode([]any{event(page*10, page), event(page*10+1, page)})
		case "/api/v4/projects/40/hooks/9/events":
			_ = json.NewEncoder(w).Encode([]any{event(900, 1)})
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	w, err := newWebhook(connectors.Config{Name: "gitlab", Type: Type, WebhookSecret: "0123456789abcdef", Projects: []string{"acme/busy"},
		API: &connectors.API{URL: srv.URL, Token: "glpat-x"}}, apiclient.Options{RetryMax: 0})
	if err != nil {
		t.Fatal(err)
	}
	w.api.pages = 3
	got := map[string]int{}
	err = w.Deliveries(context.Background(), func(string) time.Time { return now.Add(-time.Hour) }, func(d connectors.Delivery) error {
		got[d.Log]++
		return nil
	})
	unread, only := connectors.SplitUnread(err)
	if !only || len(unread) != 1 || !strings.Contains(err.Error(), "hook 7 events: more than 6 since 2026-12-06T11:00:00Z") ||
		!strings.Contains(err.Error(), "go back to 2026-12-06T11:57:00Z") {
		t.Errorf("Deliveries: %v, want hook 7 unread alone, saying how far back it was read", err)
	}
	if got["40/7"] != 6 || got["40/9"] != 1 {
		t.Errorf("handed on %v, want hook 7's six events read and hook 9's one", got)
	}
}
