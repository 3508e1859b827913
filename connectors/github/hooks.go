package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
)

// A repository's or organization's own webhook (Settings → Webhooks) is
// sent once, as the App's is: a delivery that found tollgate away is not
// sent again unless asked. With the App installed on them and granted the
// Webhooks permission (repository: read and write; organization: read and
// write), the App's installation lists each webhook's deliveries (GET
// /repos/{owner}/{repo}/hooks/{id}/deliveries, /orgs/{org}/hooks/…) and
// redelivers one (POST …/deliveries/{id}/attempts). The connector's
// repositories and organizations name whose webhooks to read.

// repoHook is a repository or organization webhook as GitHub lists it.
type repoHook struct {
	ID     int64    `json:"id"`
	Active bool     `json:"active"`
	Events []string `json:"events"`
	Config struct {
		URL         string `json:"url"`
		ContentType string `json:"content_type"`
		InsecureSSL any    `json:"insecure_ssl"` // "0"/"1", or a number
	} `json:"config"`
}

// errHooksForbidden marks the error of an owner whose webhooks the App
// may not read.
var errHooksForbidden = errors.New("the App may not read its webhooks (grant it the Webhooks permission, read and write, and install it there): their failed deliveries are not redelivered")

// ownerDeliveries calls fn with the attempts of each configured owner's
// webhooks that point at this connector, each webhook its own log.
func (w *Webhook) ownerDeliveries(ctx context.Context, since func(string) time.Time, fn func(connectors.Delivery) error) error {
	var told []error
	for _, owner := range w.owners {
		if _, skip := w.hooksForbidden.Load(owner); skip {
			continue
		}
		token, hooks, err := w.ownHooks(ctx, owner)
		if errors.Is(err, errHooksForbidden) {
			told = append(told, err)
			continue
		}
		if err != nil {
			return err
		}
		for _, h := range hooks {
			log := owner + "/hooks/" + strconv.FormatInt(h.ID, 10)
			err := w.app.deliveries(ctx, "/"+log+"/deliveries", "Bearer "+token, log+" deliveries", since(log), func(d connectors.Delivery) error {
				d.ID, d.Log = log+"/deliveries/"+d.ID, log
				return fn(d)
			})
			if errors.Is(err, connectors.ErrUnread) {
				told = append(told, err) // the other webhooks are still read
				continue
			}
			if err != nil {
				return w.app.refusedToken(w.installation(owner), err)
			}
		}
	}
	return errors.Join(told...)
}

// ownHooks returns an installation token for owner and those of its
// webhooks whose URL is this connector's. An owner the App is not
// installed on, or whose webhooks it may not read, gets
// errHooksForbidden once: it is passed over after it.
func (w *Webhook) ownHooks(ctx context.Context, owner string) (string, []repoHook, error) {
	token, err := w.ownerToken(ctx, owner)
	var hooks []repoHook
	if err == nil {
		err = w.app.do(ctx, http.MethodGet, "/"+owner+"/hooks?per_page=100", "Bearer "+token, nil, owner+" webhooks", &hooks)
	}
	if st := apiclient.Status(err); st == http.StatusForbidden || st == http.StatusNotFound {
		w.hooksForbidden.Store(owner, true)
		return "", nil, core.Wrap(core.KindInvalid, errHooksForbidden, err.Error())
	}
	if err != nil {
		return "", nil, err
	}
	own := hooks[:0]
	for _, h := range hooks {
		if connectors.PointsAt(h.Config.URL, w.name) {
			own = append(own, h)
		}
	}
	return token, own, nil
}

// ownerToken returns an access token of the App's installation on owner
// (GET /repos/{owner}/{repo}/installation or /orgs/{org}/installation,
// as the App, found once).
func (w *Webhook) ownerToken(ctx context.Context, owner string) (string, error) {
	if inst := w.installation(owner); inst != "" {
		return w.app.installationToken(ctx, inst)
	}
	signed, err := w.app.appJWT()
	if err != nil {
		return "", err
	}
	var out struct {
		ID int64 `json:"id"`
	}
	if err := w.app.do(ctx, http.MethodGet, "/"+owner+"/installation", "Bearer "+signed, nil, owner+" installation", &out); err != nil {
		return "", err
	}
	inst := strconv.FormatInt(out.ID, 10)
	w.installs.Store(owner, inst)
	return w.app.installationToken(ctx, inst)
}

