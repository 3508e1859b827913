// Package hook holds the webhook building blocks the connector packages
// share: secret validation, constant-time HMAC / token / Basic-auth checks,
// and tolerant JSON field reading that never panics. Bodies are read in
// place with gjson (read.go): validated once, then only the members a
// connector needs, with encoding/json's semantics and error messages.
package hook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/textproto"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
)

// Header names of tollgate's own webhook scheme (servicenow, jenkins,
// generic).
const (
	SignatureHeader = "X-Tollgate-Signature"
	EventHeader     = "X-Tollgate-Event"
)

// Limits on the strings a delivery contributes to the inbox row.
const (
	MaxTypeLen     = 128
	MaxDeliveryLen = 256
	maxHeaderLen   = 1024
)

// Secret validates cfg.WebhookSecret and returns it. An empty secret is a
// configuration error: a connector without one would accept any delivery.
// Leading or trailing whitespace is refused too: it is nearly always a
// newline left by a secret file or ${VAR}, and would make every delivery
// fail verification in a way that is hard to diagnose.
func Secret(cfg connectors.Config) ([]byte, error) {
	s := cfg.WebhookSecret
	if strings.TrimSpace(s) == "" {
		return nil, core.Invalid("webhook_secret", "is required for %s connectors: without it any delivery would be accepted", cfg.Type)
	}
	if strings.TrimSpace(s) != s {
		return nil, core.Invalid("webhook_secret", "has leading or trailing whitespace (a newline from a secret file or environment variable?)")
	}
	return []byte(s), nil
}

// Unauthorized returns the KindUnauthorized error Verify reports.
func Unauthorized(format string, args ...any) error {
	return core.Errorf(core.KindUnauthorized, format, args...)
}

// EqualSecret reports whether got equals secret, in constant time. Both
// sides are hashed first so that neither the content nor the length of the
// secret leaks through timing.
func EqualSecret(got string, secret []byte) bool {
	a := sha256.Sum256([]byte(got))
	b := sha256.Sum256(secret)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// Sign returns the header value "sha256=<hex>" for body under secret, as a
// sender computes it. Tests and the documentation of the generic scheme
// use it.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifyHMAC checks that header name carries "sha256=<hex>", the
// HMAC-SHA256 of body keyed with secret, comparing in constant time.
func VerifyHMAC(h http.Header, name string, secret, body []byte) error {
	v := strings.TrimSpace(h.Get(name))
	if v == "" {
		return Unauthorized("missing %s", name)
	}
	algo, hexSig, ok := strings.Cut(v, "=")
	if !ok || !strings.EqualFold(algo, "sha256") {
		return Unauthorized("%s must be sha256=<hex digest>", name)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return Unauthorized("%s: digest is not %d hex digits", name, 2*sha256.Size)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return Unauthorized("%s: signature mismatch", name)
	}
	return nil
}

// VerifyToken checks that header name carries the secret itself.
func VerifyToken(h http.Header, name string, secret []byte) error {
	v := h.Get(name)
	if v == "" {
		return Unauthorized("missing %s", name)
	}
	if !EqualSecret(v, secret) {
		return Unauthorized("%s does not match the connector's secret", name)
	}
	return nil
}

// VerifyBasic checks that the Authorization header is HTTP Basic auth whose
// password is secret; the user name is not checked.
func VerifyBasic(h http.Header, secret []byte) error {
	auth := strings.TrimSpace(h.Get("Authorization"))
	if auth == "" {
		return Unauthorized("missing Authorization")
	}
	scheme, cred, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return Unauthorized("Authorization must use the Basic scheme")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return Unauthorized("Authorization: malformed Basic credentials")
	}
	_, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return Unauthorized("Authorization: malformed Basic credentials (no user:password)")
	}
	if !EqualSecret(pass, secret) {
		return Unauthorized("Authorization: Basic password does not match the connector's secret")
	}
	return nil
}

