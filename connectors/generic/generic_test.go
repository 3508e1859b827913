package generic

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
)

func TestNewRequiresSecret(t *testing.T) {
	hooktest.RunNewSecretCases(t, Type, New)
}

func TestVerify(t *testing.T) {
	w := hooktest.New(t, Type, New)
	hooktest.RunVerify(t, w, hooktest.SignatureOrBasicCases(hooktest.Read(t, "deployment.succeeded.json")))
}

func TestSign(t *testing.T) {
	// A known-answer test, so the documented scheme cannot drift:
	// printf '{}' | openssl dgst -sha256 -hmac key
	const want = "sha256=a777724d943eb48dc69bca8a4a6d57a04db3f9ec7e1de4e581e860265bdf3032"
	if got := Sign([]byte("key"), []byte("{}")); got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}

func TestClassify(t *testing.T) {
	deploy := hooktest.Read(t, "deployment.succeeded.json")
	noKind := hooktest.Read(t, "deployment.no-kind.json")
	tests := []struct {
		name   string
		header string
		body   []byte
		want   string
		ok     bool
	}{
		{"kind in body", "", deploy, "deployment", true},
		{"header only", "deployment", noKind, "deployment", true},
		{"header and kind agree", "deployment", deploy, "deployment", true},
		{"header and kind disagree", "gate", deploy, `X-Tollgate-Event: "gate" disagrees with the body's kind "deployment"`, false},
		{"neither: a canonical record", "", noKind, TypeCanonical, true},
		{"kind not a string", "", []byte(`{"kind":["deployment"]}`), "kind: must be a string, got an array", false},
		{"kind blank", "", []byte(`{"kind":"  "}`), "kind: is empty", false},
		{"header with control chars", "deploy\nment", noKind, "X-Tollgate-Event: contains control characters", false},
		{"not json", "deployment", []byte(`kind=deployment`), "not valid JSON", false},
		{"json number", "deployment", []byte(`42`), "not a JSON object", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := hooktest.WithSecrets(hooktest.Header("User-Agent", "curl/8"))
			if tc.header != "" {
				h.Set(HeaderEvent, tc.header)
			}
			in, err := Classify(h, tc.body)
			hooktest.CheckClassify(t, in, err)
			if !tc.ok {
				hooktest.RequireInvalid(t, err, tc.want)
				return
			}
			// Only a type the header alone gives keys the delivery apart
			// from the same body of another type.
			typed := tc.header != "" && bytes.Equal(tc.body, noKind)
			if err != nil || in.Type != tc.want || (in.DeliveryID != "") != typed || in.Headers["User-Agent"] != "curl/8" {
				t.Fatalf("got %+v, %v", in, err)
			}
		})
	}
}

// TestClassifyTypedKey: the same body sent with two X-Tollgate-Event
// types (deploy.started, then deploy.succeeded) is two deliveries, each
// stable across its sender's retries; a body that names its kind keeps
// the inbox's body hash.
func TestClassifyTypedKey(t *testing.T) {
	body := hooktest.Read(t, "deployment.no-kind.json")
	key := func(typ string, b []byte) string {
		t.Helper()
		h := http.Header{}
		h.Set(HeaderEvent, typ)
		in, err := Classify(h, b)
		if err != nil {
			t.Fatal(err)
		}
		return in.DeliveryID
	}
	started, succeeded := key("deploy.started", body), key("deploy.succeeded", body)
	if started == "" || started == succeeded {
		t.Fatalf("keys %q and %q: want two different keys", started, succeeded)
	}
	if again := key("deploy.started", body); again != started {
		t.Fatalf("a retry's key %q, want %q", again, started)
	}
	if other := key("deploy.started", append([]byte(" "), body...)); other == started {
		t.Fatal("another body, the same key")
	}
	if k := key("deployment", hooktest.Read(t, "deployment.succeeded.json")); k != "" {
		t.Fatalf("a body with its kind: key %q, want none (the body hash)", k)
	}
}

func FuzzClassify(f *testing.F) {
	for _, name := range hooktest.Files(f, "*.json") {
		f.Add("", hooktest.Read(f, name))
		f.Add("deployment", hooktest.Read(f, name))
	}
	for _, b := range hooktest.FuzzSeeds(`{"kind":%s}`) {
		f.Add("", b)
		f.Add("x", b)
	}
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		in, err := Classify(hooktest.WithSecrets(http.Header{HeaderEvent: {event}}), body)
		hooktest.CheckClassify(t, in, err)
	})
}

// TestClassifyCorners pins the corners where reading a body in place could
// part from decoding it with encoding/json: duplicate keys (the last wins),
// escapes and unicode in keys and values, and members of other JSON types.
func TestClassifyCorners(t *testing.T) {
	hooktest.RunClassify(t, Classify, []hooktest.ClassifyCase{
		{Name: "duplicate kind, last wins", Body: `{"kind":"a","kind":"deployment"}`, Want: "deployment", OK: true},
		{Name: "duplicate kind, last null", Body: `{"kind":"a","kind":null}`, Want: TypeCanonical, OK: true},
		{Name: "escaped key", Body: `{"\u006bind":"deployment"}`, Want: "deployment", OK: true},
		{Name: "escaped value agrees with header", Header: hooktest.Header(HeaderEvent, "deployment"), Body: `{"kind":"d\u0065ployment"}`, Want: "deployment", OK: true},
		{Name: "unicode disagreement", Header: hooktest.Header(HeaderEvent, "deployment"), Body: `{"kind":"d\u00e9ployment"}`, Want: `disagrees with the body's kind "déployment"`},
		{Name: "kind object", Body: `{"kind":{}}`, Want: "kind: must be a string, got an object"},
	})
}
