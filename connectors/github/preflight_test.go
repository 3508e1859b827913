package github

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/connectors"
)

// fakeApp is GitHub's API as the App sees it: each path answers its
// JSON (or its status), only to a GET carrying a JWT of App 42 signed
// with testKey; anything else is a test failure or a 401.
type fakeApp struct {
	t      *testing.T
	body   map[string]string // path → JSON answer
	status map[string]int    // path → status answered instead

	mu    sync.Mutex
	jwts  []string
	paths []string
}

// wantPerPage is the page size each listing must ask for.
var wantPerPage = map[string]string{"/app/installations": "100", "/app/hook/deliveries": "50"}

func (f *fakeApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		f.t.Errorf("the preflight sent %s %s: it must only read", r.Method, r.URL.Path)
	}
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if _, err := jwt.Parse(auth, func(*jwt.Token) (any, error) {
		k, err := jwt.ParseRSAPrivateKeyFromPEM(testKey)
		if err != nil {
			return nil, err
		}
		return &k.PublicKey, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer("42"), jwt.WithExpirationRequired()); !ok || err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"message":"A JSON web token could not be decoded"}`))
		return
	}
	f.mu.Lock()
	f.jwts = append(f.jwts, auth)
	f.paths = append(f.paths, r.URL.Path)
	f.mu.Unlock()
	if want, ok := wantPerPage[r.URL.Path]; ok && r.URL.Query().Get("per_page") != want {
		f.t.Errorf("%s asked with per_page %q, want %s", r.URL.Path, r.URL.Query().Get("per_page"), want)
	}
	if s := f.status[r.URL.Path]; s != 0 {
		w.WriteHeader(s)
		_, _ = w.Write([]byte(`{"message":"GitHub had a problem"}`))
		return
	}
	b, ok := f.body[r.URL.Path]
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	_, _ = w.Write([]byte(b))
}

var preflightT0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// healthyApp answers as a well set up protection rule App would.
func healthyApp(t *testing.T) *fakeApp {
	deliveries, _ := json.Marshal([]hookDelivery{
		{ID: 4, GUID: "g-4", DeliveredAt: preflightT0.Add(4 * time.Minute), Status: "OK", StatusCode: 202, Event: "deployment_protection_rule"},
		{ID: 3, GUID: "g-3", DeliveredAt: preflightT0.Add(3 * time.Minute), Status: "OK", StatusCode: 202, Event: "workflow_run"},
		{ID: 2, GUID: "g-2", DeliveredAt: preflightT0.Add(2 * time.Minute), Status: "OK", StatusCode: 200, Event: "deployment_status"},
	})
	return &fakeApp{t: t, status: map[string]int{}, body: map[string]string{
		"/app": `{"id":42,"slug":"tollgate-acme","name":"tollgate acme","client_id":"Iv1.x",
			"events":["deployment","deployment_protection_rule","deployment_status","workflow_run"],
			"permissions":{"deployments":"write","contents":"read","metadata":"read","actions":"read"}}`,
		"/app/hook/config":     `{"url":"https://tollgate.example.com/webhooks/acme","content_type":"json","secret":"********","insecure_ssl":"0"}`,
		"/app/installations":   `[{"id":99,"account":{"login":"Codertocat","id":1},"permissions":{"deployments":"write","contents":"read"},"suspended_at":null}]`,
		"/app/hook/deliveries": string(deliveries),
	}}
}

// want is a finding expected: its check, status and words of its
// detail.
type want struct {
	check  string
	status connectors.Status
	says   []string
}

func wantOK(check string, says ...string) want   { return want{check, connectors.StatusOK, says} }
func wantWarn(check string, says ...string) want { return want{check, connectors.StatusWarn, says} }
func wantFail(check string, says ...string) want { return want{check, connectors.StatusFail, says} }

// allOK is the healthy App's findings with a gate.
var allOK = []want{
	wantOK("app", `app "tollgate-acme" (id 42)`),
	wantOK("events", "deployment_status, workflow_run, deployment_protection_rule"),
	wantOK("permissions", "deployments: write"),
	wantOK("webhook", "https://tollgate.example.com/webhooks/acme"),
	wantOK("installations", "installed on 1 account: Codertocat"),
	wantOK("deliveries", "the last 3 deliveries were delivered"),
}

// replace is allOK with the findings of check replaced by ws.
func replace(check string, ws ...want) []want {
	var out []want
	for _, w := range allOK {
		if w.check == check {
			out = append(out, ws...)
		} else {
			out = append(out, w)
		}
	}
	return out
}

// preflightCase is one App as GitHub shows it, and the findings wanted.
type preflightCase struct {
	name   string
	noGate bool
	events []string // the profiles' events; nil: the default of TestPreflight
	key    []byte   // the connector's App key; nil: testKey
	fake   func(f *fakeApp)
	want   []want
}

// appCases are those of the App: its key, events and permissions.
func appCases(t *testing.T) []preflightCase {
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return []preflightCase{
		{name: "all good", want: replace("permissions", wantOK("permissions", "deployments: write, contents: read"))},
		{name: "all good without a gate, deployments read", noGate: true, events: []string{"deployment_status", "workflow_run"}, fake: func(f *fakeApp) {
			f.body["/app"] = `{"id":42,"slug":"tollgate-acme","events":["deployment_status","workflow_run"],"permissions":{"deployments":"read"}}`
		}, want: []want{allOK[0], wantOK("events", "every event the connector reads: deployment_status, workflow_run"),
			wantOK("permissions", "deployments: read"), allOK[3], allOK[4], allOK[5]},
		},
		{name: "bad key", key: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(otherKey)}),
			want: []want{wantFail("app", "HTTP 401", "api.app_id (42)", "api.private_key_file")}},
		{name: "GitHub failing", fake: func(f *fakeApp) { f.status["/app"] = 503 },
			want: []want{wantFail("app", "cannot read the App", "HTTP 503")}},
		{name: "not GitHub's API", fake: func(f *fakeApp) { delete(f.body, "/app") },
			want: []want{wantFail("app", "HTTP 404", "api.url")}},
		{name: "missing events", events: []string{"deployment_status", "workflow_job", "Deployment_Status", "workflow_run"}, fake: func(f *fakeApp) {
			f.body["/app"] = strings.Replace(f.body["/app"], `"workflow_run"`, `"push"`, 1)
		}, want: replace("events", wantWarn("events", "not subscribed to workflow_job, workflow_run: GitHub sends none", "Permissions & events")),
		},
		{name: "missing deployment_protection_rule with a gate", fake: func(f *fakeApp) {
			f.body["/app"] = strings.Replace(f.body["/app"], `"deployment_protection_rule",`, ``, 1)
		}, want: replace("events", wantFail("events", "not subscribed to deployment_protection_rule", "not gated by tollgate")),
		},
		{name: "missing deployment_protection_rule without a gate", noGate: true, events: []string{"deployment"}, fake: func(f *fakeApp) {
			f.body["/app"] = strings.Replace(f.body["/app"], `"deployment_protection_rule",`, ``, 1)
		}, want: replace("events", wantOK("events", "every event the connector reads: deployment")),
		},
		{name: "profiles take any event", noGate: true, events: []string{}, want: replace("events",
			wantOK("events", "take any event; the App is subscribed to deployment, deployment_protection_rule, deployment_status, workflow_run"))},
		{name: "deployments read-only with a gate", fake: func(f *fakeApp) {
			f.body["/app"] = strings.Replace(f.body["/app"], `"deployments":"write"`, `"deployments":"read"`, 1)
		}, want: replace("permissions", wantFail("permissions", "Deployments permission is read", "read and write")),
		},
		{name: "no deployments nor contents with a gate", fake: func(f *fakeApp) {
			f.body["/app"] = strings.Replace(f.body["/app"], `"deployments":"write","contents":"read",`, ``, 1)
		}, want: replace("permissions", wantFail("permissions", "Deployments permission is none"), wantWarn("permissions", "no Contents permission")),
		},
		{name: "no deployments without a gate", noGate: true, fake: func(f *fakeApp) {
			f.body["/app"] = strings.Replace(f.body["/app"], `"deployments":"write",`, ``, 1)
		}, want: replace("permissions", wantWarn("permissions", "no Deployments permission", "cannot be read back")),
		},
	}
}

// webhookCases are those of the App's webhook configuration.
func webhookCases() []preflightCase {
	return []preflightCase{
		{name: "webhook elsewhere", fake: func(f *fakeApp) {
			f.body["/app/hook/config"] = `{"url":"https://user:pw@elsewhere.example/hooks/acme?token=s3cr3t","content_type":"json","secret":"********","insecure_ssl":"0"}`
		}, want: replace("webhook", wantFail("webhook", "URL is https://elsewhere.example/hooks/acme,", "set it to https://<tollgate host>/webhooks/acme")),
		},
		{name: "webhook of another connector", fake: func(f *fakeApp) {
			f.body["/app/hook/config"] = `{"url":"https://tollgate.example.com/webhooks/acme-staging","content_type":"json","secret":"********"}`
		}, want: replace("webhook", wantFail("webhook", "https://tollgate.example.com/webhooks/acme-staging"))},
		{name: "no webhook URL", fake: func(f *fakeApp) {
			f.body["/app/hook/config"] = `{"url":"","content_type":"json","secret":"********"}`
		}, want: replace("webhook", wantFail("webhook", "no webhook URL", "https://<tollgate host>/webhooks/acme"))},
		{name: "plain http", fake: func(f *fakeApp) {
			f.body["/app/hook/config"] = `{"url":"http://tollgate.example.com/webhooks/acme?t=x","content_type":"json","secret":"********"}`
		}, want: replace("webhook", wantWarn("webhook", "http://tollgate.example.com/webhooks/acme is plain http"))},
		{name: "form content type", fake: func(f *fakeApp) {
			f.body["/app/hook/config"] = `{"url":"https://tollgate.example.com/webhooks/acme","content_type":"form","secret":"********","insecure_ssl":"0"}`
		}, want: replace("webhook", wantFail("webhook", "content type is form", "refuses form-encoded"))},
		{name: "no secret", fake: func(f *fakeApp) {
			f.body["/app/hook/config"] = `{"url":"https://tollgate.example.com/webhooks/acme","content_type":"json","insecure_ssl":"0"}`
		}, want: replace("webhook", wantFail("webhook", "no secret", "refuses them"))},
		{name: "null secret", fake: func(f *fakeApp) {
			f.body["/app/hook/config"] = `{"url":"https://tollgate.example.com/webhooks/acme","content_type":"json","secret":null}`
		}, want: replace("webhook", wantFail("webhook", "no secret"))},
		{name: "empty secret", fake: func(f *fakeApp) {
			f.body["/app/hook/config"] = `{"url":"https://tollgate.example.com/webhooks/acme","content_type":"json","secret":""}`
		}, want: replace("webhook", wantFail("webhook", "no secret"))},
		{name: "insecure_ssl", fake: func(f *fakeApp) {
			f.body["/app/hook/config"] = `{"url":"https://tollgate.example.com/webhooks/acme","content_type":"json","secret":"********","insecure_ssl":"1"}`
		}, want: replace("webhook", wantWarn("webhook", "does not verify tollgate's TLS certificate"))},
		{name: "insecure_ssl as a number", fake: func(f *fakeApp) {
			f.body["/app/hook/config"] = `{"url":"https://tollgate.example.com/webhooks/acme","content_type":"json","secret":"********","insecure_ssl":1}`
		}, want: replace("webhook", wantWarn("webhook", "insecure_ssl 1"))},
		{name: "every webhook problem", fake: func(f *fakeApp) {
			f.body["/app/hook/config"] = `{"url":"https://elsewhere.example/x?token=s3cr3t","content_type":"form","insecure_ssl":"1"}`
		}, want: replace("webhook", wantFail("webhook", "https://elsewhere.example/x,"), wantFail("webhook", "content type is form"),
			wantFail("webhook", "no secret"), wantWarn("webhook", "insecure_ssl 1")),
		},
		{name: "webhook config failing, later checks run", fake: func(f *fakeApp) { f.status["/app/hook/config"] = 500 },
			want: replace("webhook", wantFail("webhook", "cannot read the App's webhook configuration", "HTTP 500"))},
	}
}

// laterCases are those of the installations and deliveries.
func laterCases() []preflightCase {
	return []preflightCase{
		{name: "no installations", fake: func(f *fakeApp) { f.body["/app/installations"] = `[]` },
			want: replace("installations", wantWarn("installations", "installed on no account", "GitHub sends it nothing"))},
		{name: "many installations", fake: func(f *fakeApp) {
			var l []string
			for i := range 12 {
				l = append(l, fmt.Sprintf(`{"id":%d,"account":{"login":"org%d"},"permissions":{"deployments":"write"}}`, i, i))
			}
			f.body["/app/installations"] = "[" + strings.Join(l, ",") + "]"
		}, want: replace("installations", wantOK("installations", "installed on 12 accounts: org0, org1, org2, org3, org4, org5, org6, org7, org8, org9, …")),
		},
		{name: "installation suspended, one not accepting deployments write", fake: func(f *fakeApp) {
			f.body["/app/installations"] = `[{"id":1,"account":{"login":"a"},"permissions":{"deployments":"write"},"suspended_at":"2026-12-01T00:00:00Z"},
			{"id":2,"account":{"slug":"acme-enterprise"},"permissions":{"deployments":"read"}}]`
		}, want: replace("installations", wantWarn("installations", "on a is suspended"), wantWarn("installations", "on acme-enterprise has not accepted")),
		},
		{name: "installations forbidden, deliveries still read", fake: func(f *fakeApp) { f.status["/app/installations"] = 403 },
			want: replace("installations", wantFail("installations", "cannot list the App's installations", "HTTP 403"))},
		{name: "failed deliveries", fake: func(f *fakeApp) {
			b, _ := json.Marshal([]hookDelivery{
				{ID: 5, GUID: "g-5", DeliveredAt: preflightT0.Add(5 * time.Minute), Status: "OK", StatusCode: 202},
				{ID: 4, GUID: "g-3", DeliveredAt: preflightT0.Add(4 * time.Minute), Redelivery: true, Status: "OK", StatusCode: 202},
				{ID: 3, GUID: "g-3", DeliveredAt: preflightT0.Add(3 * time.Minute), Status: "Invalid HTTP Response: 503", StatusCode: 503},
				{ID: 2, GUID: "g-2", DeliveredAt: preflightT0.Add(2 * time.Minute), Status: "timed out"},
			})
			f.body["/app/hook/deliveries"] = string(b)
		}, want: replace("deliveries", wantWarn("deliveries", "2 of the last 4 deliveries failed, the latest at 2026-12-06T12:03:00Z with status 503",
			"later attempts delivered 1 of them", "redeliver the 2 that got no answer", "every api.redeliver_interval")),
		},
		{name: "deliveries refused for their signature", fake: func(f *fakeApp) {
			f.body["/app/hook/deliveries"] = `[{"id":1,"guid":"g","delivered_at":"2026-12-06T12:00:00Z","status":"timed out","status_code":0},
			{"id":2,"guid":"h","delivered_at":"2026-12-06T12:01:00Z","status":"Invalid HTTP Response: 401","status_code":401}]`
		}, want: replace("deliveries", wantWarn("deliveries", "2 of the last 2 deliveries failed, the latest at 2026-12-06T12:01:00Z with status 401",
			"webhook_secret", "redeliver the 1 that")),
		},
		{name: "a delivery that got no answer", fake: func(f *fakeApp) {
			f.body["/app/hook/deliveries"] = `[{"id":1,"guid":"g","delivered_at":"2026-12-06T12:00:00Z","status":"timed out","status_code":0}]`
		}, want: replace("deliveries", wantWarn("deliveries", "1 of the last 1 deliveries failed", "with status no answer"))},
		{name: "no deliveries yet", fake: func(f *fakeApp) { f.body["/app/hook/deliveries"] = `[]` },
			want: replace("deliveries", wantOK("deliveries", "no deliveries yet"))},
		{name: "deliveries failing", fake: func(f *fakeApp) { f.status["/app/hook/deliveries"] = 502 },
			want: replace("deliveries", wantWarn("deliveries", "cannot read the App's latest deliveries", "HTTP 502"))},
	}
}

// TestPreflight: the findings of an App as GitHub shows it, in order;
// every call a GET with the App's JWT; no detail holds a secret or a
// URL's query.
func TestPreflight(t *testing.T) {
	tests := append(append(appCases(t), webhookCases()...), laterCases()...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := healthyApp(t)
			if tt.fake != nil {
				tt.fake(f)
			}
			srv := httptest.NewServer(f)
			defer srv.Close()
			w := preflightWebhook(t, srv.URL, tt.key, !tt.noGate)
			defer w.CloseIdleConnections()
			events := tt.events
			if events == nil {
				events = []string{"deployment_status", "workflow_run", "deployment_protection_rule"}
			}
			got := w.Preflight(context.Background(), connectors.PreflightInput{Name: "acme", Events: events})
			checkFindings(t, got, tt.want)
			f.mu.Lock()
			defer f.mu.Unlock()
			for _, g := range got {
				for _, secret := range append([]string{"s3cr3t", "token=", "?t=x", "pw@", "PRIVATE KEY"}, f.jwts...) {
					if strings.Contains(g.Detail, secret) {
						t.Errorf("%s: detail %q holds %q", g.Check, g.Detail, secret)
					}
				}
			}
		})
	}
}

// checkFindings compares findings with those wanted, in order.
func checkFindings(t *testing.T, got []connectors.Finding, want []want) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d findings, want %d:", len(got), len(want))
	}
	for i, g := range got {
		if i >= len(want) {
			t.Errorf("  unwanted %s %s: %s", g.Check, g.Status, g.Detail)
			continue
		}
		w := want[i]
		if g.Check != w.check || g.Status != w.status {
			t.Errorf("  finding %d: %s %s (%s), want %s %s", i, g.Check, g.Status, g.Detail, w.check, w.status)
			continue
		}
		for _, s := range w.says {
			if !strings.Contains(g.Detail, s) {
				t.Errorf("  %s %s: %q does not say %q", g.Check, g.Status, g.Detail, s)
			}
		}
	}
	for _, w := range want[min(len(got), len(want)):] {
		t.Errorf("  missing %s %s", w.check, w.status)
	}
}

// preflightWebhook is an App connector named acme of App 42 (with key,
// or testKey) on url, with a CI gate when gate is set.
func preflightWebhook(t *testing.T, url string, key []byte, gate bool) *Webhook {
	t.Helper()
	w := deliveriesWebhook(t, url)
	if key != nil {
		app, err := newAppClient(w.app.system, url, "42", key, w.app.http)
		if err != nil {
			t.Fatal(err)
		}
		w.app = app
	}
	if gate {
		w.gate = testGate()
	}
	return w
}

// TestPreflightNoApp: a connector without an App has nothing to check.
func TestPreflightNoApp(t *testing.T) {
	w, err := New(connectors.Config{Name: "acme", Type: Type, WebhookSecret: "0123456789abcdef", CIGate: testGate()})
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Preflight(context.Background(), connectors.PreflightInput{Name: "acme", Events: []string{"deployment"}}); got != nil {
		t.Errorf("findings without an App: %+v", got)
	}
}

// TestPreflightContext: every call carries the caller's context: a
// cancelled one stops the preflight at its first call.
func TestPreflightContext(t *testing.T) {
	f := healthyApp(t)
	srv := httptest.NewServer(f)
	defer srv.Close()
	w := preflightWebhook(t, srv.URL, nil, true)
	defer w.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got := w.Preflight(ctx, connectors.PreflightInput{Name: "acme"})
	if len(got) != 1 || got[0].Check != "app" || got[0].Status != connectors.StatusFail || !strings.Contains(got[0].Detail, "canceled") {
		t.Errorf("cancelled preflight: %+v", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.paths) != 0 {
		t.Errorf("a cancelled preflight called %v", f.paths)
	}
}