// installation is owner's App installation id when known, else "".
func (w *Webhook) installation(owner string) string {
	if v, ok := w.installs.Load(owner); ok {
		return v.(string)
	}
	return ""
}

// ownedDelivery is the id of an attempt of an owner's webhook:
// repos/{owner}/{repo}/hooks/{id}/deliveries/{id} or
// orgs/{org}/hooks/{id}/deliveries/{id}.
var ownedDelivery = regexp.MustCompile(`^((?:repos/[^/]+/[^/]+|orgs/[^/]+))/hooks/[0-9]+/deliveries/[0-9]+$`)

// redeliverOwned asks GitHub to send an owner's webhook's attempt d again,
// as the App's installation on the owner.
func (w *Webhook) redeliverOwned(ctx context.Context, d connectors.Delivery) error {
	m := ownedDelivery.FindStringSubmatch(d.ID)
	if m == nil || !strings.HasPrefix(d.ID, d.Log+"/") {
		return core.Invalid("delivery", "%q is not a repository or organization webhook delivery", d.ID)
	}
	owner := m[1]
	token, err := w.ownerToken(ctx, owner)
	if err != nil {
		return err
	}
	// Safe to repeat: a second attempt carries the same X-GitHub-Delivery,
	// and the inbox stores it once.
	err = w.app.do(apiclient.Idempotent(ctx), http.MethodPost, "/"+pathEscapeAll(d.ID)+"/attempts", "Bearer "+token, nil, "redeliver "+d.ID, nil)
	return w.app.refusedToken(w.installation(owner), err)
}

// pathEscapeAll escapes each segment of a slash-separated path.
func pathEscapeAll(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// checkOwner is the preflight of one configured repository or
// organization ("repository acme/payments", "organization acme"): the App
// is installed there and may read its webhooks, and one of them points at
// the connector, active, sending JSON and the events the profiles read.
func (w *Webhook) checkOwner(ctx context.Context, owner string, in connectors.PreflightInput) []connectors.Finding {
	check := strings.Replace(strings.Replace(owner, "repos/", "repository ", 1), "orgs/", "organization ", 1)
	_, hooks, err := w.ownHooks(ctx, owner)
	w.hooksForbidden.Delete(owner) // the doctor's look is not the redeliverer's "said once"
	switch {
	case errors.Is(err, errHooksForbidden):
		return []connectors.Finding{connectors.Warn(check, "the App is not installed there or may not read its webhooks: "+
			"grant it the Webhooks permission (read and write) and install it there, or its failed deliveries are not redelivered")}
	case err != nil:
		return []connectors.Finding{connectors.Fail(check, err.Error())}
	case len(hooks) == 0:
		return []connectors.Finding{connectors.Warn(check, "no webhook there points at …/webhooks/"+w.name+": it sends tollgate nothing (or only through the App)")}
	}
	var out []connectors.Finding
	for _, h := range hooks {
		id := "hook " + strconv.FormatInt(h.ID, 10)
		if !h.Active {
			out = append(out, connectors.Fail(check, id+" is inactive: GitHub sends nothing through it; activate it in the webhook's settings"))
		}
		if h.Config.ContentType != "json" {
			out = append(out, connectors.Fail(check, id+" sends "+orDefault(h.Config.ContentType, "form")+": tollgate refuses form-encoded deliveries; set its content type to application/json"))
		}
		if missing := missingEvents(h.Events, in); len(missing) > 0 {
			out = append(out, connectors.Warn(check, id+" does not send "+strings.Join(missing, ", ")+", which the connector's profiles read"))
		}
		if v, _ := h.Config.InsecureSSL.(string); v == "1" || h.Config.InsecureSSL == float64(1) {
			out = append(out, connectors.Warn(check, id+" has SSL verification disabled: GitHub does not verify tollgate's TLS certificate"))
		}
	}
	if len(out) > 0 {
		return out
	}
	return []connectors.Finding{connectors.OK(check, fmt.Sprintf("%d webhook(s) point here, active, sending JSON", len(hooks)))}
}

// missingEvents are the events the connector reads that a webhook
// subscribed to events does not send ("*" sends every one).
func missingEvents(events []string, in connectors.PreflightInput) []string {
	if slices.Contains(events, "*") {
		return nil
	}
	var out []string
	for _, e := range in.Events {
		if e != "deployment_protection_rule" && !slices.Contains(events, e) { // an App's event only
			out = append(out, e)
		}
	}
	return out
}
