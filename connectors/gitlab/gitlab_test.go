package gitlab

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
)

func TestNewRequiresSecret(t *testing.T) {
	hooktest.RunNewSecretCases(t, Type, New)
}

func TestVerify(t *testing.T) {
	w := hooktest.New(t, Type, New)
	body := hooktest.Read(t, "pipeline_hook.json")
	hooktest.RunVerify(t, w, []hooktest.VerifyCase{
		{Name: "good token", Header: hooktest.Header(HeaderToken, hooktest.Secret), Body: body},
		{Name: "wrong token", Header: hooktest.Header(HeaderToken, "nope"), Body: body, WantErr: "does not match"},
		{Name: "token prefix", Header: hooktest.Header(HeaderToken, hooktest.Secret[:5]), Body: body, WantErr: "does not match"},
		{Name: "token with suffix", Header: hooktest.Header(HeaderToken, hooktest.Secret+"x"), Body: body, WantErr: "does not match"},
		{Name: "missing token", Header: hooktest.Header(HeaderEvent, "Pipeline Hook"), Body: body, WantErr: "missing X-Gitlab-Token"},
		{Name: "github signature is not accepted", Header: hooktest.Header("X-Hub-Signature-256", "sha256=00"), Body: body, WantErr: "missing X-Gitlab-Token"},
		{Name: "basic auth is not accepted", Header: hooktest.Header("Authorization", hooktest.Basic("u", hooktest.Secret)), Body: body, WantErr: "missing X-Gitlab-Token"},
	})
}

func TestClassifyFixtures(t *testing.T) {
	tests := []struct {
		file, header, objectKind string
	}{
		{"pipeline_hook.json", "Pipeline Hook", "pipeline"},
		{"deployment_hook.json", "Deployment Hook", "deployment"},
		{"job_hook.go-gitlab.json", "Job Hook", "build"},
	}
	for _, tc := range tests {
		body := hooktest.Read(t, tc.file)
		t.Run(tc.file+"/header", func(t *testing.T) {
			h := hooktest.WithSecrets(hooktest.Header(
				HeaderEvent, tc.header,
				HeaderEventUUID, "13792a34-cac6-4fda-95a8-c58e00a3954e",
				"X-Gitlab-Instance", "https://gitlab.example.com",
				"User-Agent", "GitLab/17.5.0",
			))
			in, err := Classify(h, body)
			hooktest.CheckClassify(t, in, err)
			if err != nil || in.Type != tc.header || in.DeliveryID != "13792a34-cac6-4fda-95a8-c58e00a3954e" {
				t.Fatalf("got %+v, %v", in, err)
			}
			if in.Headers["X-Gitlab-Event-Uuid"] == "" || in.Headers["X-Gitlab-Instance"] == "" {
				t.Fatalf("headers not kept: %v", in.Headers)
			}
		})
		t.Run(tc.file+"/object_kind", func(t *testing.T) {
			in, err := Classify(http.Header{}, body)
			if err != nil || in.Type != tc.objectKind || in.DeliveryID != "" {
				t.Fatalf("got %+v, %v", in, err)
			}
		})
		t.Run(tc.file+"/idempotency-key", func(t *testing.T) {
			h := hooktest.Header(HeaderEvent, tc.header, HeaderEventUUID, "event-uuid", HeaderIdempotencyKey, "908a6d9e-45fd-46c8-97e6-c4f350f219dd")
			in, err := Classify(h, body)
			if err != nil || in.DeliveryID != "908a6d9e-45fd-46c8-97e6-c4f350f219dd" {
				t.Fatalf("got %+v, %v", in, err)
			}
		})
	}
}

func TestClassifyInvalid(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		body []byte
		want string
	}{
		// GitLab's own published Job Hook example has // comments and a
		// trailing comma: it must be refused, not half-read.
		{"vendor doc example is not JSON", hooktest.Header(HeaderEvent, "Job Hook"), hooktest.Read(t, "job_hook.doc-verbatim.jsonc"), "not valid JSON"},
		{"no header, no object_kind", http.Header{}, []byte(`{"ref":"main"}`), "object_kind"},
		{"object_kind not a string", http.Header{}, []byte(`{"object_kind":7}`), "object_kind: must be a string"},
		{"object_kind empty", http.Header{}, []byte(`{"object_kind":""}`), "object_kind: is empty"},
		{"array body", hooktest.Header(HeaderEvent, "Job Hook"), []byte(`[]`), "not a JSON object"},
		{"null body", hooktest.Header(HeaderEvent, "Job Hook"), []byte(`null`), "not a JSON object"},
		{"long uuid", hooktest.Header(HeaderEvent, "Job Hook", HeaderEventUUID, strings.Repeat("x", 300)), []byte(`{}`), HeaderEventUUID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Classify(tc.h, tc.body)
			hooktest.RequireInvalid(t, err, tc.want)
		})
	}
}

func FuzzClassify(f *testing.F) {
	for _, name := range append(hooktest.Files(f, "*.json"), hooktest.Files(f, "*.jsonc")...) {
		f.Add("Job Hook", "u-1", hooktest.Read(f, name))
		f.Add("", "", hooktest.Read(f, name))
	}
	for _, b := range hooktest.FuzzSeeds(`{"object_kind":%s}`) {
		f.Add("", "", b)
	}
	f.Fuzz(func(t *testing.T, event, uuid string, body []byte) {
		h := hooktest.WithSecrets(http.Header{HeaderEvent: {event}, HeaderEventUUID: {uuid}})
		in, err := Classify(h, body)
		hooktest.CheckClassify(t, in, err)
	})
}

// TestClassifyCorners pins the corners where reading a body in place could
// part from decoding it with encoding/json: duplicate keys (the last wins),
// escapes and unicode in keys and values, and members of other JSON types.
func TestClassifyCorners(t *testing.T) {
	hooktest.RunClassify(t, Classify, []hooktest.ClassifyCase{
		{Name: "duplicate kind, last wins", Body: `{"object_kind":"push","object_kind":"pipeline"}`, Want: "pipeline", OK: true},
		{Name: "duplicate kind, last null", Body: `{"object_kind":"push","object_kind":null}`, Want: "missing header, and the body has no object_kind"},
		{Name: "escaped key", Body: `{"object\u005fkind":"deployment"}`, Want: "deployment", OK: true},
		{Name: "escaped value", Body: `{"object_kind":"dep\u006coyment"}`, Want: "deployment", OK: true},
		{Name: "array kind", Body: `{"object_kind":["push"]}`, Want: "object_kind: must be a string, got an array"},
	})
}
