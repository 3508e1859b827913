package gitlab

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
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

// HookStates implements service.HookWatcher: for each configured project,
// the state of each of its webhooks whose URL is this connector's
// (…/webhooks/<name>), or an "absent" state when none is. Reading a
// project's webhooks needs the Maintainer role: a project whose webhooks
// the token may not read is said once in an error, then passed over.
func (w *Webhook) HookStates(ctx context.Context) ([]connectors.HookState, error) {
	if !w.Polls() {
		return nil, nil
	}
	var out []connectors.HookState
	err := w.eachOwnHooks(ctx, func(ref string, _ glProject, hooks []glHook) error {
		for _, h := range hooks {
			s := connectors.HookState{Where: "project " + ref + " hook " + h.ID.String(), Status: h.AlertStatus}
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
			out = append(out, connectors.HookState{Where: "project " + ref, Disabled: true, Status: "absent"})
		}
		return nil
	})
	return out, err
}

// eachOwnHooks calls fn with each configured project and those of its
// webhooks that point at this connector, passing over a project whose
// webhooks the token may not read: that is said once, in the error
// returned after the others.
func (w *Webhook) eachOwnHooks(ctx context.Context, fn func(ref string, p glProject, hooks []glHook) error) error {
	var errs []error
	for _, ref := range w.projects {
		if _, ok := w.hooksForbidden.Load(ref); ok {
			continue
		}
		p, hooks, err := w.ownHooks(ctx, ref)
		if errors.Is(err, errHooksForbidden) {
			errs = append(errs, err)
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(ref, p, hooks); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// errHooksForbidden marks the error of a project whose webhooks the token
// may not read.
var errHooksForbidden = errors.New("the token may not read them (that needs the Maintainer role): their state is not watched and their failed deliveries are not resent")

// ownHooks returns project ref and those of its webhooks whose URL is this
// connector's. A token that may not read them (403, or 404 where GitLab
// hides the list) gets errHooksForbidden, once: the project is passed
// over after it.
func (w *Webhook) ownHooks(ctx context.Context, ref string) (glProject, []glHook, error) {
	p, err := w.project(ctx, ref)
	if err != nil {
		return p, nil, err
	}
	var hooks []glHook
	_, err = w.api.get(ctx, "/api/v4/projects/"+url.PathEscape(p.ID.String())+"/hooks?per_page=100", "project "+ref+" webhooks", &hooks)
	var se *apiclient.StatusError
	if errors.As(err, &se) && (se.Status == http.StatusForbidden || se.Status == http.StatusNotFound) {
		w.hooksForbidden.Store(ref, true)
		return p, nil, core.Wrap(core.KindInvalid, errHooksForbidden, err.Error())
	}
	if err != nil {
		return p, nil, err
	}
	own := hooks[:0]
	for _, h := range hooks {
		if w.pointsHere(h.URL) {
			own = append(own, h)
		}
	}
	return p, own, nil
}

// pointsHere reports whether a webhook URL is this connector's.
func (w *Webhook) pointsHere(raw string) bool { return connectors.PointsAt(raw, w.name) }
