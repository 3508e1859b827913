package github

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
)

// fakeOwners is GitHub with the App installed on acme/payments (a webhook
// to this connector, one to chat, one to another connector) and on the
// organization acme (one webhook here), but not granted the Webhooks
// permission on the organization acme-labs; the App's own log is empty.
type fakeOwners struct {
	t         *testing.T
	mu        sync.Mutex
	calls     []string
	redeliver []string
	forbidden int
}

func (f *fakeOwners) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	auth := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	app := func() bool {
		_, err := jwt.Parse(auth, func(*jwt.Token) (any, error) {
			k, err := jwt.ParseRSAPrivateKeyFromPEM(testKey)
			if err != nil {
				return nil, err
			}
			return &k.PublicKey, nil
		}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer("42"))
		return err == nil
	}
	reply := func(v any) { _ = json.NewEncoder(w).Encode(v) }
	attempt := func(id int64, guid string, min, status int) hookDelivery {
		return hookDelivery{ID: id, GUID: guid, DeliveredAt: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC).Add(time.Duration(-min) * time.Minute),
			StatusCode: status, Status: map[bool]string{true: "OK", false: "Invalid HTTP Response: 503"}[status == 202], Event: "deployment_status"}
	}
	hook := func(id int64, url string) map[string]any {
		return map[string]any{"id": id, "active": true, "events": []string{"deployment_status"}, "config": map[string]any{"url": url, "content_type": "json"}}
	}
	p := r.URL.Path
	switch {
	case p == "/app/hook/deliveries" && app():
		reply([]hookDelivery{})
	case (p == "/repos/acme/payments/installation" || p == "/orgs/acme/installation" || p == "/orgs/acme-labs/installation") && app():
		reply(map[string]any{"id": map[string]int{"/repos/acme/payments/installation": 7, "/orgs/acme/installation": 8, "/orgs/acme-labs/installation": 9}[p]})
	case r.Method == http.MethodPost && strings.HasPrefix(p, "/app/installations/") && app():
		reply(map[string]any{"token": "ghs_" + strings.Split(p, "/")[3], "expires_at": time.Now().Add(time.Hour)})
	case auth == "":
		w.WriteHeader(http.StatusUnauthorized)
	case p == "/repos/acme/payments/hooks" && auth == "ghs_7":
		reply([]any{hook(11, "https://tollgate.example.com/webhooks/gh"), hook(12, "https://chat.example.com/hook"), hook(13, "https://tollgate.example.com/webhooks/other")})
	case p == "/orgs/acme/hooks" && auth == "ghs_8":
		reply([]any{hook(21, "https://tollgate.example.com/webhooks/gh/")})
	case p == "/orgs/acme-labs/hooks":
		f.forbidden++
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"message":"Resource not accessible by integration"}`))
	case p == "/repos/acme/payments/hooks/11/deliveries" && auth == "ghs_7":
		// A next page, which reads that stop at since never reach.
		w.Header().Set("Link", `<https://api.github.com/repos/acme/payments/hooks/11/deliveries?cursor=v1_2>; rel="next"`)
		reply([]hookDelivery{attempt(1102, "g2", 5, 0), attempt(1101, "g1", 30, 202), attempt(1100, "g0", 120, 503)})
	case p == "/orgs/acme/hooks/21/deliveries" && auth == "ghs_8":
		reply([]hookDelivery{attempt(2101, "o1", 10, 503)})
	case r.Method == http.MethodPost && p == "/repos/acme/payments/hooks/11/deliveries/1102/attempts" && auth == "ghs_7",
		r.Method == http.MethodPost && p == "/orgs/acme/hooks/21/deliveries/2101/attempts" && auth == "ghs_8":
		f.redeliver = append(f.redeliver, p)
		w.WriteHeader(http.StatusAccepted)
	default:
		f.t.Errorf("fake GitHub: unexpected %s %s (auth %q)", r.Method, p, auth)
		w.WriteHeader(http.StatusNotFound)
	}
}

