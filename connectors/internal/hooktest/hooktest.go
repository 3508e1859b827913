// Package hooktest holds the test matrices every connector package runs:
// signature and Basic-auth cases for Verify, the invariants of Classify
// (also checked by the fuzz tests), and fixture loading.
package hooktest

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/core"
)

// Secret is the webhook secret the connector tests configure.
const Secret = "s3cret-for-tests"

// Config returns a valid connector config of typ with Secret.
func Config(typ string) connectors.Config {
	return connectors.Config{Name: typ + "-test", Type: typ, WebhookSecret: Secret}
}

// Read returns the content of testdata/name.
func Read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// Files lists the testdata files matching pattern (e.g. "*.json").
func Files(t testing.TB, pattern string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return names
}

// Header builds an http.Header from name/value pairs.
func Header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// SecretHeaders are credentials a delivery may carry that must never be
// kept with the stored event.
var SecretHeaders = []string{
	"Authorization", "X-Hub-Signature-256", "X-Hub-Signature",
	"X-Gitlab-Token", "X-Tollgate-Signature",
}

// WithSecrets returns a copy of h carrying every secret header, so a test
// can assert none is kept.
func WithSecrets(h http.Header) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for _, n := range SecretHeaders {
		out.Set(n, "do-not-store")
	}
	return out
}

// Basic returns an Authorization value for HTTP Basic auth.
func Basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// VerifyCase is one Verify input and its expected outcome: WantErr empty
// means success, else a substring of the KindUnauthorized message.
type VerifyCase struct {
	Name    string
	Header  http.Header
	Query   url.Values
	Body    []byte
	WantErr string
}

// SignatureCases is the standard matrix for an HMAC-SHA256 header:
// good, upper-case hex, bad key, tampered body, missing, wrong scheme,
// truncated, not hex, empty digest.
func SignatureCases(header string, body []byte) []VerifyCase {
	good := hook.Sign([]byte(Secret), body)
	hexDigest := strings.TrimPrefix(good, "sha256=")
	return []VerifyCase{
		{Name: "good", Header: Header(header, good), Body: body},
		{Name: "upper-case hex", Header: Header(header, "sha256="+strings.ToUpper(hexDigest)), Body: body},
		{Name: "wrong key", Header: Header(header, hook.Sign([]byte("other"), body)), Body: body, WantErr: "signature mismatch"},
		{Name: "tampered body", Header: Header(header, good), Body: append(append([]byte{}, body...), ' '), WantErr: "signature mismatch"},
		{Name: "missing", Header: Header(), Body: body, WantErr: "missing"},
		{Name: "wrong scheme sha1", Header: Header(header, "sha1="+hexDigest[:40]), Body: body, WantErr: "must be sha256="},
		{Name: "no scheme", Header: Header(header, hexDigest), Body: body, WantErr: "must be sha256="},
		{Name: "truncated", Header: Header(header, good[:len(good)-2]), Body: body, WantErr: "64 hex digits"},
		{Name: "not hex", Header: Header(header, "sha256="+strings.Repeat("zz", 32)), Body: body, WantErr: "64 hex digits"},
		{Name: "empty digest", Header: Header(header, "sha256="), Body: body, WantErr: "64 hex digits"},
	}
}

