package service

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// HoldStore is what Holds needs from storage.
type HoldStore interface {
	CreateHold(ctx context.Context, h core.Hold, actor string) (core.Hold, error)
	RecordedTeamServices(ctx context.Context, team string) ([]string, error)
	LiftHold(ctx context.Context, id, actor string, at time.Time) (core.Hold, error)
	ListHolds(ctx context.Context, all bool, now time.Time) ([]core.Hold, error)
}

// Holds places and lifts change managers' holds (HOLD): every gate check
// for a held service, team or environment waits until the hold is lifted
// or expires.
type Holds struct {
	store    HoldStore
	policies *Policies
	clock    core.Clock
}

// NewHolds wires the hold service.
func NewHolds(store HoldStore, policies *Policies, clock core.Clock) *Holds {
	return &Holds{store: store, policies: policies, clock: clock}
}

// HoldInput is a hold request.
type HoldInput struct {
	Scope  string     `json:"scope"`
	Name   string     `json:"name"`
	Reason string     `json:"reason"`
	Until  *time.Time `json:"until,omitempty"`
}

// Place validates and stores a hold (audited). An environment is named
// canonically (aliases resolve); an unknown one is refused, as are a
// missing reason and an until in the past.
func (h *Holds) Place(ctx context.Context, in HoldInput, actor string) (core.Hold, error) {
	in.Scope, in.Name, in.Reason = strings.TrimSpace(in.Scope), strings.TrimSpace(in.Name), strings.TrimSpace(in.Reason)
	if !core.ValidHoldScope(in.Scope) {
		return core.Hold{}, core.Invalid("scope", "%q is not a hold scope; use service, team or environment", in.Scope)
	}
	if err := validateName("name", in.Name, true); err != nil {
		return core.Hold{}, err
	}
	if in.Reason == "" {
		return core.Hold{}, core.Invalid("reason", "is required: say why releases are held")
	}
	if len(in.Reason) > 1000 {
		return core.Hold{}, core.Invalid("reason", "is longer than 1000 characters")
	}
	now := h.clock.Now()
	if in.Until != nil && !in.Until.After(now) {
		return core.Hold{}, core.Invalid("until", "%s is not in the future", in.Until.UTC().Format(time.RFC3339))
	}
	cp := h.policies.Current()
	switch in.Scope {
	case core.HoldScopeEnvironment:
		env, ok := cp.ResolveEnvironment(in.Name)
		if !ok {
			return core.Hold{}, core.Invalid("name", "unknown environment %q; the policy knows %s", in.Name, strings.Join(cp.Environments(), ", "))
		}
		in.Name = env
	case core.HoldScopeService:
		in.Name = cp.Subject(in.Name, "", "").Service
	}
	var services []string
	if in.Scope == core.HoldScopeTeam {
		var err error
		if services, err = h.teamServices(ctx, cp, in.Name); err != nil {
			return core.Hold{}, err
		}
	}
	return h.store.CreateHold(ctx, core.Hold{ID: newID(), Scope: in.Scope, Name: in.Name, Reason: in.Reason, Until: in.Until,
		Services: services, CreatedBy: actor, CreatedAt: now}, actor)
}

// teamServices are the services a hold on team also holds: the catalog's
// for the team, and those recorded with the team (releases, deployments)
// that the catalog does not give to another team. A check of one names
// the team or not as its pipeline likes; the service is what it deploys.
func (h *Holds) teamServices(ctx context.Context, cp *core.CompiledPolicy, team string) ([]string, error) {
	recorded, err := h.store.RecordedTeamServices(ctx, team)
	if err != nil {
		return nil, err
	}
	out := cp.TeamServices(team)
	for _, s := range recorded {
		sub := cp.Subject(s, "", "")
		if sub.Team != "" && !strings.EqualFold(sub.Team, team) {
			continue
		}
		if !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, sub.Service) }) {
			out = append(out, sub.Service)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	return out, nil
}

// Lift ends a hold now (audited with who lifted it).
func (h *Holds) Lift(ctx context.Context, id, actor string) (core.Hold, error) {
	return h.store.LiftHold(ctx, strings.TrimSpace(id), actor, h.clock.Now())
}

// List returns the holds in force (or all ever placed, with all).
func (h *Holds) List(ctx context.Context, all bool) ([]core.Hold, error) {
	return h.store.ListHolds(ctx, all, h.clock.Now())
}
