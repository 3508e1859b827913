package github

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
)

// GitHub sends a failed webhook delivery again only when asked: the App's
// deliveries (GET /app/hook/deliveries, newest first, as the App's JWT)
// show which attempts failed, and POST
// /app/hook/deliveries/{id}/attempts sends one again, with the same
// X-GitHub-Delivery, signed as before. service.Redeliverer uses both to
// bring back what tollgate missed while it or its database was away.

// deliveriesPage is the most GitHub lists per page.
const deliveriesPage = 100

// deliveryPages bounds the pages of one delivery log a run reads: the
// App's log holds every installation's every event, so an outage of a
// busy App's hours can hold tens of thousands of attempts, and a run
// keeps what it read of them until it has asked for the failed ones.
const deliveryPages = 200

// hookDelivery is one attempt as GitHub lists it.
type hookDelivery struct {
	ID          int64     `json:"id"`
	GUID        string    `json:"guid"`
	DeliveredAt time.Time `json:"delivered_at"`
	Redelivery  bool      `json:"redelivery"`
	Status      string    `json:"status"`
	StatusCode  int       `json:"status_code"`
	Event       string    `json:"event"`
	Action      string    `json:"action"`
}

// delivery is d as the redeliverer reads it: OK when GitHub counts it
// delivered or tollgate answered with a 2xx.
func (d hookDelivery) delivery() connectors.Delivery {
	return connectors.Delivery{
		ID: strconv.FormatInt(d.ID, 10), GUID: d.GUID, At: d.DeliveredAt.UTC(), StatusCode: d.StatusCode,
		OK: d.Status == "OK" || (d.StatusCode >= 200 && d.StatusCode < 300), Redelivery: d.Redelivery,
		Event: d.Event, Action: d.Action,
	}
}

// CloseIdleConnections closes the App client's idle connections.
func (w *Webhook) CloseIdleConnections() {
	if w.app != nil {
		w.app.http.CloseIdleConnections()
	}
}

// RedeliversFailed reports whether the connector can list and redeliver
// its App's deliveries (an api block with the App's credentials).
func (w *Webhook) RedeliversFailed() bool { return w.app != nil }

// Deliveries calls fn with the App webhook's delivery attempts from the
// newest back to the first made before since("") (which is not passed
// on) — the App's webhook is the log "" — then, for each configured
// repository and organization, those of each of its own webhooks that
// point at this connector, each its own log ("repos/acme/payments/hooks/12")
// back to its since. A repository or organization whose webhooks the App
// may not read is said once in an error, then passed over; so is a log
// holding more since its watermark than a run reads (connectors.ErrUnread,
// after what was read is handed on).
func (w *Webhook) Deliveries(ctx context.Context, since func(log string) time.Time, fn func(connectors.Delivery) error) error {
	if w.app == nil {
		return core.Errorf(core.KindInvalid, "connector has no GitHub App configured")
	}
	signed, err := w.app.appJWT()
	if err != nil {
		return err
	}
	err = w.app.deliveries(ctx, "/app/hook/deliveries", "Bearer "+signed, "app webhook deliveries", since(""), fn)
	if err != nil && !errors.Is(err, connectors.ErrUnread) {
		return err
	}
	// A log read only in part does not stop the others being read.
	return errors.Join(err, w.ownerDeliveries(ctx, since, fn))
}

// Redeliver asks GitHub to send the attempt d again: the App's as the
// App, a repository's or organization's webhook's as the App's
// installation there.
func (w *Webhook) Redeliver(ctx context.Context, d connectors.Delivery) error {
	if w.app == nil {
		return core.Errorf(core.KindInvalid, "connector has no GitHub App configured")
	}
	if d.Log == "" {
		return w.app.redeliver(ctx, d.ID)
	}
	return w.redeliverOwned(ctx, d)
}

// deliveries calls fn with the attempts a delivery list (path, read with
// auth) holds, from the newest back to the first made before since,
// reading at most c.pages pages (deliveryPages unless set); when those
// end before since, an ErrUnread says from when on the attempts were
// read.
func (c *appClient) deliveries(ctx context.Context, path, auth, what string, since time.Time, fn func(connectors.Delivery) error) error {
	cursor := ""
	pages := c.pages
	if pages <= 0 {
		pages = deliveryPages
	}
	read, oldest := 0, time.Time{}
	for page := 1; ; page++ {
		if page > pages {
			return connectors.Unread(what, read, since, oldest, "see the webhook's recent deliveries on GitHub")
		}
		q := url.Values{"per_page": {strconv.Itoa(deliveriesPage)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var out []hookDelivery
		h, err := c.call(ctx, http.MethodGet, path+"?"+q.Encode(), auth, nil, what+", page "+strconv.Itoa(page), &out)
		if err != nil {
			return err
		}
		for _, d := range out {
			if d.DeliveredAt.Before(since) {
				return nil // newest first: the rest are older still
			}
			if err := fn(d.delivery()); err != nil {
				return err
			}
			read, oldest = read+1, d.DeliveredAt
		}
		next := nextCursor(h.Get("Link"))
		if next == "" || next == cursor || len(out) == 0 {
			return nil
		}
		cursor = next
	}
}

// nextCursor reads the cursor of the Link header's rel="next" page. Only
// the cursor is taken: the next request goes to the configured API URL,
// whatever host the header names.
func nextCursor(link string) string {
	for _, part := range strings.Split(link, ",") {
		target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
		if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
			continue
		}
		next := false
		for _, p := range strings.Split(params, ";") {
			if k, v, _ := strings.Cut(strings.TrimSpace(p), "="); strings.EqualFold(k, "rel") && strings.Trim(v, `"`) == "next" {
				next = true
			}
		}
		if !next {
			continue
		}
		u, err := url.Parse(target[1 : len(target)-1])
		if err != nil {
			return ""
		}
		return u.Query().Get("cursor")
	}
	return ""
}

func (c *appClient) redeliver(ctx context.Context, id string) error {
	if _, err := strconv.ParseInt(id, 10, 64); err != nil {
		return core.Invalid("delivery", "%q is not a GitHub delivery id", id)
	}
	signed, err := c.appJWT()
	if err != nil {
		return err
	}
	// Safe to repeat: a second attempt of the same delivery carries the
	// same X-GitHub-Delivery, and the inbox stores it once.
	return c.do(apiclient.Idempotent(ctx), http.MethodPost, "/app/hook/deliveries/"+id+"/attempts", "Bearer "+signed, nil,
		"redeliver app webhook delivery "+id, nil)
}
