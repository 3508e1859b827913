package jira

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
)

func TestNewRequiresSecret(t *testing.T) {
	hooktest.RunNewSecretCases(t, Type, New)
}

func TestVerify(t *testing.T) {
	w := hooktest.New(t, Type, New)
	body := hooktest.Read(t, "webhook.jira_issue_created.cloud.json")
	cases := hooktest.SignatureCases(HeaderSignature, body)
	q := func(v string) url.Values { return url.Values{QuerySecret: {v}} }
	cases = append(cases,
		// Jira Data Center cannot sign: the secret rides in the URL.
		hooktest.VerifyCase{Name: "dc query secret", Header: http.Header{}, Query: q(hooktest.Secret), Body: body},
		hooktest.VerifyCase{Name: "dc query secret wrong", Header: http.Header{}, Query: q("nope"), Body: body, WantErr: "?secret= does not match"},
		hooktest.VerifyCase{Name: "dc query secret empty", Header: http.Header{}, Query: q(""), Body: body, WantErr: "?secret= does not match"},
		hooktest.VerifyCase{Name: "bad signature does not fall back to query", Header: hooktest.Header(HeaderSignature, hook.Sign([]byte("x"), body)), Query: q(hooktest.Secret), Body: body, WantErr: "signature mismatch"},
		hooktest.VerifyCase{Name: "neither", Header: http.Header{}, Query: url.Values{"other": {"1"}}, Body: body, WantErr: "missing X-Hub-Signature or ?secret="},
		hooktest.VerifyCase{Name: "github header name is not jira's", Header: hooktest.Header("X-Hub-Signature-256", hook.Sign([]byte(hooktest.Secret), body)), Body: body, WantErr: "missing X-Hub-Signature"},
	)
	hooktest.RunVerify(t, w, cases)
}

func TestClassifyFixtures(t *testing.T) {
	tests := []struct {
		file, event string
	}{
		{"webhook.jira_issue_created.cloud.json", "jira:issue_created"},
		{"webhook.jira_issue_updated.assigned.cloud.json", "jira:issue_updated"},
		{"webhook.jira_issue_updated.priority.cloud.json", "jira:issue_updated"},
		{"webhook.jira_issue_updated.status-resolved.cloud.json", "jira:issue_updated"},
		{"webhook.jira_issue_updated.resolved.server.json", "jira:issue_updated"},
	}
	if n := len(hooktest.Files(t, "webhook.*.json")); n != len(tests) {
		t.Fatalf("%d webhook fixtures, %d cases: add the new fixture here", n, len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			h := hooktest.WithSecrets(hooktest.Header(
				HeaderDelivery, "d2a3c8b1-5a4e-4b6f-9f7e-3c1d2e0f9a8b",
				HeaderRetry, "1",
				"X-Atlassian-Webhook-Flow", "Primary",
				"User-Agent", "Atlassian Webhook HTTP Client",
			))
			in, err := Classify(h, hooktest.Read(t, tc.file))
			hooktest.CheckClassify(t, in, err)
			if err != nil || in.Type != tc.event || in.DeliveryID != "d2a3c8b1-5a4e-4b6f-9f7e-3c1d2e0f9a8b" {
				t.Fatalf("got %+v, %v", in, err)
			}
			if in.Headers["X-Atlassian-Webhook-Retry"] != "1" || in.Headers["X-Atlassian-Webhook-Flow"] != "Primary" {
				t.Fatalf("headers not kept: %v", in.Headers)
			}
		})
	}
	t.Run("data center sends no identifier", func(t *testing.T) {
		in, err := Classify(http.Header{}, hooktest.Read(t, "webhook.jira_issue_updated.resolved.server.json"))
		if err != nil || in.DeliveryID != "" || in.Type != "jira:issue_updated" {
			t.Fatalf("got %+v, %v", in, err)
		}
	})
}

func TestClassifyInvalid(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want string
	}{
		// REST API responses are issues, not webhook deliveries.
		{"rest issue", hooktest.Read(t, "rest_api3_get_issue.response.json"), "webhookEvent: missing"},
		{"rest changelog", hooktest.Read(t, "rest_api3_get_issue_changelog.response.json"), "webhookEvent: missing"},
		{"rest transitions", hooktest.Read(t, "rest_api3_get_issue_transitions.response.json"), "webhookEvent: missing"},
		{"webhookEvent number", []byte(`{"webhookEvent":1}`), "webhookEvent: must be a string"},
		{"webhookEvent null", []byte(`{"webhookEvent":null}`), "webhookEvent: missing"},
		{"webhookEvent blank", []byte(`{"webhookEvent":" "}`), "webhookEvent: is empty"},
		{"string body", []byte(`"jira:issue_created"`), "not a JSON object"},
		{"garbage", []byte(`{"webhookEvent":"jira:issue_created"`), "not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Classify(http.Header{}, tc.body)
			hooktest.RequireInvalid(t, err, tc.want)
		})
	}
}

func FuzzClassify(f *testing.F) {
	for _, name := range hooktest.Files(f, "*.json") {
		f.Add("id-1", hooktest.Read(f, name))
	}
	f.Add("", []byte(`{"webhookEvent":"jira:issue_created"}`))
	for _, b := range hooktest.FuzzSeeds(`{"webhookEvent":%s}`) {
		f.Add("", b)
	}
	f.Fuzz(func(t *testing.T, delivery string, body []byte) {
		h := hooktest.WithSecrets(http.Header{HeaderDelivery: {delivery}})
		in, err := Classify(h, body)
		hooktest.CheckClassify(t, in, err)
	})
}

// TestClassifyCorners pins the corners where reading a body in place could
// part from decoding it with encoding/json: duplicate keys (the last wins),
// escapes and unicode in keys and values, and members of other JSON types.
func TestClassifyCorners(t *testing.T) {
	hooktest.RunClassify(t, Classify, []hooktest.ClassifyCase{
		{Name: "duplicate event, last wins", Body: `{"webhookEvent":"jira:issue_created","webhookEvent":"jira:issue_updated"}`, Want: "jira:issue_updated", OK: true},
		{Name: "duplicate event, last null", Body: `{"webhookEvent":"jira:issue_created","webhookEvent":null}`, Want: "webhookEvent: missing"},
		{Name: "escaped key", Body: `{"webhook\u0045vent":"jira:issue_created"}`, Want: "jira:issue_created", OK: true},
		{Name: "key case matters", Body: `{"webhookevent":"jira:issue_created"}`, Want: "webhookEvent: missing"},
		{Name: "unicode value", Body: `{"webhookEvent":"jira:\u00e9v\u00e9nement"}`, Want: "jira:événement", OK: true},
		{Name: "number event", Body: `{"webhookEvent":1}`, Want: "webhookEvent: must be a string, got a number"},
	})
}