// BasicCases is the standard matrix for the secret as the Basic password.
func BasicCases(body []byte) []VerifyCase {
	return []VerifyCase{
		{Name: "basic good", Header: Header("Authorization", Basic("servicenow", Secret)), Body: body},
		{Name: "basic good, any user", Header: Header("Authorization", Basic("", Secret)), Body: body},
		{Name: "basic lower-case scheme", Header: Header("Authorization", "basic "+base64.StdEncoding.EncodeToString([]byte("u:"+Secret))), Body: body},
		{Name: "basic bad password", Header: Header("Authorization", Basic("u", Secret+"x")), Body: body, WantErr: "does not match"},
		{Name: "basic secret as user", Header: Header("Authorization", Basic(Secret, "")), Body: body, WantErr: "does not match"},
		{Name: "basic no colon", Header: Header("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(Secret))), Body: body, WantErr: "malformed"},
		{Name: "basic not base64", Header: Header("Authorization", "Basic %%%"), Body: body, WantErr: "malformed"},
		{Name: "bearer scheme", Header: Header("Authorization", "Bearer "+Secret), Body: body, WantErr: "Basic scheme"},
		{Name: "bad signature does not fall back to basic", Header: Header("Authorization", Basic("u", Secret), "X-Tollgate-Signature", hook.Sign([]byte("x"), body)), Body: body, WantErr: "signature mismatch"},
	}
}

// SignatureOrBasicCases is the matrix for a connector that takes either
// an X-Tollgate-Signature HMAC or the secret as the Basic password
// (hook.VerifySignatureOrBasic).
func SignatureOrBasicCases(body []byte) []VerifyCase {
	cases := append(SignatureCases(hook.SignatureHeader, body), BasicCases(body)...)
	for i := range cases {
		if cases[i].Name == "missing" {
			cases[i].WantErr = "missing X-Tollgate-Signature or Basic Authorization"
		}
	}
	return cases
}

// RunVerify runs cases against w.
func RunVerify(t *testing.T, w connectors.Webhook, cases []VerifyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			err := w.Verify(tc.Header, tc.Query, tc.Body)
			if tc.WantErr == "" {
				if err != nil {
					t.Fatalf("Verify: unexpected error %v", err)
				}
				return
			}
			if !core.IsKind(err, core.KindUnauthorized) {
				t.Fatalf("Verify: got %v (kind %s), want unauthorized", err, core.KindOf(err))
			}
			if !strings.Contains(err.Error(), tc.WantErr) {
				t.Fatalf("Verify: error %q does not mention %q", err, tc.WantErr)
			}
			if strings.Contains(err.Error(), Secret) {
				t.Fatalf("Verify: error %q leaks the secret", err)
			}
		})
	}
}

// CheckClassify asserts the invariants of any Classify result: errors are
// *core.Error of KindInvalid; a success has a non-empty, bounded type, a
// bounded delivery id and keeps no secret header.
func CheckClassify(t testing.TB, in connectors.Inbound, err error) {
	t.Helper()
	if err != nil {
		var ce *core.Error
		if !errors.As(err, &ce) || ce.Kind != core.KindInvalid {
			t.Fatalf("Classify error %v is not a *core.Error of kind invalid", err)
		}
		if ce.Message == "" {
			t.Fatalf("Classify error has no message")
		}
		return
	}
	if in.Type == "" || len(in.Type) > hook.MaxTypeLen {
		t.Fatalf("Classify type %q empty or too long", in.Type)
	}
	if len(in.DeliveryID) > hook.MaxDeliveryLen {
		t.Fatalf("Classify delivery id too long: %d", len(in.DeliveryID))
	}
	for _, n := range SecretHeaders {
		if _, ok := in.Headers[http.CanonicalHeaderKey(n)]; ok {
			t.Fatalf("Classify kept secret header %s", n)
		}
	}
}

// RequireInvalid asserts err is KindInvalid and mentions want.
func RequireInvalid(t testing.TB, err error, want string) {
	t.Helper()
	if !core.IsKind(err, core.KindInvalid) {
		t.Fatalf("got %v (kind %s), want invalid", err, core.KindOf(err))
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not mention %q", err, want)
	}
}

// RunNewSecretCases checks that a connector refuses to be built without a
// usable secret: empty, blank, or with a stray newline.
func RunNewSecretCases[W any](t *testing.T, typ string, build func(connectors.Config) (W, error)) {
	t.Helper()
	for _, secret := range []string{"", "   ", Secret + "\n"} {
		cfg := Config(typ)
		cfg.WebhookSecret = secret
		_, err := build(cfg)
		var ce *core.Error
		if !errors.As(err, &ce) || ce.Kind != core.KindInvalid || ce.Field != "webhook_secret" {
			t.Errorf("New with secret %q: got %v, want invalid webhook_secret", secret, err)
		}
	}
	if _, err := build(Config(typ)); err != nil {
		t.Errorf("New with a good secret: %v", err)
	}
}