// TestOwnerDeliveries: the deliveries of the configured repositories' and
// organizations' own webhooks that point at the connector are read as the
// App's installation on each, each webhook its own log, back to that log's
// since; other webhooks are not read; an organization whose webhooks the
// App may not read is said once, then passed over; a redelivery goes to
// the webhook's own endpoint with the installation's token.
func TestOwnerDeliveries(t *testing.T) {
	f := &fakeOwners{t: t}
	srv := httptest.NewServer(f)
	defer srv.Close()
	w, err := newWebhook(connectors.Config{Name: "gh", Type: Type, WebhookSecret: "0123456789abcdef",
		Repositories: []string{"acme/payments"}, Organizations: []string{"acme", "acme-labs"},
		API: &connectors.API{URL: srv.URL, AppID: "42", PrivateKey: testKey}},
		apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for round := range 2 {
		var got, logs []string
		since := func(log string) time.Time { logs = append(logs, log); return now.Add(-time.Hour) }
		err := w.Deliveries(context.Background(), since, func(d connectors.Delivery) error {
			got = append(got, d.Log+" "+d.ID+" "+d.GUID+" transient="+map[bool]string{true: "yes", false: "no"}[d.Transient()])
			return nil
		})
		want := []string{
			"repos/acme/payments/hooks/11 repos/acme/payments/hooks/11/deliveries/1102 g2 transient=yes",
			"repos/acme/payments/hooks/11 repos/acme/payments/hooks/11/deliveries/1101 g1 transient=no",
			"orgs/acme/hooks/21 orgs/acme/hooks/21/deliveries/2101 o1 transient=yes",
		}
		if !slices.Equal(got, want) {
			t.Errorf("round %d: deliveries\n%s\nwant\n%s", round, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if !slices.Equal(logs, []string{"", "repos/acme/payments/hooks/11", "orgs/acme/hooks/21"}) {
			t.Errorf("round %d: logs read %v", round, logs)
		}
		switch {
		case round == 0 && (err == nil || !strings.Contains(err.Error(), "orgs/acme-labs") || !strings.Contains(err.Error(), "Webhooks permission")):
			t.Errorf("first read: %v, want acme-labs named with the permission it lacks", err)
		case round == 1 && err != nil:
			t.Errorf("second read: %v, want acme-labs passed over", err)
		}
	}
	if f.forbidden != 1 {
		t.Errorf("acme-labs's webhooks asked %d times, want once", f.forbidden)
	}

	// A webhook's log holding more since its watermark than a run reads
	// is said unread; the logs after it are still read.
	w.app.pages = 1
	var got []string
	err = w.Deliveries(context.Background(), func(string) time.Time { return now.Add(-3 * time.Hour) }, func(d connectors.Delivery) error {
		got = append(got, d.ID)
		return nil
	})
	if unread, only := connectors.SplitUnread(err); !only || len(unread) != 1 || !strings.Contains(err.Error(), "repos/acme/payments/hooks/11 deliveries: more than 3") {
		t.Errorf("a log past the run's pages: %v, want it alone said unread", err)
	}
	if len(got) != 4 || got[3] != "orgs/acme/hooks/21/deliveries/2101" {
		t.Errorf("read %v, want the repository webhook's 3 then the organization's", got)
	}
	w.app.pages = 0

	ctx := context.Background()
	for _, d := range []connectors.Delivery{
		{ID: "repos/acme/payments/hooks/11/deliveries/1102", Log: "repos/acme/payments/hooks/11"},
		{ID: "orgs/acme/hooks/21/deliveries/2101", Log: "orgs/acme/hooks/21"},
	} {
		if err := w.Redeliver(ctx, d); err != nil {
			t.Errorf("redeliver %s: %v", d.ID, err)
		}
	}
	if len(f.redeliver) != 2 {
		t.Errorf("redelivered %v", f.redeliver)
	}
	if err := w.Redeliver(ctx, connectors.Delivery{ID: "repos/acme/payments/../../x/hooks/1/deliveries/2", Log: "repos/acme/payments"}); !core.IsKind(err, core.KindInvalid) {
		t.Errorf("a malformed delivery id: %v, want refused", err)
	}
	if n := slices.Index(f.calls, "GET /repos/acme/payments/installation"); n < 0 || slices.Index(f.calls[n+1:], "GET /repos/acme/payments/installation") >= 0 {
		t.Errorf("the installation of acme/payments looked up %v, want once", f.calls)
	}
}

// TestCheckOwner: the doctor's look at a configured repository and
// organization: webhooks pointing here, active and sending JSON, pass; an
// organization whose webhooks the App may not read is a warning; events
// the profiles read that a webhook does not send are named.
func TestCheckOwner(t *testing.T) {
	srv := httptest.NewServer(&fakeOwners{t: t})
	defer srv.Close()
	w, err := newWebhook(connectors.Config{Name: "gh", Type: Type, WebhookSecret: "0123456789abcdef",
		Repositories: []string{"acme/payments"}, Organizations: []string{"acme-labs"},
		API: &connectors.API{URL: srv.URL, AppID: "42", PrivateKey: testKey}},
		apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		owner  string
		events []string
		want   string
	}{
		{"repos/acme/payments", []string{"deployment_status", "deployment_protection_rule"}, "ok repository acme/payments 1 webhook(s) point here"},
		{"repos/acme/payments", []string{"deployment_status", "workflow_run"}, "warn repository acme/payments hook 11 does not send workflow_run"},
		{"orgs/acme-labs", nil, "warn organization acme-labs the App is not installed there or may not read its webhooks"},
		{"orgs/acme-labs", nil, "warn organization acme-labs the App is not installed there or may not read its webhooks"}, // looked at again
	} {
		fs := w.checkOwner(ctx, c.owner, connectors.PreflightInput{Name: "gh", Events: c.events})
		if len(fs) != 1 || !strings.HasPrefix(string(fs[0].Status)+" "+fs[0].Check+" "+fs[0].Detail, c.want) {
			t.Errorf("%s: %+v, want %q", c.owner, fs, c.want)
		}
	}
}
