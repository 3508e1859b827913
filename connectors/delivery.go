package connectors

import (
	"errors"
	"fmt"
	"time"
)

// Delivery is one attempt of a sender to deliver a webhook, as the
// sender's own API lists it (a GitHub App's webhook deliveries, a GitLab
// project webhook's events: neither CI sends one again by itself).
type Delivery struct {
	// ID names the attempt at the sender: what a redelivery asks for.
	ID string
	// GUID is the delivery's id, the same in every attempt of it
	// (X-GitHub-Delivery; GitLab's Idempotency-Key): the inbox's dedupe
	// key.
	GUID string
	// Log names the sender's log the attempt is in when it keeps several
	// (GitLab: one per webhook, "<project id>/<hook id>"); "" when it keeps
	// one (a GitHub App). The redeliverer keeps a watermark per log.
	Log string
	// At is when the attempt was made.
	At time.Time
	// StatusCode is the HTTP status the sender got; 0 when it got none
	// (the connection refused or reset, no answer in time).
	StatusCode int
	// OK reports whether the sender counts the attempt delivered.
	OK bool
	// Redelivery reports whether the attempt was a redelivery.
	Redelivery bool
	// Event and Action say what it carried (deployment_protection_rule,
	// requested).
	Event, Action string
}

// ErrDeferred marks a redelivery the sender cannot make now but will
// later (GitLab holding the webhook disabled): not a refusal of the
// delivery, and no reason to hold up the others.
var ErrDeferred = errors.New("the sender cannot send this delivery again until later")

// ErrUnread marks a delivery log read only in part: the sender lists it
// newest first, and the run's page limit came before the log's
// watermark, so attempts older than those read were not seen. A sender's
// Deliveries returns it (joined with others) after handing on what it
// read; the redeliverer goes on with those and reports the rest as
// unread, since no later run reaches them either.
var ErrUnread = errors.New("delivery log read only in part")

// Unread is the ErrUnread of the log what, read only as far as the run's
// page limit: read attempts since since, the oldest of them at oldest;
// note says where the older ones can still be seen.
func Unread(what string, read int, since, oldest time.Time, note string) error {
	return fmt.Errorf("%w: %s: more than %d since %s; those read go back to %s, and the failed deliveries among older ones are not sent again (%s)",
		ErrUnread, what, read, since.UTC().Format(time.RFC3339), oldest.UTC().Format(time.RFC3339), note)
}

// SplitUnread returns the ErrUnread errors joined in err, and whether err
// holds no other.
func SplitUnread(err error) (unread []error, only bool) {
	if err == nil {
		return nil, false
	}
	only = true
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if errors.Is(e, ErrUnread) {
			unread = append(unread, e)
		} else {
			only = false
		}
	}
	walk(err)
	return unread, only
}

// Transient reports whether the attempt failed in a way another attempt
// may not: no answer, a timeout, rate limiting or a server error. A
// refusal (a bad signature, a body too large or malformed) is the
// receiver's answer and would be given again.
func (d Delivery) Transient() bool {
	switch c := d.StatusCode; {
	case d.OK:
		return false
	case c == 0, c == 408, c == 425, c == 429:
		return true
	default:
		return c >= 500
	}
}

// HookState is how a sender holds a webhook of its that points at a
// connector. A sender that disables a webhook after failed deliveries
// (GitLab) sends nothing through it until it is enabled again.
type HookState struct {
	// Where names the webhook at the sender ("project acme/payments hook 12").
	Where string
	// Disabled reports whether the sender sends nothing through it now.
	Disabled bool
	// Until is when the sender enables it again by itself; zero when it
	// does not (a person must).
	Until time.Time
	// Status is the sender's own word for the state (GitLab's
	// alert_status), or "absent": no webhook points at the connector.
	Status string
}
