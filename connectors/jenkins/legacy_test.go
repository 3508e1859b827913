package jenkins

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
	build, ok, err := hooktest.LegacyMember(obj, "build", "build")
	if err != nil {
		return connectors.Inbound{}, err
	}
	if !ok {
		return connectors.Inbound{}, core.Invalid("build", "missing: the body is not a Jenkins Notification plugin message")
	}
	phase, ok, err := hooktest.LegacyString(build, "phase", "build.phase")
	if err != nil {
		return connectors.Inbound{}, err
	}
	if !ok {
		return connectors.Inbound{}, core.Invalid("build.phase", "missing")
	}
	phase, err = hook.Label("build.phase", phase, hook.MaxTypeLen)
	if err != nil {
		return connectors.Inbound{}, err
	}
	return connectors.Inbound{Type: phase, Headers: hook.Keep(h, keptHeaders...)}, nil
}

// TestClassifyLikeLegacy pins the corners where reading in place could
// part from decoding, against the legacy oracle.
func TestClassifyLikeLegacy(t *testing.T) {
	tests := []struct {
		name, body, want string // want: the type, or a part of the error
		ok               bool
	}{
		{"duplicate build, last wins", `{"build":{"phase":"STARTED"},"build":{"phase":"COMPLETED"}}`, PhaseCompleted, true},
		{"duplicate phase, last wins", `{"build":{"phase":"STARTED","phase":"COMPLETED"}}`, PhaseCompleted, true},
		{"duplicate build, last null", `{"build":{"phase":"STARTED"},"build":null}`, "build: missing", false},
		{"escaped keys", `{"b\u0075ild":{"ph\u0061se":"QUEUED"}}`, PhaseQueued, true},
		{"key case matters", `{"Build":{"phase":"QUEUED"}}`, "build: missing", false},
		{"dotted key is not a path", `{"build.phase":"QUEUED"}`, "build: missing", false},
		{"escapes in phase", `{"build":{"phase":"ST\u0041RTED"}}`, PhaseStarted, true},
		{"build array", `{"build":[{"phase":"QUEUED"}]}`, "build: must be an object, got an array", false},
		{"phase object", `{"build":{"phase":{"a":1}}}`, "build.phase: must be a string, got an object", false},
		{"phase bool", `{"build":{"phase":false}}`, "build.phase: must be a string, got a boolean", false},
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
	f.Add(hooktest.Read(f, "notification-plugin.job_completed.json"))
	f.Add([]byte(newShape))
	for _, b := range hooktest.FuzzBodies {
		f.Add([]byte(b))
		f.Add([]byte(`{"build":` + b + `}`))
		f.Add([]byte(`{"build":{"phase":` + b + `}}`))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		h := hooktest.Header("Content-Type", "application/json")
		in, err := Classify(h, body)
		old, oldErr := legacyClassify(h, body)
		hooktest.SameResult(t, in, err, old, oldErr)
	})
}
