// Package jira is the Jira (Cloud and Data Center) connector's inbound
// side: it authenticates webhook deliveries by the X-Hub-Signature HMAC
// (Jira Cloud admin webhooks with a secret) or the ?secret= query
// parameter (Jira Data Center, which cannot sign), and classifies them by
// the body's webhookEvent.
package jira

import (
	"net/http"
	"net/url"

	"github.com/tidwall/gjson"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/core"
)

// Type is the connector type name in the config file.
const Type = "jira"

// Delivery headers and query parameter.
const (
	HeaderSignature = "X-Hub-Signature"
	HeaderDelivery  = "X-Atlassian-Webhook-Identifier"
	HeaderRetry     = "X-Atlassian-Webhook-Retry"
	QuerySecret     = "secret"
)

// keptHeaders are stored with the raw event; X-Hub-Signature is not.
var keptHeaders = []string{
	HeaderDelivery, HeaderRetry,
	"X-Atlassian-Webhook-Flow",
	"User-Agent", "Content-Type",
}

// Webhook verifies and classifies Jira deliveries.
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

// Verify accepts either proof, checked in constant time:
//   - X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body> (Jira Cloud
//     admin webhooks registered with a secret). When this header is
//     present it alone decides; a bad signature never falls back to the
//     query secret.
//   - ?secret=<secret> in the webhook URL (Jira Data Center). The URL then
//     carries the secret: the HTTP layer must not log query strings of
//     webhook requests.
//
// Jira signs no timestamp, so there is no replay window; retries carry the
// same X-Atlassian-Webhook-Identifier and are deduplicated by the inbox.
func (w *Webhook) Verify(h http.Header, query url.Values, body []byte) error {
	if h.Get(HeaderSignature) != "" {
		return hook.VerifyHMAC(h, HeaderSignature, w.secret, body)
	}
	if query.Has(QuerySecret) {
		if !hook.EqualSecret(query.Get(QuerySecret), w.secret) {
			return hook.Unauthorized("?%s= does not match the connector's secret", QuerySecret)
		}
		return nil
	}
	return hook.Unauthorized("missing %s or ?%s= in the webhook URL", HeaderSignature, QuerySecret)
}

// Classify implements connectors.Webhook; see Classify.
func (w *Webhook) Classify(h http.Header, body []byte) (connectors.Inbound, error) {
	return Classify(h, body)
}

// Classify reads a Jira delivery: the type is the body's webhookEvent
// ("jira:issue_updated" …), the delivery id X-Atlassian-Webhook-Identifier
// (the same on retries; Jira Data Center does not send it).
func Classify(h http.Header, body []byte) (connectors.Inbound, error) {
	var member [1]gjson.Result
	if _, err := hook.ParseLookup(body, member[:], "webhookEvent"); err != nil {
		return connectors.Inbound{}, err
	}
	event, ok, err := hook.StringValue(member[0], "webhookEvent")
	if err != nil {
		return connectors.Inbound{}, err
	}
	if !ok {
		return connectors.Inbound{}, core.Invalid("webhookEvent", "missing: the body is not a Jira webhook delivery")
	}
	typ, err := hook.Label("webhookEvent", event, hook.MaxTypeLen)
	if err != nil {
		return connectors.Inbound{}, err
	}
	delivery, err := hook.OptionalLabel(HeaderDelivery, h.Get(HeaderDelivery), hook.MaxDeliveryLen)
	if err != nil {
		return connectors.Inbound{}, err
	}
	return connectors.Inbound{Type: typ, DeliveryID: delivery, Headers: hook.Keep(h, keptHeaders...)}, nil
}
