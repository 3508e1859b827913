// Package servicenow is the ServiceNow connector's inbound side: it
// authenticates deliveries (an X-Tollgate-Signature HMAC or the secret as
// the HTTP Basic password, what a ServiceNow REST message can send) and
// classifies them by the record's sys_class_name.
//
// A delivery body is one record as the Table API or the Change Management
// API returns it, with or without the {"result": …} envelope; fields are
// plain values, {link,value} references or {display_value,value} pairs.
package servicenow

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/core"
)

// Type is the connector type name in the config file.
const Type = "servicenow"

// keptHeaders are stored with the raw event; Authorization and the
// signature are not.
var keptHeaders = []string{"User-Agent", "Content-Type"}

// Webhook verifies and classifies ServiceNow deliveries.
type Webhook struct {
	secret []byte
}

var _ connectors.Webhook = (*Webhook)(nil)

// New builds the webhook for cfg; the secret is required.
func New(cfg connectors.Config) (*Webhook, error) {
	secret, err := hook.Secret(cfg)
	if err != nil {
		return nil, err
	}
	return &Webhook{secret: secret}, nil
}

// Factory adapts New to connectors.Factory.
func Factory(cfg connectors.Config) (connectors.Webhook, error) { return New(cfg) }

// Verify checks X-Tollgate-Signature: sha256=<hex HMAC-SHA256 of the body>,
// or else HTTP Basic auth with the secret as password (any user name).
// ServiceNow signs no timestamp, so there is no replay window; a replay is
// deduplicated on the body hash.
func (w *Webhook) Verify(h http.Header, _ url.Values, body []byte) error {
	return hook.VerifySignatureOrBasic(h, w.secret, body)
}

// Classify implements connectors.Webhook; see Classify.
func (w *Webhook) Classify(h http.Header, body []byte) (connectors.Inbound, error) {
	return Classify(h, body)
}

// Classify reads a ServiceNow delivery: the type is the record's
// sys_class_name (its value when it is a pair or reference), e.g.
// "incident" or "change_request". ServiceNow sends no delivery id, so
// DeliveryID stays empty and the inbox deduplicates on the body hash.
//
// The body is the record itself or the {"result": {…}} envelope (a body
// with its own sys_class_name is taken as the record itself, even if it
// has a result member). A list envelope {"result": […]} is refused: a
// delivery carries one record. Only the members needed are read, in place:
// one validation pass and a walk over the top level (and the result
// record's), never a decode of the whole body. Of duplicate keys the last
// wins, as it did when the body was decoded with encoding/json.
func Classify(h http.Header, body []byte) (connectors.Inbound, error) {
	class, err := classOf(body)
	if err != nil {
		return connectors.Inbound{}, err
	}
	return connectors.Inbound{Type: class, Headers: hook.Keep(h, keptHeaders...)}, nil
}

// Member names read from a delivery.
const (
	fieldClass  = "sys_class_name"
	fieldResult = "result"
)

// The members classOf reads: at the top level, and in the result record.
var (
	topFields   = []string{fieldClass, fieldResult}
	innerFields = []string{fieldClass}
)

// classOf returns the validated sys_class_name of the record body holds.
func classOf(body []byte) (string, error) {
	var top [2]gjson.Result
	var inner [1]gjson.Result // the result record's sys_class_name, read in the same pass
	if _, err := hook.ParseLookupIn(body, top[:], topFields, fieldResult, inner[:], innerFields); err != nil {
		return "", err
	}
	class, result := top[0], top[1]
	if !class.Exists() && result.Exists() {
		switch {
		case result.IsObject():
			class = inner[0]
		case result.IsArray():
			n := 0
			result.ForEach(func(_, _ gjson.Result) bool { n++; return true })
			return "", core.Invalid(fieldResult, "is a list of %d records; a delivery must carry exactly one record", n)
		default:
			return "", core.Invalid(fieldResult, "must be a record object, got %s", hook.Kind(result))
		}
	}
	if !class.Exists() {
		return "", core.Invalid(fieldClass, "missing: cannot tell which table the record belongs to (include sys_class_name in the message)")
	}
	v, err := value(class)
	if err != nil {
		return "", core.Invalid(fieldClass, "%s", err.Error())
	}
	return hook.Label(fieldClass, v, hook.MaxTypeLen)
}

// Value returns the machine value of one ServiceNow field in any of its
// shapes: a string, a number or boolean (as its JSON text), or the value
// member of a {display_value,value} pair or {link,value} reference (the
// member name matched case-insensitively, as encoding/json matches a
// struct field). null is the empty string. raw is one JSON value as a
// json.RawMessage holds it; raw that is not valid JSON is a KindInvalid
// error.
func Value(raw json.RawMessage) (string, error) {
	if !gjson.ValidBytes(raw) {
		return "", core.Errorf(core.KindInvalid, "is not valid JSON")
	}
	return value(gjson.ParseBytes(raw))
}

// value is Value for a value read in place.
func value(v gjson.Result) (string, error) {
	switch {
	case v.Type == gjson.String:
		return hook.Text(v), nil
	case v.Type == gjson.Null:
		return "", nil
	case v.Type == gjson.Number, v.Type == gjson.True, v.Type == gjson.False:
		return strings.Clone(v.Raw), nil
	case v.IsObject():
		inner := hook.LookupFold(v, "value")
		if !inner.Exists() {
			return "", core.Errorf(core.KindInvalid, "object has no value member")
		}
		if inner.IsObject() || inner.IsArray() {
			return "", core.Errorf(core.KindInvalid, "value member is %s", hook.Kind(inner))
		}
		return value(inner)
	default:
		return "", core.Errorf(core.KindInvalid, "must be a string or a {display_value,value} pair, got %s", hook.Kind(v))
	}
}
