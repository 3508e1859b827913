package gitlab

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
)

// glHook is a project webhook as GET /projects/:id/hooks lists it.
type glHook struct {
	ID            json.Number `json:"id"`
	URL           string      `json:"url"`
	AlertStatus   string      `json:"alert_status"` // executable, temporarily_disabled, disabled
	DisabledUntil *time.Time  `json:"disabled_until"`
	// The triggers the preflight checks (preflight.go).
	DeploymentEvents      bool `json:"deployment_events"`
	JobEvents             bool `json:"job_events"`
	PipelineEvents        bool `json:"pipeline_events"`
	EnableSSLVerification bool `json:"enable_ssl_verification"`
}

// HookStates implements service.HookWatcher: for each configured project
// and group, the state of each of its webhooks whose URL is this
// connector's (…/webhooks/<name>), or an "absent" state when none is.
// Reading a project's webhooks needs the Maintainer role, a group's the
// Owner role: one whose webhooks the token may not read is said once in an
// error, then passed over.
func (w *Webhook) HookStates(ctx context.Context) ([]connectors.HookState, error) {
	if !w.Polls() {
		return nil, nil
	}
	var out []connectors.HookState
	err := w.eachOwnHooks(ctx, func(o hookOwner, hooks []glHook) error {
		for _, h := range hooks {
			s := connectors.HookState{Where: o.what + " hook " + h.ID.String(), Status: h.AlertStatus}
			switch h.AlertStatus {
			case "temporarily_disabled":
				s.Disabled = true
				if h.DisabledUntil != nil {
					s.Until = h.DisabledUntil.UTC()
				}
			case "disabled":
				s.Disabled = true
			}
			out = append(out, s)
		}
		if len(hooks) == 0 {
			out = append(out, connectors.HookState{Where: o.what, Disabled: true, Status: "absent"})
		}
		return nil
	})
	return out, err
}

// hookOwner is a configured project or group, as its webhooks are read:
// what names it ("project acme/payments", "group acme"), base is its API
// path, and log prefixes its webhooks' event logs ("31", the project's
// id; "groups/acme", the group's escaped path).
type hookOwner struct {
	what, base, log string
	key             string // its key in hooksForbidden and noEventsAPI
}

// eachOwnHooks calls fn with each configured project, then each group,
// and those of its webhooks that point at this connector, passing over one
// whose webhooks the token may not read: that is said once, in the error
// returned after the others.
func (w *Webhook) eachOwnHooks(ctx context.Context, fn func(o hookOwner, hooks []glHook) error) error {
	var errs []error
	for _, ref := range append(slices.Clone(w.projects), w.groups...) {
		if _, ok := w.hooksForbidden.Load(ref); ok {
			continue
		}
		o, hooks, err := w.ownHooks(ctx, ref)
		if errors.Is(err, errHooksForbidden) {
			errs = append(errs, err)
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(o, hooks); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// errHooksForbidden marks the error of a project or group whose webhooks
// the token may not read.
var errHooksForbidden = errors.New("the token may not read them (a project's need the Maintainer role, a group's the Owner role): their state is not watched and their failed deliveries are not resent")

// owner returns configured project or group ref as its webhooks are read
// (a project is looked up once, for its id).
func (w *Webhook) owner(ctx context.Context, ref string) (hookOwner, error) {
	if slices.Contains(w.groups, ref) && !slices.Contains(w.projects, ref) {
		esc := url.PathEscape(ref)
		return hookOwner{what: "group " + ref, base: "/api/v4/groups/" + esc, log: "groups/" + esc, key: ref}, nil
	}
	p, err := w.project(ctx, ref)
	if err != nil {
		return hookOwner{}, err
	}
	id := p.ID.String()
	return hookOwner{what: "project " + ref, base: "/api/v4/projects/" + url.PathEscape(id), log: id, key: ref}, nil
}

// ownHooks returns project or group ref and those of its webhooks whose
// URL is this connector's. A token that may not read them (403, or 404
// where GitLab hides the list) gets errHooksForbidden, once: the project
// or group is passed over after it.
func (w *Webhook) ownHooks(ctx context.Context, ref string) (hookOwner, []glHook, error) {
	o, err := w.owner(ctx, ref)
	if err != nil {
		return o, nil, err
	}
	var hooks []glHook
	_, err = w.api.get(ctx, o.base+"/hooks?per_page=100", o.what+" webhooks", &hooks)
	if st := apiclient.Status(err); st == http.StatusForbidden || st == http.StatusNotFound {
		w.hooksForbidden.Store(ref, true)
		return o, nil, core.Wrap(core.KindInvalid, errHooksForbidden, err.Error())
	}
	if err != nil {
		return o, nil, err
	}
	own := hooks[:0]
	for _, h := range hooks {
		if w.pointsHere(h.URL) {
			own = append(own, h)
		}
	}
	return o, own, nil
}

// pointsHere reports whether a webhook URL is this connector's.
func (w *Webhook) pointsHere(raw string) bool { return connectors.PointsAt(raw, w.name) }
