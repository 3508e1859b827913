package service

import (
	"context"

	"github.com/tollgate-dev/tollgate/connectors"
)

// A CI may stop sending through its webhook to tollgate: GitLab disables
// a project webhook after four failed deliveries in a row (for a minute,
// doubling up to a day) and for good after forty — which a tollgate
// outage of an hour or two brings about. Deliveries then stop without a
// word on either side; the poller brings back the deployments, but gate
// requests wait a poll interval and pipelines and jobs are not seen.
// The poller reads the state of such webhooks after each poll and says
// when one is off and when it is on again.

// HookWatcher is a poll source whose sender may disable its webhooks to
// the connector (connectors/gitlab with projects).
type HookWatcher interface {
	// HookStates returns the state of each webhook of the sender that
	// points at the connector, and of each place that has none.
	HookStates(ctx context.Context) ([]connectors.HookState, error)
}

// CheckHooks reads the state of the source's webhooks, when it has any,
// sets tollgate_ci_webhook_disabled for each, and logs a webhook turned
// off (an error when only a person can turn it on again) or on again,
// and a place with none at the connector's path (a warning).
func (p *Poller) CheckHooks(ctx context.Context) {
	hw, ok := p.src.(HookWatcher)
	if !ok {
		return
	}
	states, err := hw.HookStates(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.log.WarnContext(ctx, "webhook state not read", "connector", p.name, "error", err.Error())
		}
		return
	}
	if p.hooks == nil {
		p.hooks = map[string]bool{}
	}
	for _, s := range states {
		// No project webhook at the connector's path may mean a group
		// webhook, or a proxy that rewrites paths: said once, but no alert
		// is raised on it.
		if p.metrics != nil && s.Status != "absent" {
			v := 0.0
			if s.Disabled {
				v = 1
			}
			p.metrics.HookDisabled.WithLabelValues(p.name, s.Where).Set(v)
		}
		was, seen := p.hooks[s.Where]
		p.hooks[s.Where] = s.Disabled
		switch {
		case s.Disabled && !was && s.Status == "absent":
			p.log.WarnContext(ctx, "no webhook there points at this connector's path (/webhooks/<connector>): unless a group webhook sends its events (list the group in the connector's groups to watch it), or a proxy rewrites the path, it sends tollgate nothing and the poller alone finds its deployments",
				"connector", p.name, "webhook", s.Where)
		case s.Disabled && !was && s.Until.IsZero():
			p.log.ErrorContext(ctx, "the CI has disabled its webhook to tollgate until someone enables it again (after failed deliveries): it sends nothing through it; the poller alone finds its deployments",
				"connector", p.name, "webhook", s.Where, "status", s.Status)
		case s.Disabled && !was:
			p.log.WarnContext(ctx, "the CI has disabled its webhook to tollgate for a while (after failed deliveries): it sends nothing through it until then; the poller finds its deployments meanwhile",
				"connector", p.name, "webhook", s.Where, "status", s.Status, "until", s.Until)
		case !s.Disabled && was && seen:
			p.log.InfoContext(ctx, "the CI's webhook to tollgate sends again", "connector", p.name, "webhook", s.Where, "status", s.Status)
		}
	}
}

// forgetHooks drops the webhooks' gauges once this replica no longer
// polls (another holds the lease, or it stops): the holder reports them,
// and a stale 1 left here would keep an alert firing after the webhook
// is enabled again.
func (p *Poller) forgetHooks() {
	if p.metrics != nil {
		for where := range p.hooks {
			p.metrics.HookDisabled.DeleteLabelValues(p.name, where)
		}
	}
	p.hooks = nil
}
