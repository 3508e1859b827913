// Package gitlab is the GitLab connector's inbound side: it authenticates
// webhook deliveries by the X-Gitlab-Token secret and classifies them by
// the X-Gitlab-Event header (or the body's object_kind).
package gitlab

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
const Type = "gitlab"

// Delivery headers GitLab sends.
const (
	HeaderEvent     = "X-Gitlab-Event"
	HeaderToken     = "X-Gitlab-Token"
	HeaderEventUUID = "X-Gitlab-Event-UUID"
	// HeaderIdempotencyKey (GitLab 17.4+) stays the same across retries of
	// one delivery, manual resends included.
	HeaderIdempotencyKey = "Idempotency-Key"
)

// keptHeaders are stored with the raw event; X-Gitlab-Token is not.
var keptHeaders = []string{
	HeaderEvent, HeaderEventUUID, HeaderIdempotencyKey,
	"X-Gitlab-Webhook-UUID", "X-Gitlab-Instance",
	"User-Agent", "Content-Type",
}

// Webhook verifies and classifies GitLab deliveries. With an API token
// and approvals configured it turns deployments blocked for approval into
// gate requests and answers them (gate.go); with an API token and
// projects it polls the projects' deployments (poll.go).
type Webhook struct {
	secret []byte
	gate   *connectors.CIGate
	api    *api
	// projects are those whose deployments waiting for approval the
	// poller looks for (poll.go); projectsRead caches them as read.
	projects     []string
	projectsRead sync.Map
	// groups are those whose own webhooks (a group's, GitLab Premium) are
	// watched and whose failed events are resent, as the projects' are.
	groups []string
	// name is the connector's: its webhook path is /webhooks/<name>.
	name string
	// hooksForbidden holds the projects whose webhooks the token may not
	// read (HookStates or Deliveries says so once); noEventsAPI those on a
	// GitLab without the webhook events API.
	hooksForbidden, noEventsAPI sync.Map
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
	w := &Webhook{secret: secret, gate: cfg.CIGate, projects: cfg.Projects, groups: cfg.Groups, name: cfg.Name}
	if a := cfg.API; a != nil {
		if a.Token == "" {
			return nil, core.Invalid("api.token", "is required to approve or read deployments")
		}
		o.Instance = cfg.Name
		if o.Timeout == 0 {
			o.Timeout = a.Timeout
		}
		w.api = &api{system: "GitLab " + cfg.Name, base: strings.TrimSuffix(a.URL, "/"), token: a.Token,
			http: apiclient.New(o).HTTPClient()}
	}
	return w, nil
}

// Factory adapts New to connectors.Factory.
func Factory(cfg connectors.Config) (connectors.Webhook, error) { return New(cfg) }

// Verify checks that X-Gitlab-Token carries the secret (GitLab sends the
// token as-is, it does not sign the body), in constant time. GitLab sends
// no timestamp to sign, so there is no replay window.
func (w *Webhook) Verify(h http.Header, _ url.Values, _ []byte) error {
	return hook.VerifyToken(h, HeaderToken, w.secret)
}

// Classify implements connectors.Webhook; see Classify.
func (w *Webhook) Classify(h http.Header, body []byte) (connectors.Inbound, error) {
	return Classify(h, body)
}

// Classify reads a GitLab delivery. The type is the X-Gitlab-Event header
// ("Pipeline Hook", "Deployment Hook" …), else the body's object_kind. The
// delivery id is Idempotency-Key when sent (stable across retries), else
// X-Gitlab-Event-UUID. (GitLab gives recursive webhooks, those triggered
// by an earlier webhook's call back into GitLab, the same Event-UUID;
// Idempotency-Key does not have that ambiguity.)
func Classify(h http.Header, body []byte) (connectors.Inbound, error) {
	obj, err := hook.ParseObject(body)
	if err != nil {
		return connectors.Inbound{}, err
	}
	var typ string
	if event := h.Get(HeaderEvent); event != "" {
		if typ, err = hook.Label(HeaderEvent, event, hook.MaxTypeLen); err != nil {
			return connectors.Inbound{}, err
		}
	} else {
		kind, ok, err := hook.String(obj, "object_kind", "object_kind")
		if err != nil {
			return connectors.Inbound{}, err
		}
		if !ok {
			return connectors.Inbound{}, core.Invalid(HeaderEvent, "missing header, and the body has no object_kind")
		}
		if typ, err = hook.Label("object_kind", kind, hook.MaxTypeLen); err != nil {
			return connectors.Inbound{}, err
		}
	}
	var delivery string
	for _, name := range []string{HeaderIdempotencyKey, HeaderEventUUID} {
		if delivery, err = hook.OptionalLabel(name, h.Get(name), hook.MaxDeliveryLen); err != nil {
			return connectors.Inbound{}, err
		}
		if delivery != "" {
			break
		}
	}
	return connectors.Inbound{Type: typ, DeliveryID: delivery, Headers: hook.Keep(h, keptHeaders...)}, nil
}
