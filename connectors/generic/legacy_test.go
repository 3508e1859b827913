package generic

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
	kind, hasKind, err := hooktest.LegacyString(obj, FieldKind, FieldKind)
	if err != nil {
		return connectors.Inbound{}, err
	}
	if hasKind {
		if kind, err = hook.Label(FieldKind, kind, hook.MaxTypeLen); err != nil {
			return connectors.Inbound{}, err
		}
	}
	header := h.Get(HeaderEvent)
	if header != "" {
		if header, err = hook.Label(HeaderEvent, header, hook.MaxTypeLen); err != nil {
			return connectors.Inbound{}, err
		}
	}
	var typ string
	switch {
	case header != "" && hasKind && header != kind:
		return connectors.Inbound{}, core.Invalid(HeaderEvent, "%q disagrees with the body's kind %q", header, kind)
	case header != "":
		typ = header
	case hasKind:
		typ = kind
	default:
		typ = TypeCanonical
	}
	return connectors.Inbound{Type: typ, Headers: hook.Keep(h, keptHeaders...)}, nil
}

// TestClassifyLikeLegacy pins the corners where reading in place could
// part from decoding, against the legacy oracle.
func TestClassifyLikeLegacy(t *testing.T) {
	tests := []struct {
		name, header, body, want string // want: the type, or a part of the error
		ok                       bool
	}{
		{"duplicate kind, last wins", "", `{"kind":"a","kind":"deployment"}`, "deployment", true},
		{"duplicate kind, last null", "", `{"kind":"a","kind":null}`, TypeCanonical, true},
		{"escaped key", "", `{"\u006bind":"deployment"}`, "deployment", true},
		{"escaped value agrees with header", "deployment", `{"kind":"d\u0065ployment"}`, "deployment", true},
		{"unicode disagreement", "deployment", `{"kind":"d\u00e9ployment"}`, `disagrees with the body's kind "déployment"`, false},
		{"kind object", "", `{"kind":{}}`, "kind: must be a string, got an object", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := hooktest.Header(HeaderEvent, tc.header)
			in, err := Classify(h, []byte(tc.body))
			old, oldErr := legacyClassify(h, []byte(tc.body))
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
		f.Add("", hooktest.Read(f, name))
	}
	for _, b := range hooktest.FuzzBodies {
		f.Add("", []byte(b))
		f.Add("x", []byte(`{"kind":`+b+`}`))
	}
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		h := hooktest.Header(HeaderEvent, event)
		in, err := Classify(h, body)
		old, oldErr := legacyClassify(h, body)
		hooktest.SameResult(t, in, err, old, oldErr)
	})
}
