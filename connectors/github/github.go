// Package github is the GitHub connector's inbound side: it authenticates
// webhook deliveries by their X-Hub-Signature-256 HMAC and classifies them
// by the X-GitHub-Event header.
package github

import (
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/core"
)

// Type is the connector type name in the config file.
const Type = "github"

// Delivery headers GitHub sends.
const (
	HeaderEvent     = "X-GitHub-Event"
	HeaderDelivery  = "X-GitHub-Delivery"
	HeaderSignature = "X-Hub-Signature-256"
)

// keptHeaders are stored with the raw event. The signature headers are
// deliberately absent.
var keptHeaders = []string{
	HeaderEvent, HeaderDelivery,
	"X-GitHub-Hook-ID",
	"X-GitHub-Hook-Installation-Target-Type",
	"X-GitHub-Hook-Installation-Target-ID",
	"User-Agent", "Content-Type",
}

// Webhook verifies and classifies GitHub deliveries. With an App
// configured (api) it lists and redelivers the App's failed deliveries
// (deliveries.go), and with protection_rule too it turns deployment
// protection rules into gate requests and answers them (gate.go).
type Webhook struct {
	secret []byte
	// appSecrets are the GitHub App's own webhook secrets
	// (protection_rule.webhook_secret, then its previous one while it is
	// rotated), none when unset: they alone sign deployment_protection_rule
	// requests.
	appSecrets [][]byte
	gate       *connectors.CIGate
	app        *appClient
	// name is the connector's: its webhook path is /webhooks/<name>.
	name string
	// owners are the repositories ("repos/acme/payments") and
	// organizations ("orgs/acme") whose own webhooks pointing here have
	// their failed deliveries redelivered (hooks.go); installs caches
	// each one's App installation, hooksForbidden holds those whose
	// webhooks the App may not read (said once).
	owners                   []string
	installs, hooksForbidden sync.Map
}

var _ connectors.Webhook = (*Webhook)(nil)

// New builds the webhook for cfg; the secret is required.
func New(cfg connectors.Config) (*Webhook, error) { return newWebhook(cfg, apiclient.Options{}) }

// newWebhook is New with the outbound client's options (tests make its
// waits short); Instance and, when unset, Timeout come from cfg.
func newWebhook(cfg connectors.Config, o apiclient.Options) (*Webhook, error) {
	secret, err := hook.Secret(cfg)
	if err != nil {
		return nil, err
	}
	w := &Webhook{secret: secret, gate: cfg.CIGate, name: cfg.Name}
	if g := cfg.CIGate; g != nil {
		for _, s := range []string{g.WebhookSecret, g.WebhookSecretPrevious} {
			if s != "" {
				w.appSecrets = append(w.appSecrets, []byte(s))
			}
		}
	}
	for _, r := range cfg.Repositories {
		w.owners = append(w.owners, "repos/"+r)
	}
	for _, o := range cfg.Organizations {
		w.owners = append(w.owners, "orgs/"+o)
	}
	if a := cfg.API; a != nil {
		o.Instance = cfg.Name
		if o.Timeout == 0 {
			o.Timeout = a.Timeout
		}
		hc := apiclient.New(o).HTTPClient()
		if w.app, err = newAppClient("GitHub "+cfg.Name, a.URL, a.AppID, a.PrivateKey, hc); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Factory adapts New to connectors.Factory.
func Factory(cfg connectors.Config) (connectors.Webhook, error) { return New(cfg) }

// Verify checks X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>.
// The legacy SHA-1 X-Hub-Signature is not accepted. GitHub signs no
// timestamp, so there is no replay window; a replayed delivery carries the
// same X-GitHub-Delivery and is deduplicated by the inbox.
//
// With protection_rule.webhook_secret set, a deployment_protection_rule
// request must be signed with it: the connector's webhook_secret is also
// set on every repository and organization webhook pointed here, and
// whoever set one up could otherwise sign a request naming another
// repository's waiting run. The App's secret signs its other events too.
func (w *Webhook) Verify(h http.Header, _ url.Values, body []byte) error {
	if len(w.appSecrets) == 0 {
		return hook.VerifyHMAC(h, HeaderSignature, w.secret, body)
	}
	var err error
	for _, s := range w.appSecrets {
		if err = hook.VerifyHMAC(h, HeaderSignature, s, body); err == nil {
			return nil
		}
	}
	if strings.EqualFold(strings.TrimSpace(h.Get(HeaderEvent)), EventProtectionRule) {
		return hook.Unauthorized("a %s request must be signed with the GitHub App's secret (protection_rule.webhook_secret): %v", EventProtectionRule, err)
	}
	return hook.VerifyHMAC(h, HeaderSignature, w.secret, body)
}

// Classify implements connectors.Webhook; see Classify.
func (w *Webhook) Classify(h http.Header, body []byte) (connectors.Inbound, error) {
	return Classify(h, body)
}

// Classify reads a GitHub delivery: the event type is the X-GitHub-Event
// header (required; the action such as "completed" stays in the body), the
// delivery id is X-GitHub-Delivery, and the body must be a JSON object
// (GitHub's form-encoded content type is refused with a hint).
func Classify(h http.Header, body []byte) (connectors.Inbound, error) {
	event := h.Get(HeaderEvent)
	if event == "" {
		return connectors.Inbound{}, core.Invalid(HeaderEvent, "missing header: GitHub names the event in it")
	}
	typ, err := hook.Label(HeaderEvent, event, hook.MaxTypeLen)
	if err != nil {
		return connectors.Inbound{}, err
	}
	delivery, err := hook.OptionalLabel(HeaderDelivery, h.Get(HeaderDelivery), hook.MaxDeliveryLen)
	if err != nil {
		return connectors.Inbound{}, err
	}
	if err := hook.ValidObject(body); err != nil {
		return connectors.Inbound{}, hook.NotJSONHint(h, err)
	}
	return connectors.Inbound{Type: typ, DeliveryID: delivery, Headers: hook.Keep(h, keptHeaders...)}, nil
}