// VerifySignatureOrBasic is tollgate's own scheme for senders that have no
// vendor signature (ServiceNow, Jenkins, generic CI): an HMAC-SHA256 of the
// body in X-Tollgate-Signature: sha256=<hex>, or else the secret as the
// password of HTTP Basic auth. When a signature header is present it alone
// decides; a bad signature never falls back to Basic auth.
//
// None of these senders signs a timestamp, so there is no replay window:
// a replayed delivery is caught by the inbox's deduplication on the body
// hash instead.
func VerifySignatureOrBasic(h http.Header, secret, body []byte) error {
	if h.Get(SignatureHeader) != "" {
		return VerifyHMAC(h, SignatureHeader, secret, body)
	}
	if h.Get("Authorization") != "" {
		return VerifyBasic(h, secret)
	}
	return Unauthorized("missing %s or Basic Authorization", SignatureHeader)
}

// Object decodes body as one JSON object into its top-level members. The
// connectors read bodies with ParseObject instead, which refuses what
// Object refuses with the same message and costs a fraction of it.
func Object(body []byte) (map[string]json.RawMessage, error) {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, core.Errorf(core.KindInvalid, "body is empty")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, core.Errorf(core.KindInvalid, "body is not a JSON object (it is a JSON %s)", typeErr.Value)
		}
		return nil, core.Errorf(core.KindInvalid, "body is not valid JSON: %v", err)
	}
	if obj == nil {
		return nil, core.Errorf(core.KindInvalid, "body is not a JSON object (it is null)")
	}
	return obj, nil
}

// ValidObject checks that body is one well-formed JSON object without
// keeping any of it: one validation pass, no decoding. Only a body it
// refuses goes through encoding/json, to word the error.
func ValidObject(body []byte) error {
	if validObject(body) {
		return nil
	}
	trimmed := strings.TrimSpace(string(body))
	if trimmed == "" {
		return core.Errorf(core.KindInvalid, "body is empty")
	}
	if trimmed[0] != '{' && json.Valid(body) {
		return core.Errorf(core.KindInvalid, "body is not a JSON object (it is %s)", jsonKind(body))
	}
	var v struct{}
	if err := json.Unmarshal(body, &v); err != nil {
		return core.Errorf(core.KindInvalid, "body is not valid JSON: %v", err)
	}
	return nil
}

// jsonKind names the JSON type of raw for error messages.
func jsonKind(raw json.RawMessage) string {
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return "nothing"
	}
	switch s[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// JSONKind is jsonKind for the connector packages.
func JSONKind(raw json.RawMessage) string { return jsonKind(raw) }

// Label validates a string that becomes an event type or delivery id in
// the inbox: trimmed, non-empty, at most max bytes, valid UTF-8 without
// control characters. Errors are KindInvalid naming field.
func Label(field, v string, max int) (string, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return "", core.Invalid(field, "is empty")
	case len(v) > max:
		return "", core.Invalid(field, "is longer than %d bytes", max)
	case !utf8.ValidString(v):
		return "", core.Invalid(field, "is not valid UTF-8")
	case strings.ContainsFunc(v, unicode.IsControl):
		return "", core.Invalid(field, "contains control characters")
	}
	return v, nil
}

// OptionalLabel is Label for values that may be absent: empty stays empty.
func OptionalLabel(field, v string, max int) (string, error) {
	if strings.TrimSpace(v) == "" {
		return "", nil
	}
	return Label(field, v, max)
}

// Keep copies the named headers that are present into a map keyed by
// canonical header name, each value cut to a sane length. Callers name
// only harmless headers: never secrets, signatures or Authorization.
func Keep(h http.Header, names ...string) map[string]string {
	out := make(map[string]string, len(names))
	for _, n := range names {
		v := h.Get(n)
		if v == "" {
			continue
		}
		if len(v) > maxHeaderLen {
			v = strings.ToValidUTF8(v[:maxHeaderLen], "")
		}
		out[textproto.CanonicalMIMEHeaderKey(n)] = v
	}
	return out
}

// NotJSONHint adds advice to a body decoding error when the delivery was
// sent form-encoded, which some vendors (GitHub) offer as an alternative.
func NotJSONHint(h http.Header, err error) error {
	var ce *core.Error
	ct := strings.ToLower(h.Get("Content-Type"))
	if !strings.HasPrefix(ct, "application/x-www-form-urlencoded") || !errors.As(err, &ce) {
		return err
	}
	return &core.Error{Kind: ce.Kind, Field: ce.Field, Err: ce.Err,
		Message: ce.Message + " (the delivery is form-encoded: set the webhook's content type to application/json)"}
}
