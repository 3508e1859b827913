package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
)

// tokenExpiryWarning is how far ahead the preflight warns of the token's
// expiry.
const tokenExpiryWarning = 30 * 24 * time.Hour

// glToken is an access token as GET /personal_access_tokens/self shows it
// (personal, project and group access tokens alike).
type glToken struct {
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	ExpiresAt string   `json:"expires_at"` // a date (2026-12-31), or null
	Active    *bool    `json:"active"`
	Revoked   bool     `json:"revoked"`
}

// Preflight implements the doctor's check of the connector against its
// GitLab, with the configured token; it only reads (GET requests), never
// changes anything. In order:
//
//   - "token": GitLab accepts the token (else that is the only finding),
//     its scopes allow what tollgate asks (api with a CI gate, which
//     approves deployments; read_api or api otherwise), and it does not
//     expire within 30 days;
//   - "project <ref>", for each configured project: the token may read it,
//     and a webhook of the project points at the connector, enabled,
//     with SSL verification and sending the events the connector consumes
//     (Deployment Hook with a CI gate).
//
// A connector without an API has nothing to check: nil.
func (w *Webhook) Preflight(ctx context.Context, in connectors.PreflightInput) []connectors.Finding {
	if w.api == nil {
		return nil
	}
	out, goOn := w.checkToken(ctx)
	if !goOn {
		return out
	}
	for _, ref := range w.projects {
		out = append(out, w.checkProject(ctx, ref, in)...)
	}
	for _, ref := range w.groups {
		out = append(out, w.checkGroup(ctx, ref, in)...)
	}
	return out
}

// checkToken is the "token" check; goOn is false when the token can read
// nothing, so checking the projects would only repeat it.
func (w *Webhook) checkToken(ctx context.Context) (out []connectors.Finding, goOn bool) {
	var t glToken
	_, err := w.api.get(ctx, "/api/v4/personal_access_tokens/self", "the token", &t)
	switch apiclient.Status(err) {
	case 0:
		if err != nil {
			return []connectors.Finding{connectors.Fail("token", err.Error())}, false
		}
		return tokenFindings(t, w.gate != nil, time.Now())
	case http.StatusUnauthorized:
		return refused(), false
	case http.StatusNotFound, http.StatusForbidden:
		return w.checkUser(ctx) // an older GitLab, or another kind of token
	}
	return []connectors.Finding{connectors.Fail("token", err.Error())}, false
}

// refused is the finding of a token GitLab refuses.
func refused() []connectors.Finding {
	return []connectors.Finding{connectors.Fail("token",
		"GitLab refused the token (HTTP 401): it is wrong, revoked or expired; tollgate can neither poll nor approve with it")}
}

// checkUser is the "token" check where GitLab does not show the token:
// whose it is (GET /user), its scopes unknown.
func (w *Webhook) checkUser(ctx context.Context) ([]connectors.Finding, bool) {
	var u glUser
	_, err := w.api.get(ctx, "/api/v4/user", "the token's user", &u)
	switch apiclient.Status(err) {
	case 0:
		if err != nil {
			return []connectors.Finding{connectors.Fail("token", err.Error())}, false
		}
	case http.StatusUnauthorized:
		return refused(), false
	case http.StatusForbidden:
		return []connectors.Finding{connectors.Fail("token",
			"the token may not read the API (GitLab answers 403): it needs the read_api or api scope (api with approvals); the projects are not checked")}, false
	default:
		return []connectors.Finding{connectors.Fail("token", err.Error())}, false
	}
	detail := "as " + u.Username + "; scopes not readable"
	if w.gate != nil {
		detail += " (approving deployments needs the api scope)"
	}
	return []connectors.Finding{connectors.OK("token", detail)}, true
}

// tokenFindings judges token t as of now; gate is whether the connector
// approves deployments (which needs the api scope).
func tokenFindings(t glToken, gate bool, now time.Time) (out []connectors.Finding, goOn bool) {
	name := fmt.Sprintf("token %q", t.Name)
	scopes := strings.Join(t.Scopes, ", ")
	hasAPI, hasReadAPI := slices.Contains(t.Scopes, "api"), slices.Contains(t.Scopes, "read_api")
	switch {
	case t.Revoked || (t.Active != nil && !*t.Active):
		return []connectors.Finding{connectors.Fail("token", name+" is revoked or expired: tollgate can neither poll nor approve with it")}, false
	case !hasAPI && !hasReadAPI:
		return []connectors.Finding{connectors.Fail("token", name+" has neither the read_api nor the api scope (it has "+scopes+
			"): it may read nothing tollgate reads; the projects are not checked")}, false
	case gate && !hasAPI:
		out = append(out, connectors.Fail("token", name+" has read_api but not api: approving deployments (the CI gate) needs the api scope"))
	}
	if exp, ok := expiry(t.ExpiresAt); ok && exp.Before(now.Add(tokenExpiryWarning)) {
		out = append(out, connectors.Warn("token", name+" expires on "+exp.Format(time.DateOnly)+
			": tollgate stops polling and approving when it does; rotate it before then"))
	}
	if len(out) == 0 {
		out = append(out, connectors.OK("token", name+" with scopes "+scopes))
	}
	return out, true
}

