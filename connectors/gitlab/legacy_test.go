package gitlab

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
	var typ string
	if event := h.Get(HeaderEvent); event != "" {
		if typ, err = hook.Label(HeaderEvent, event, hook.MaxTypeLen); err != nil {
			return connectors.Inbound{}, err
		}
	} else {
		kind, ok, err := hooktest.LegacyString(obj, "object_kind", "object_kind")
		if err != nil {
			return connectors.Inbound{}, err
		}
		if !ok {
			return connectors.Inbound{}, core.Invalid(HeaderEvent, "missing header, and the body has no object_kind")
		}
		if typ, err = hook.Label("object_kind", kind, hook.MaxTypeLen); err != nil {
			return connectors.Inbound{}, err
		}
	}
	var delivery string
	for _, name := range []string{HeaderIdempotencyKey, HeaderEventUUID} {
		if delivery, err = hook.OptionalLabel(name, h.Get(name), hook.MaxDeliveryLen); err != nil {
			return connectors.Inbound{}, err
		}
		if delivery != "" {
			break
		}
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
		{"duplicate kind, last wins", `{"object_kind":"push","object_kind":"pipeline"}`, "pipeline", true},
		{"duplicate kind, last null", `{"object_kind":"push","object_kind":null}`, "missing header, and the body has no object_kind", false},
		{"escaped key", `{"object\u005fkind":"deployment"}`, "deployment", true},
		{"escaped value", `{"object_kind":"dep\u006coyment"}`, "deployment", true},
		{"array kind", `{"object_kind":["push"]}`, "object_kind: must be a string, got an array", false},
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
		f.Add("", "", hooktest.Read(f, name))
		f.Add("Pipeline Hook", "k-1", hooktest.Read(f, name))
	}
	for _, b := range hooktest.FuzzBodies {
		f.Add("", "", []byte(b))
		f.Add("", "", []byte(`{"object_kind":`+b+`}`))
	}
	f.Fuzz(func(t *testing.T, event, key string, body []byte) {
		h := hooktest.Header(HeaderEvent, event, HeaderIdempotencyKey, key)
		in, err := Classify(h, body)
		old, oldErr := legacyClassify(h, body)
		hooktest.SameResult(t, in, err, old, oldErr)
	})
}