// New builds a connector of typ with Config(typ), failing t on an error.
func New[W any](t testing.TB, typ string, build func(connectors.Config) (W, error)) W {
	t.Helper()
	w, err := build(Config(typ))
	if err != nil {
		t.Fatalf("new %s connector: %v", typ, err)
	}
	return w
}

// ClassifyCase is one Classify input and its expected outcome: with OK,
// Want is the type; without, a part of the KindInvalid error.
type ClassifyCase struct {
	Name   string
	Header http.Header
	Body   string
	Want   string
	OK     bool
}

// RunClassify runs cases against classify, checking CheckClassify's
// invariants on each result too.
func RunClassify(t *testing.T, classify func(http.Header, []byte) (connectors.Inbound, error), cases []ClassifyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			h := tc.Header
			if h == nil {
				h = http.Header{}
			}
			in, err := classify(h, []byte(tc.Body))
			CheckClassify(t, in, err)
			if !tc.OK {
				RequireInvalid(t, err, tc.Want)
				return
			}
			if err != nil || in.Type != tc.Want {
				t.Fatalf("got %+v, %v; want type %q", in, err, tc.Want)
			}
		})
	}
}

// FuzzSeeds returns FuzzBodies, each also placed in every template (a
// JSON text with one %s, e.g. `{"kind":%s}`), as seeds for a connector's
// FuzzClassify: the corners of reading in place, where the connector
// reads.
func FuzzSeeds(templates ...string) [][]byte {
	var out [][]byte
	for _, b := range FuzzBodies {
		out = append(out, []byte(b))
		for _, tpl := range templates {
			out = append(out, []byte(strings.Replace(tpl, "%s", b, 1)))
		}
	}
	return out
}

// FuzzBodies are hand-picked seeds for the fuzz tests of the readers and
// of every connector's Classify: the corners where reading in place and decoding could part ways (duplicate
// keys, escapes in keys and values, invalid UTF-8, lone surrogates,
// whitespace, nesting, and bodies that are not objects).
var FuzzBodies = []string{
	``, ` `, "\v{}", "\u00a0{}", `null`, `[]`, `[1]`, `"s"`, `12`, `true`, `{`, `{}`, ` {} `, `{}x`, `{"a":1}{}`,
	`{"a":1,"a":2}`, `{"a":"x","a":null}`, `{"a":null,"a":"x"}`,
	`{"\u0061":"esc key"}`, `{"a\u0000":"nul"}`, `{"a":"\ud800"}`, `{"a":"\ud83d\ude00 \u00e9"}`,
	"{\"a\":\"\xff\xfe\"}", "{\"\xff\":1}", `{"a":"tab\tx"}`, `{"a":"x\/y\"z\\"}`,
	`{"a":-0.0e+1}`, `{"a":01}`, `{"a":1.}`, `{"a":[1,[2,{"b":[]}]]}`,
	`{"a.b":1,"a*":2,"a?":3,"a|b":4,"#":5,"@this":6}`,
	`{ "a" : "b" , "c" : { "d" : [ ] } }`,
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	`{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
	`{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`,
	`{"a":"` + strings.Repeat("[{", 6000) + `"}`,
}

// BenchVerifyClassify measures what the webhook handler pays per delivery
// before the inbox insert: w's Verify and Classify of body with h, which
// must carry valid credentials.
func BenchVerifyClassify(b *testing.B, w connectors.Webhook, h http.Header, body []byte) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Verify(h, nil, body); err != nil {
			b.Fatal(err)
		}
		if _, err := w.Classify(h, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchClassify measures classify alone (no verification) of body with h.
func BenchClassify(b *testing.B, classify func(http.Header, []byte) (connectors.Inbound, error), h http.Header, body []byte) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := classify(h, body); err != nil {
			b.Fatal(err)
		}
	}
}

// LiveMarkup reports whether s holds markup unescaped: not right after a
// backslash that escapes it. The CI gate tests ask it of the comments
// tollgate sends, which inert.Markdown escapes.
func LiveMarkup(s, markup string) bool {
	for i := strings.Index(s, markup); i >= 0; {
		run := 0
		for run < i && s[i-1-run] == '\\' {
			run++
		}
		if run%2 == 0 {
			return true
		}
		next := strings.Index(s[i+1:], markup)
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return false
}
