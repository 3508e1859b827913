package jira

import (
	"net/http"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
	"github.com/tollgate-dev/tollgate/core"
)

// legacyClassify is Classify as it was before bodies were read in place
// with gjson: the oracle of FuzzClassifyDifferential; do not change it.
func legacyClassify(h http.Header, body []byte) (connectors.Inbound, error) {
	obj, err := hook.Object(body)
	if err != nil {
		return connectors.Inbound{}, err
	}
	event, ok, err := hooktest.LegacyString(obj, "webhookEvent", "webhookEvent")
	if err != nil {
		return connectors.Inbound{}, err
	}
	if !ok {
		return connectors.Inbound{}, core.Invalid("webhookEvent", "missing: the body is not a Jira webhook delivery")
	}
	typ, err := hook.Label("webhookEvent", event, hook.MaxTypeLen)
	if err != nil {
		return connectors.Inbound{}, err
	}
	delivery, err := hook.OptionalLabel(HeaderDelivery, h.Get(HeaderDelivery), hook.MaxDeliveryLen)
	if err != nil {
		return connectors.Inbound{}, err
	}
	return connectors.Inbound{Type: typ, DeliveryID: delivery, Headers: hook.Keep(h, keptHeaders...)}, nil
}

// TestClassifyLikeLegacy pins the corners where reading in place could
// part from decoding, against the legacy oracle.
func TestClassifyLikeLegacy(t *testing.T) {
	tests := []struct {
		name, body, want string // want: the type, or a part of the error
		ok               bool
	}{
		{"duplicate event, last wins", `{"webhookEvent":"jira:issue_created","webhookEvent":"jira:issue_updated"}`, "jira:issue_updated", true},
		{"duplicate event, last null", `{"webhookEvent":"jira:issue_created","webhookEvent":null}`, "webhookEvent: missing", false},
		{"escaped key", `{"webhook\u0045vent":"jira:issue_created"}`, "jira:issue_created", true},
		{"key case matters", `{"webhookevent":"jira:issue_created"}`, "webhookEvent: missing", false},
		{"unicode value", `{"webhookEvent":"jira:\u00e9v\u00e9nement"}`, "jira:événement", true},
		{"number event", `{"webhookEvent":1}`, "webhookEvent: must be a string, got a number", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := Classify(http.Header{}, []byte(tc.body))
			old, oldErr := legacyClassify(http.Header{}, []byte(tc.body))
			hooktest.SameResult(t, in, err, old, oldErr)
			if !tc.ok {
				hooktest.RequireInvalid(t, err, tc.want)
				return
			}
			if err != nil || in.Type != tc.want {
				t.Fatalf("got %+v, %v; want type %q", in, err, tc.want)
			}
		})
	}
}

// FuzzClassifyDifferential checks that Classify gives exactly what the
// legacy encoding/json implementation gave.
func FuzzClassifyDifferential(f *testing.F) {
	for _, name := range hooktest.Files(f, "*.json*") {
		f.Add("d-1", hooktest.Read(f, name))
	}
	for _, b := range hooktest.FuzzBodies {
		f.Add("", []byte(b))
		f.Add("", []byte(`{"webhookEvent":`+b+`}`))
	}
	f.Fuzz(func(t *testing.T, delivery string, body []byte) {
		h := hooktest.Header(HeaderDelivery, delivery)
		in, err := Classify(h, body)
		old, oldErr := legacyClassify(h, body)
		hooktest.SameResult(t, in, err, old, oldErr)
	})
}