// expiry reads a token's expires_at (a date; a time on some versions).
func expiry(s string) (time.Time, bool) {
	for _, layout := range []string{time.DateOnly, time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// checkProject is the "project <ref>" check: the project, then its
// webhooks that point at the connector; one OK, or each problem.
func (w *Webhook) checkProject(ctx context.Context, ref string, in connectors.PreflightInput) []connectors.Finding {
	check := "project " + ref
	if _, err := w.project(ctx, ref); err != nil {
		if st := apiclient.Status(err); st == http.StatusNotFound || st == http.StatusForbidden {
			return []connectors.Finding{connectors.Fail(check, "no project "+ref+", or the token may not read it")}
		}
		return []connectors.Finding{connectors.Fail(check, err.Error())}
	}
	_, hooks, err := w.ownHooks(ctx, ref)
	switch {
	case errors.Is(err, errHooksForbidden):
		return []connectors.Finding{connectors.Warn(check, "the token may not read the project's webhooks (that needs the Maintainer role): "+
			"the webhook's state is not watched and its failed events are not resent")}
	case err != nil:
		return []connectors.Finding{connectors.Warn(check, "the webhooks were not checked: "+err.Error())}
	case len(hooks) == 0:
		return []connectors.Finding{connectors.Warn(check, "no webhook of the project points at …/webhooks/"+w.name+
			"; a group's webhook is seen when the group is in the connector's groups")}
	}
	return w.ownHookFindings(check, hooks, in)
}

// checkGroup is the "group <ref>" check: the group's webhooks that point
// at the connector; one OK, or each problem.
func (w *Webhook) checkGroup(ctx context.Context, ref string, in connectors.PreflightInput) []connectors.Finding {
	check := "group " + ref
	_, hooks, err := w.ownHooks(ctx, ref)
	w.hooksForbidden.Delete(ref) // the doctor's look is not the watcher's "said once"
	switch {
	case errors.Is(err, errHooksForbidden):
		return []connectors.Finding{connectors.Warn(check, "no group "+ref+", or the token may not read its webhooks (that needs the Owner role): "+
			"the webhook's state is not watched and its failed events are not resent")}
	case err != nil:
		return []connectors.Finding{connectors.Warn(check, "the webhooks were not checked: "+err.Error())}
	case len(hooks) == 0:
		return []connectors.Finding{connectors.Warn(check, "no webhook of the group points at …/webhooks/"+w.name)}
	}
	return w.ownHookFindings(check, hooks, in)
}

// ownHookFindings judges a project's or group's webhooks that point at the
// connector: one OK naming what each sends, or each problem.
func (w *Webhook) ownHookFindings(check string, hooks []glHook, in connectors.PreflightInput) []connectors.Finding {
	var out []connectors.Finding
	var sends []string
	for _, h := range hooks {
		out = append(out, w.hookFindings(check, h, in)...)
		sends = append(sends, "hook "+h.ID.String()+" sends "+sentEvents(h))
	}
	if len(out) == 0 {
		out = append(out, connectors.OK(check, strings.Join(sends, "; ")))
	}
	return out
}

// hookEvent is one trigger of a webhook the preflight looks at.
type hookEvent struct {
	name string // the X-Gitlab-Event it sends
	on   bool
}

func hookEvents(h glHook) []hookEvent {
	return []hookEvent{{"Deployment Hook", h.DeploymentEvents}, {"Job Hook", h.JobEvents}, {"Pipeline Hook", h.PipelineEvents}}
}

// sentEvents names the events of hookEvents that h sends.
func sentEvents(h glHook) string {
	var on []string
	for _, e := range hookEvents(h) {
		if e.on {
			on = append(on, e.name)
		}
	}
	if len(on) == 0 {
		return "none of Deployment Hook, Job Hook, Pipeline Hook"
	}
	return strings.Join(on, ", ")
}

// hookFindings are the problems of webhook h, which points at the
// connector: its state, its triggers, its SSL verification.
func (w *Webhook) hookFindings(check string, h glHook, in connectors.PreflightInput) []connectors.Finding {
	var out []connectors.Finding
	id := "hook " + h.ID.String()
	switch h.AlertStatus {
	case "disabled":
		out = append(out, connectors.Fail(check, id+" is disabled: GitLab sends nothing through it until a person enables it again (Settings > Webhooks)"))
	case "temporarily_disabled":
		until := "for now"
		if h.DisabledUntil != nil {
			until = "until " + h.DisabledUntil.UTC().Format(time.RFC3339)
		}
		out = append(out, connectors.Warn(check, id+" is temporarily disabled "+until+" after failed deliveries: GitLab sends nothing through it meanwhile"))
	}
	var missing []string
	for _, e := range hookEvents(h) {
		switch {
		case e.on:
		case e.name == "Deployment Hook" && w.gate != nil:
			out = append(out, connectors.Fail(check, id+" does not send Deployment Hook (deployment events): "+
				"deployments blocked for approval are not seen until the poller finds them"))
		case in.Wants(e.name):
			missing = append(missing, e.name)
		}
	}
	if len(missing) > 0 {
		out = append(out, connectors.Warn(check, id+" does not send "+strings.Join(missing, ", ")+
			", which the connector consumes: enable them among the webhook's triggers"))
	}
	if !h.EnableSSLVerification && !strings.HasPrefix(strings.ToLower(h.URL), "http://") {
		out = append(out, connectors.Warn(check, id+" does not verify the TLS certificate of tollgate's endpoint: enable SSL verification"))
	}
	return out
}
