package github

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
	"github.com/tollgate-dev/tollgate/core"
)

func TestNewRequiresSecret(t *testing.T) {
	hooktest.RunNewSecretCases(t, Type, New)
}

func TestVerify(t *testing.T) {
	w := hooktest.New(t, Type, New)
	body := hooktest.Read(t, "workflow_run.completed.json")
	cases := hooktest.SignatureCases(HeaderSignature, body)
	cases = append(cases,
		hooktest.VerifyCase{Name: "legacy sha1 header only", Header: hooktest.Header("X-Hub-Signature", "sha1=0123"), Body: body, WantErr: "missing X-Hub-Signature-256"},
		hooktest.VerifyCase{Name: "basic auth is not a github scheme", Header: hooktest.Header("Authorization", hooktest.Basic("u", hooktest.Secret)), Body: body, WantErr: "missing X-Hub-Signature-256"},
	)
	hooktest.RunVerify(t, w, cases)
}

// TestVerifyProtectionRuleSecret: with the App's own secret set, a
// deployment_protection_rule request signed with the connector's
// webhook_secret — which repository webhooks carry — is refused, whatever
// the case of the event header; other events verify with either secret.
func TestVerifyProtectionRuleSecret(t *testing.T) {
	const appSecret, appPrevious = "the-github-app-own-secret", "the-github-app-old-secret"
	w, err := New(connectors.Config{Name: "github", Type: Type, WebhookSecret: hooktest.Secret, CIGate: &connectors.CIGate{WebhookSecret: appSecret, WebhookSecretPrevious: appPrevious}})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"action":"requested"}`)
	sign := func(secret, event string) http.Header {
		return hooktest.Header(HeaderEvent, event, HeaderSignature, hook.Sign([]byte(secret), body))
	}
	for _, tc := range []struct {
		name, secret, event, wantErr string
	}{
		{"a protection rule signed by the App", appSecret, EventProtectionRule, ""},
		{"a protection rule signed with the App's previous secret (a rotation)", appPrevious, EventProtectionRule, ""},
		{"a protection rule signed with a repository webhook's secret", hooktest.Secret, EventProtectionRule, "must be signed with the GitHub App's secret"},
		{"the same, the header in capitals", hooktest.Secret, " Deployment_Protection_Rule", "must be signed with the GitHub App's secret"},
		{"a workflow run from a repository webhook", hooktest.Secret, "workflow_run", ""},
		{"a workflow run from the App", appSecret, "workflow_run", ""},
		{"a workflow run signed with neither", "some-other-secret-value", "workflow_run", "signature mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := w.Verify(sign(tc.secret, tc.event), nil, body)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Verify = %v, want %q", err, tc.wantErr)
			}
			if err != nil && !core.IsKind(err, core.KindUnauthorized) {
				t.Fatalf("Verify = %v, want an authentication failure", err)
			}
		})
	}
}

func TestClassifyFixtures(t *testing.T) {
	files := hooktest.Files(t, "*.json")
	if len(files) < 12 {
		t.Fatalf("expected the 12 GitHub fixtures, found %d", len(files))
	}
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			// The fixture name starts with the X-GitHub-Event value GitHub
			// sends with that payload (shared/fixtures/SOURCES.md).
			event, _, _ := strings.Cut(name, ".")
			h := hooktest.WithSecrets(hooktest.Header(
				HeaderEvent, event,
				HeaderDelivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958",
				"User-Agent", "GitHub-Hookshot/044aadd",
				"X-GitHub-Hook-ID", "292430182",
			))
			in, err := Classify(h, hooktest.Read(t, name))
			hooktest.CheckClassify(t, in, err)
			if err != nil {
				t.Fatalf("Classify: %v", err)
			}
			if in.Type != event || in.DeliveryID != "72d3162e-cc78-11e3-81ab-4c9367dc0958" {
				t.Fatalf("got type %q delivery %q", in.Type, in.DeliveryID)
			}
			for _, k := range []string{"X-Github-Event", "X-Github-Delivery", "User-Agent", "X-Github-Hook-Id"} {
				if in.Headers[k] == "" {
					t.Errorf("header %s not kept: %v", k, in.Headers)
				}
			}
		})
	}
}

func TestClassifyInvalid(t *testing.T) {
	good := hooktest.Read(t, "push.json")
	tests := []struct {
		name string
		h    http.Header
		body []byte
		want string
	}{
		{"missing event header", hooktest.Header(HeaderDelivery, "d"), good, "X-GitHub-Event"},
		{"blank event header", hooktest.Header(HeaderEvent, "  "), good, "X-GitHub-Event: is empty"},
		{"control chars in event", hooktest.Header(HeaderEvent, "push\x00"), good, "control characters"},
		{"long event", hooktest.Header(HeaderEvent, strings.Repeat("a", 200)), good, "longer than"},
		{"long delivery", hooktest.Header(HeaderEvent, "push", HeaderDelivery, strings.Repeat("a", 300)), good, "X-GitHub-Delivery"},
		{"empty body", hooktest.Header(HeaderEvent, "push"), nil, "body is empty"},
		{"array body", hooktest.Header(HeaderEvent, "push"), []byte(`[{"a":1}]`), "not a JSON object"},
		{"truncated body", hooktest.Header(HeaderEvent, "push"), good[:len(good)/2], "not valid JSON"},
		{"form encoded", hooktest.Header(HeaderEvent, "push", "Content-Type", "application/x-www-form-urlencoded"), []byte("payload=%7B%7D"), "application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Classify(tc.h, tc.body)
			hooktest.RequireInvalid(t, err, tc.want)
		})
	}
}

func TestClassifyNoDelivery(t *testing.T) {
	in, err := Classify(hooktest.Header(HeaderEvent, "ping"), []byte(`{"zen":"Keep it logically awesome."}`))
	if err != nil || in.Type != "ping" || in.DeliveryID != "" {
		t.Fatalf("got %+v, %v", in, err)
	}
}

func FuzzClassify(f *testing.F) {
	for _, name := range hooktest.Files(f, "*.json") {
		event, _, _ := strings.Cut(name, ".")
		f.Add(event, "d-1", hooktest.Read(f, name))
	}
	f.Add("", "", []byte(`{}`))
	f.Add("push", "", []byte(`{"a":[1,2,{"b":null}]`))
	for _, b := range hooktest.FuzzSeeds() {
		f.Add("push", "d-1", b)
	}
	f.Fuzz(func(t *testing.T, event, delivery string, body []byte) {
		h := hooktest.WithSecrets(http.Header{HeaderEvent: {event}, HeaderDelivery: {delivery}})
		in, err := Classify(h, body)
		hooktest.CheckClassify(t, in, err)
	})
}
