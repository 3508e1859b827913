// Package generic is the connector for any CI system that can send JSON:
// deliveries are authenticated by an X-Tollgate-Signature HMAC or the
// secret as the HTTP Basic password, and classified by the X-Tollgate-Event
// header or the body's "kind". What the body means is left entirely to the
// connector's mapping profile.
package generic

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/core"
)

// Type is the connector type name in the config file.
const Type = "generic"

// Protocol names of the generic scheme.
const (
	HeaderSignature = hook.SignatureHeader // X-Tollgate-Signature: sha256=<hex>
	HeaderEvent     = hook.EventHeader     // X-Tollgate-Event: <kind>
	FieldKind       = "kind"
	TypeCanonical   = "canonical" // the type of a delivery that names none
)

// keptHeaders are stored with the raw event; Authorization and the
// signature are not.
var keptHeaders = []string{HeaderEvent, "User-Agent", "Content-Type"}

// Webhook verifies and classifies generic deliveries.
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

// Sign returns the X-Tollgate-Signature value a sender puts on body:
// "sha256=" and the hex HMAC-SHA256 of the exact body bytes under secret.
func Sign(secret, body []byte) string { return hook.Sign(secret, body) }

// Verify checks X-Tollgate-Signature: sha256=<hex HMAC-SHA256 of the body>,
// or else HTTP Basic auth with the secret as password (any user name).
// The scheme signs no timestamp, so there is no replay window; a replay is
// deduplicated on the body hash.
func (w *Webhook) Verify(h http.Header, _ url.Values, body []byte) error {
	return hook.VerifySignatureOrBasic(h, w.secret, body)
}

// Classify implements connectors.Webhook; see Classify.
func (w *Webhook) Classify(h http.Header, body []byte) (connectors.Inbound, error) {
	return Classify(h, body)
}

// EveryDeliveryMeant implements connectors.MeantForTollgate: a generic
// delivery is sent for tollgate to record, so one no profile matches is
// malformed (a canonical deployment without its run_id, say).
func (w *Webhook) EveryDeliveryMeant() bool { return true }

// Classify reads a generic delivery: the type is the X-Tollgate-Event
// header or the body's "kind" string, optional (the default profiles
// recognize canonical records by shape); when both are present they must
// agree. There is no delivery id: the inbox deduplicates on the body hash,
// except where the type comes from the header alone — then the same body
// sent as two types is two deliveries (deploy.started, then
// deploy.succeeded), and its key (DeliveryID) hashes the type with the
// body.
func Classify(h http.Header, body []byte) (connectors.Inbound, error) {
	obj, err := hook.ParseObject(body)
	if err != nil {
		return connectors.Inbound{}, err
	}
	kind, hasKind, err := hook.String(obj, FieldKind, FieldKind)
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
	var typ, id string
	switch {
	case header != "" && hasKind && header != kind:
		return connectors.Inbound{}, core.Invalid(HeaderEvent, "%q disagrees with the body's kind %q", header, kind)
	case header != "":
		typ = header
		if !hasKind {
			id = typedKey(header, body)
		}
	case hasKind:
		typ = kind
	default:
		// No type: a canonical record; the default generic profiles
		// recognize deployments, changes and incidents by their shape.
		typ = TypeCanonical
	}
	return connectors.Inbound{Type: typ, DeliveryID: id, Headers: hook.Keep(h, keptHeaders...)}, nil
}

// typedKey is the deduplication key of a body whose type only the header
// gives: a hash of both, stable across the sender's retries.
func typedKey(typ string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(typ))
	h.Write([]byte{0}) // a type never holds NUL (hook.Label)
	h.Write(body)
	return "sha256-typed:" + hex.EncodeToString(h.Sum(nil))
}
