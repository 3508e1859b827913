package github

import (
	"net/http"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
	"github.com/tollgate-dev/tollgate/core"
)

// legacyClassify is Classify as it was before bodies were validated with
// gjson: the oracle of FuzzClassifyDifferential; do not change it.
func legacyClassify(h http.Header, body []byte) (connectors.Inbound, error) {
	event := h.Get(HeaderEvent)
	if event == "" {
		return connectors.Inbound{}, core.Invalid(HeaderEvent, "missing header: GitHub names the event in it")
	}
	typ, err := hook.Label(HeaderEvent, event, hook.MaxTypeLen)
	if err != nil {
		return connectors.Inbound{}, err
	}
	delivery, err := hook.OptionalLabel(HeaderDelivery, h.Get(HeaderDelivery), hook.MaxDeliveryLen)
	if err != nil {
		return connectors.Inbound{}, err
	}
	if err := hooktest.LegacyValidObject(body); err != nil {
		return connectors.Inbound{}, hook.NotJSONHint(h, err)
	}
	return connectors.Inbound{Type: typ, DeliveryID: delivery, Headers: hook.Keep(h, keptHeaders...)}, nil
}

// FuzzClassifyDifferential checks that Classify gives exactly what the
// legacy encoding/json implementation gave.
func FuzzClassifyDifferential(f *testing.F) {
	for _, name := range hooktest.Files(f, "*.json") {
		f.Add("", hooktest.Read(f, name))
	}
	for _, b := range hooktest.FuzzBodies {
		f.Add("", []byte(b))
		f.Add("application/x-www-form-urlencoded", []byte(b))
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		h := hooktest.Header(HeaderEvent, "push", HeaderDelivery, "d-1", "Content-Type", contentType)
		in, err := Classify(h, body)
		old, oldErr := legacyClassify(h, body)
		hooktest.SameResult(t, in, err, old, oldErr)
	})
}

// BenchmarkClassify compares classification alone (no HMAC) of the
// workflow_run payload, new against the legacy implementation.
func BenchmarkClassify(b *testing.B) {
	body := hooktest.Read(b, "workflow_run.completed.json")
	h := http.Header{}
	h.Set(HeaderEvent, "workflow_run")
	for _, bc := range []struct {
		name     string
		classify func(http.Header, []byte) (connectors.Inbound, error)
	}{{"gjson", Classify}, {"legacy", legacyClassify}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.classify(h, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
