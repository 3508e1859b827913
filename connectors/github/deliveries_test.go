package github

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
)

// fakeDeliveries is GitHub's App webhook delivery log: newest first, two
// to a page, the next page's cursor in the Link header (on another host,
// which must not be followed), every call checked for the App's JWT.
type fakeDeliveries struct {
	t   *testing.T
	all []hookDelivery // newest first

	mu         sync.Mutex
	pages      int
	redeliver  []string
	redoStatus int
}

func (f *fakeDeliveries) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	auth := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if _, err := jwt.Parse(auth, func(*jwt.Token) (any, error) {
		k, err := jwt.ParseRSAPrivateKeyFromPEM(testKey)
		if err != nil {
			return nil, err
		}
		return &k.PublicKey, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer("42")); err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/app/hook/deliveries":
		f.pages++
		if r.URL.Query().Get("per_page") != "100" {
			f.t.Errorf("per_page %q", r.URL.Query().Get("per_page"))
		}
		start := 0
		if c := r.URL.Query().Get("cursor"); c != "" {
			start, _ = strconv.Atoi(strings.TrimPrefix(c, "v1_"))
		}
		end := min(start+2, len(f.all))
		if end < len(f.all) {
			w.Header().Set("Link", `<https://elsewhere.example/app/hook/deliveries?per_page=100&cursor=v1_`+strconv.Itoa(end)+`>; rel="next"`)
		}
		_ = json.NewEncoder(w).Encode(f.all[start:end])
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/app/hook/deliveries/") && strings.HasSuffix(r.URL.Path, "/attempts"):
		if f.redoStatus != 0 {
			w.WriteHeader(f.redoStatus)
			_, _ = w.Write([]byte(`{"message":"no"}`))
			return
		}
		f.redeliver = append(f.redeliver, strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/app/hook/deliveries/"), "/attempts"))
		w.WriteHeader(http.StatusAccepted)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func deliveriesWebhook(t *testing.T, url string) *Webhook {
	t.Helper()
	w, err := newWebhook(connectors.Config{Name: "acme", Type: Type, WebhookSecret: "0123456789abcdef",
		API: &connectors.API{URL: url, AppID: "42", PrivateKey: testKey}},
		apiclient.Options{RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestDeliveries: the App's deliveries are read page after page by the
// cursor alone, newest first, down to the first attempt before since;
// each is read as it was (OK, status, redelivery); a redelivery is asked
// for by the attempt's id; GitHub refusing it is KindInvalid, failing is
// KindUnavailable. An App is enough: no protection rule is needed.
func TestDeliveries(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	f := &fakeDeliveries{t: t, all: []hookDelivery{
		{ID: 15, GUID: "g-3", DeliveredAt: t0.Add(5 * time.Minute), Status: "OK", StatusCode: 202, Event: "deployment", Action: "created"},
		{ID: 14, GUID: "g-2", DeliveredAt: t0.Add(4 * time.Minute), Redelivery: true, Status: "Invalid HTTP Response: 503", StatusCode: 503, Event: "deployment_protection_rule", Action: "requested"},
		{ID: 13, GUID: "g-2", DeliveredAt: t0.Add(3 * time.Minute), Status: "timed out", StatusCode: 0, Event: "deployment_protection_rule", Action: "requested"},
		{ID: 12, GUID: "g-1", DeliveredAt: t0.Add(2 * time.Minute), Status: "Invalid HTTP Response: 401", StatusCode: 401, Event: "deployment"},
		{ID: 11, GUID: "g-0", DeliveredAt: t0.Add(time.Minute), Status: "OK", StatusCode: 200, Event: "deployment"},
		{ID: 10, GUID: "g-old", DeliveredAt: t0, Status: "timed out", Event: "deployment"},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	w := deliveriesWebhook(t, srv.URL)
	if !w.RedeliversFailed() {
		t.Fatal("an App without a protection rule should still redeliver")
	}
	var got []connectors.Delivery
	if err := w.Deliveries(context.Background(), func(string) time.Time { return t0.Add(30 * time.Second) }, func(d connectors.Delivery) error {
		got = append(got, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id        string
		ok, redo  bool
		status    int
		transient bool
	}{
		{"15", true, false, 202, false},
		{"14", false, true, 503, true},
		{"13", false, false, 0, true},
		{"12", false, false, 401, false},
		{"11", true, false, 200, false},
	}
	if len(got) != len(want) {
		t.Fatalf("read %d deliveries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.ID != w.id || g.OK != w.ok || g.Redelivery != w.redo || g.StatusCode != w.status || g.Transient() != w.transient {
			t.Errorf("delivery %d: %+v (transient %v), want %+v", i, g, g.Transient(), w)
		}
	}
	if got[1].GUID != "g-2" || got[1].Event != "deployment_protection_rule" || got[1].Action != "requested" || !got[1].At.Equal(t0.Add(4*time.Minute)) {
		t.Errorf("fields not read: %+v", got[1])
	}
	if f.pages != 3 {
		t.Errorf("%d pages read, want 3 (the third holds the first attempt before since)", f.pages)
	}

	if err := w.Redeliver(context.Background(), got[1]); err != nil {
		t.Fatal(err)
	}
	if len(f.redeliver) != 1 || f.redeliver[0] != "14" {
		t.Errorf("redelivered %v, want [14]", f.redeliver)
	}
	for _, c := range []struct {
		status int
		kind   core.ErrorKind
	}{{http.StatusUnprocessableEntity, core.KindInvalid}, {http.StatusNotFound, core.KindInvalid}, {http.StatusBadGateway, core.KindUnavailable}} {
		f.mu.Lock()
		f.redoStatus = c.status
		f.mu.Unlock()
		err := w.Redeliver(context.Background(), got[1])
		if !core.IsKind(err, c.kind) || !strings.Contains(err.Error(), "GitHub acme: redeliver app webhook delivery 14") {
			t.Errorf("GitHub answering %d: %v, want %v naming the delivery", c.status, err, c.kind)
		}
	}
	if err := w.Redeliver(context.Background(), connectors.Delivery{ID: "../../x"}); !core.IsKind(err, core.KindInvalid) {
		t.Errorf("a delivery id that is not a number: %v", err)
	}
	noApp, err := newWebhook(connectors.Config{Name: "acme", Type: Type, WebhookSecret: "0123456789abcdef"}, apiclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if noApp.RedeliversFailed() || noApp.Deliveries(context.Background(), func(string) time.Time { return t0 }, func(connectors.Delivery) error { return nil }) == nil {
		t.Error("a connector without an App lists deliveries")
	}
}

// TestDeliveriesPageLimit: a log holding more attempts since its
// watermark than a run's pages is read newest first up to the limit,
// what was read is handed on, and the rest is said in an ErrUnread naming
// how far back the run read, and nothing else.
func TestDeliveriesPageLimit(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	f := &fakeDeliveries{t: t}
	for i := 9; i >= 0; i-- {
		f.all = append(f.all, hookDelivery{ID: int64(100 + i), GUID: "g-" + strconv.Itoa(i), DeliveredAt: t0.Add(time.Duration(i) * time.Minute),
			Status: "timed out", Event: "deployment"})
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	w := deliveriesWebhook(t, srv.URL)
	w.app.pages = 2
	var got []string
	err := w.Deliveries(context.Background(), func(string) time.Time { return t0 }, func(d connectors.Delivery) error {
		got = append(got, d.ID)
		return nil
	})
	unread, only := connectors.SplitUnread(err)
	if !only || len(unread) != 1 {
		t.Fatalf("Deliveries: %v, want one ErrUnread alone", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "app webhook deliveries: more than 4 since 2026-12-06T12:00:00Z") ||
		!strings.Contains(msg, "go back to 2026-12-06T12:06:00Z") {
		t.Errorf("error %q does not say how far the run read", msg)
	}
	if strings.Join(got, ",") != "109,108,107,106" || f.pages != 2 {
		t.Errorf("read %v in %d pages, want the newest 4 in 2", got, f.pages)
	}
}

func TestNextCursor(t *testing.T) {
	for _, c := range []struct{ link, want string }{
		{`<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_123>; rel="next"`, "v1_123"},
		{`<https://api.github.com/app/hook/deliveries?cursor=v1_1>; rel="prev", <https://api.github.com/app/hook/deliveries?cursor=v1_9>; rel="next"`, "v1_9"},
		{`<https://api.github.com/app/hook/deliveries?cursor=v1_1>; rel="prev"`, ""},
		{``, ""},
		{`garbage; rel="next"`, ""},
		{`<%zz>; rel="next"`, ""},
	} {
		if got := nextCursor(c.link); got != c.want {
			t.Errorf("nextCursor(%q) = %q, want %q", c.link, got, c.want)
		}
	}
}
