package gitlab

import (
	"context"
	"encoding/json"
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

// GitLab sends a webhook event once: a pipeline or job whose hook found
// tollgate away is not seen (the poller brings back deployments only).
// GitLab 17.4 and later log each project webhook's events (GET
// /projects/:id/hooks/:hook_id/events, newest first, about a week back)
// and send one again on request (POST …/events/:id/resend), with the
// same Idempotency-Key. service.Redeliverer uses both, for the webhooks
// of the configured projects that point at this connector.

// glHookEvent is one attempt as GitLab logs it.
type glHookEvent struct {
	ID             json.Number       `json:"id"`
	Trigger        string            `json:"trigger"` // pipeline_hooks, job_hooks, deployment_hooks …
	RequestHeaders map[string]string `json:"request_headers"`
	ResponseStatus string            `json:"response_status"` // "200", or "internal error" when no answer came
	CreatedAt      time.Time         `json:"created_at"`
}

// errNoEventsAPI marks a GitLab that has no webhook events API (before
// 17.4).
var errNoEventsAPI = errors.New("this GitLab lists no webhook events (GitLab 17.4 and later do): its failed deliveries are not resent")

// RedeliversFailed reports whether the connector can list and resend its
// projects' and groups' webhook events (an api block, and projects or
// groups).
func (w *Webhook) RedeliversFailed() bool { return w.Polls() }

// Deliveries implements service.DeliveryLog: the events of each webhook of
// the configured projects and groups that points at this connector, from
// the newest back to since(log), where each webhook is its own log
// ("<project id>/<hook id>", "groups/<group path>/<hook id>"). A project
// or group whose webhooks the token may not read, or a GitLab without the
// events API, is said once in an error, then passed over.
func (w *Webhook) Deliveries(ctx context.Context, since func(log string) time.Time, fn func(connectors.Delivery) error) error {
	if !w.RedeliversFailed() {
		return core.Errorf(core.KindInvalid, "connector has no GitLab API and projects or groups")
	}
	var told []error
	err := w.eachOwnHooks(ctx, func(o hookOwner, hooks []glHook) error {
		for _, h := range hooks {
			err := w.hookEvents(ctx, o, h, since(hookLog(o, h)), fn)
			if errors.Is(err, connectors.ErrUnread) {
				told = append(told, err) // the other webhooks are still read
				continue
			}
			if errors.Is(err, errNoEventsAPI) {
				if _, done := w.noEventsAPI.LoadOrStore(o.key, true); !done {
					told = append(told, err)
				}
				return nil
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	return errors.Join(err, errors.Join(told...))
}

// hookLog names webhook h's event log: "<project id>/<hook id>", or
// "groups/<escaped group path>/<hook id>".
func hookLog(o hookOwner, h glHook) string { return o.log + "/" + h.ID.String() }

// eventPages bounds the pages of a webhook's events one run reads (100
// events a page): a webhook logs every job's every status, so an outage
// of a busy project's hours can hold thousands.
const eventPages = 100

// hookEvents calls fn with webhook h's events from the newest back to
// since, reading at most eventPages pages; when those end before since,
// an ErrUnread says from when on the events were read.
func (w *Webhook) hookEvents(ctx context.Context, o hookOwner, h glHook, since time.Time, fn func(connectors.Delivery) error) error {
	path := o.base + "/hooks/" + url.PathEscape(h.ID.String()) + "/events"
	what := o.what + " hook " + h.ID.String() + " events"
	read, oldest := 0, time.Time{}
	pages := w.api.maxPages(eventPages)
	for page := 1; ; page++ {
		if page > pages {
			return connectors.Unread(what, read, since, oldest, "GitLab deployments among them are still found by the poller")
		}
		var evs []glHookEvent
		hdr, err := w.api.get(ctx, path+"?per_page=100&page="+strconv.Itoa(page), what, &evs)
		var se *apiclient.StatusError
		if errors.As(err, &se) && se.Status == http.StatusNotFound && page == 1 {
			return core.Wrap(core.KindInvalid, errNoEventsAPI, err.Error())
		}
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if ev.CreatedAt.Before(since) {
				return nil // newest first: the rest are older still
			}
			read, oldest = read+1, ev.CreatedAt
			status, _ := strconv.Atoi(ev.ResponseStatus) // "internal error": no answer, 0
			if err := fn(connectors.Delivery{
				ID: hookLog(o, h) + "/" + ev.ID.String(), Log: hookLog(o, h), GUID: eventKey(ev.RequestHeaders),
				At: ev.CreatedAt.UTC(), StatusCode: status, OK: status >= 200 && status < 300, Event: ev.Trigger,
			}); err != nil {
				return err
			}
		}
		if hdr.Get("X-Next-Page") == "" || len(evs) == 0 {
			return nil
		}
	}
}

// eventKey is an event's delivery id as Classify reads it from the
// headers sent: Idempotency-Key, else X-Gitlab-Event-UUID.
func eventKey(headers map[string]string) string {
	for _, want := range []string{HeaderIdempotencyKey, HeaderEventUUID} {
		for k, v := range headers {
			if strings.EqualFold(k, want) && v != "" {
				return v
			}
		}
	}
	return ""
}

// Redeliver implements service.DeliveryLog: it asks GitLab to send event
// d again (POST /projects/:id/hooks/:hook_id/events/:event_id/resend).
func (w *Webhook) Redeliver(ctx context.Context, d connectors.Delivery) error {
	if w.api == nil {
		return core.Errorf(core.KindInvalid, "connector has no GitLab API configured")
	}
	base, what := "/api/v4/projects/", "project "
	id := d.ID
	if g, ok := strings.CutPrefix(id, "groups/"); ok {
		base, what, id = "/api/v4/groups/", "group ", g
	}
	parts := strings.Split(id, "/")
	if len(parts) != 3 {
		return core.Errorf(core.KindInvalid, "%q is not a GitLab webhook event", d.ID)
	}
	owner, err := url.PathUnescape(parts[0]) // a group's path is kept escaped in the id
	if err != nil {
		return core.Errorf(core.KindInvalid, "%q is not a GitLab webhook event", d.ID)
	}
	// Safe to repeat: a second resend sends the event again, with the
	// same Idempotency-Key, and the inbox stores it once.
	err = w.api.post(ctx, base+url.PathEscape(owner)+"/hooks/"+url.PathEscape(parts[1])+"/events/"+url.PathEscape(parts[2])+"/resend",
		nil, what+owner+" hook "+parts[1]+" event "+parts[2]+" resend")
	var se *apiclient.StatusError
	if errors.As(err, &se) && se.Status == http.StatusUnprocessableEntity && strings.Contains(strings.ToLower(se.Message), "disabled") {
		// GitLab sends nothing through a webhook it holds disabled, a
		// resend included ("Hook disabled"): not a refusal of this event,
		// which is asked for again once GitLab enables the webhook.
		return core.Wrap(core.KindUnavailable, errors.Join(connectors.ErrDeferred, err), "the webhook is disabled")
	}
	return err
}
