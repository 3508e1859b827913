package apitest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate-dev/tollgate/api"
	"github.com/tollgate-dev/tollgate/internal/apitest"
)

type canned struct {
	status int
	body   string
}

// TestValidatorCatchesWhatIsOutOfContract sends exchanges through the
// transport against a fake server answering canned bodies, and checks
// which ones are reported.
func TestValidatorCatchesWhatIsOutOfContract(t *testing.T) {
	doc, err := api.LoadOpenAPI(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	v, err := apitest.New(doc)
	if err != nil {
		t.Fatal(err)
	}
	const errJSON = `{"error":{"code":"not_found","message":"Not Found","request_id":"x"}}`
	const token = `{"id":"1","token":"tg_x","name":"n","role":"ci","created_at":"2026-12-02T16:07:47Z"}`
	tests := []struct {
		name               string
		method, path, auth string
		body               string
		answer             canned
		wantReport         string // "" = in contract
	}{
		{"documented answer", "GET", "/healthz", "", "", canned{200, `{"status":"ok","version":"1"}`}, ""},
		{"undocumented field", "GET", "/healthz", "", "", canned{200, `{"status":"ok","version":"1","uptime":3}`}, "uptime"},
		{"missing required field", "GET", "/healthz", "", "", canned{200, `{"status":"ok"}`}, "version"},
		{"undocumented status", "GET", "/healthz", "", "", canned{418, `{}`}, "418"},
		{"unknown route answered 404", "GET", "/api/v1/nothing", "", "", canned{404, errJSON}, ""},
		{"unknown route answered 200", "GET", "/api/v1/nothing", "", "", canned{200, `{}`}, "no documented operation"},
		{"error not in the error shape", "GET", "/api/v1/nothing", "", "", canned{404, `{"msg":"no"}`}, "Error schema"},
		{"good request", "POST", "/api/v1/tokens", "Bearer t", `{"name":"n","role":"ci"}`, canned{201, token}, ""},
		{"bad request refused", "POST", "/api/v1/tokens", "Bearer t", `{"name":"n","role":"root"}`, canned{400, errJSON}, ""},
		{"bad request accepted", "POST", "/api/v1/tokens", "Bearer t", `{"name":"n","role":"ci","ttl":3}`, canned{201, token}, "rejects this request"},
		{"no credentials accepted", "GET", "/api/v1/tokens", "", "", canned{200, `{"items":[]}`}, "rejects this request"},
		{"no credentials refused", "GET", "/api/v1/tokens", "", "", canned{401, errJSON}, ""},
		{"wrong enum value", "GET", "/api/v1/tokens", "Bearer t", "", canned{200, `{"items":[{"id":"1","name":"n","role":"root","created_at":"2026-12-02T16:07:47Z"}]}`}, "role"},
		{"unsigned webhook accepted", "POST", "/webhooks/gh", "", `{}`, canned{202, `{"event_id":"1","duplicate":false}`}, "rejects this request"},
		{"web UI page (not the API)", "GET", "/ui/", "", "", canned{200, `<!doctype html>`}, ""},
		{"web UI redirect", "GET", "/ui", "", "", canned{301, ``}, ""},
		{"a path only starting like the UI", "GET", "/uix", "", "", canned{200, `{}`}, "no documented operation"},
		{"body past the validated size", "POST", "/api/v1/tokens", "Bearer t", strings.Repeat(" ", 3<<20), canned{413, errJSON}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.answer.status)
				_, _ = io.WriteString(w, tt.answer.body)
			}))
			defer srv.Close()
			var (
				mu      sync.Mutex
				reports []string
			)
			client := &http.Client{Transport: v.Transport(nil, func(f string, a ...any) {
				mu.Lock()
				defer mu.Unlock()
				reports = append(reports, fmt.Sprintf(f, a...))
			})}
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, body)
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != tt.answer.body {
				t.Errorf("the caller got %q, want the server's body %q", got, tt.answer.body)
			}
			switch {
			case tt.wantReport == "" && len(reports) > 0:
				t.Errorf("reported an exchange in contract: %v", reports)
			case tt.wantReport != "" && (len(reports) != 1 || !strings.Contains(reports[0], tt.wantReport)):
				t.Errorf("reports %q, want one mentioning %q", reports, tt.wantReport)
			}
		})
	}
}
