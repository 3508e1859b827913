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
func Classify(h http.Header, body []byte) (connectors.Inbound, error) {
	rec, err := Record(body)
	if err != nil {
		return connectors.Inbound{}, err
	}
	class, err := SysClassName(rec)
	if err != nil {
		return connectors.Inbound{}, err
	}
	return connectors.Inbound{Type: class, Headers: hook.Keep(h, keptHeaders...)}, nil
}

// Record returns the top-level members of the one record body holds,
// unwrapping the {"result": {…}} envelope when the body has one (a body
// with its own sys_class_name is taken as the record itself). A list
// envelope {"result": […]} is refused: a delivery carries one record.
func Record(body []byte) (map[string]json.RawMessage, error) {
	obj, err := hook.Object(body)
	if err != nil {
		return nil, err
	}
	if _, own := obj["sys_class_name"]; own {
		return obj, nil
	}
	raw, wrapped := obj["result"]
	if !wrapped {
		return obj, nil
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(raw, &rec); err != nil || rec == nil {
		var list []json.RawMessage
		if json.Unmarshal(raw, &list) == nil && list != nil {
			return nil, core.Invalid("result", "is a list of %d records; a delivery must carry exactly one record", len(list))
		}
		return nil, core.Invalid("result", "must be a record object, got %s", hook.JSONKind(raw))
	}
	return rec, nil
}

// SysClassName reads the record's table from sys_class_name: a plain
// string, or the value of a {display_value,value} pair or {link,value}
// reference.
func SysClassName(rec map[string]json.RawMessage) (string, error) {
	const field = "sys_class_name"
	raw, ok := rec[field]
	if !ok {
		return "", core.Invalid(field, "missing: cannot tell which table the record belongs to (include sys_class_name in the message)")
	}
	v, err := Value(raw)
	if err != nil {
		return "", core.Invalid(field, "%s", err.Error())
	}
	return hook.Label(field, v, hook.MaxTypeLen)
}

// Value returns the machine value of one ServiceNow field in any of its
// shapes: a string, a number or boolean (as its JSON text), or the value
// member of a {display_value,value} pair or {link,value} reference. null
// is the empty string.
func Value(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var pair struct {
		Value json.RawMessage `json:"value"`
	}
	switch hook.JSONKind(raw) {
	case "null":
		return "", nil
	case "a number", "a boolean":
		return string(raw), nil
	case "an object":
		if err := json.Unmarshal(raw, &pair); err != nil {
			return "", err
		}
		if pair.Value == nil {
			return "", core.Errorf(core.KindInvalid, "object has no value member")
		}
		if k := hook.JSONKind(pair.Value); k == "an object" || k == "an array" {
			return "", core.Errorf(core.KindInvalid, "value member is %s", k)
		}
		return Value(pair.Value)
	default:
		return "", core.Errorf(core.KindInvalid, "must be a string or a {display_value,value} pair, got %s", hook.JSONKind(raw))
	}
}
