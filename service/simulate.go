package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/core"
)

// SimulateStore is what the what-if simulation reads: the recorded
// deployments and gate checks of a period, and the facts as of a moment.
type SimulateStore interface {
	// ReconcileScan streams deployments with their as-of facts: the
	// reconciler's scan (see store.DB.ReconcileScan).
	ReconcileScan(ctx context.Context, q core.ReconcileQuery, keep func(core.Incident) bool, pageSize int, fn func([]core.DeploymentFacts) error) error
	// ListDecisionsBetween lists the decisions of [from, to), of one
	// environment when env is set, oldest first, at most limit.
	ListDecisionsBetween(ctx context.Context, from, to time.Time, env string, limit int) ([]core.GateDecision, error)
	GateFacts(ctx context.Context, q core.FactsQuery) (core.Facts, error)
}

// Simulator answers "what would this policy have done?" before it is
// saved: it evaluates a proposed policy and the policy in force over the
// recorded deployments of a period — read by the reconciler's own scan and
// judged by the reconciler (core.ReconcileEvaluate) at each start with the
// facts as they stood then, so a simulation with the policy in force
// agrees with a reconciliation report — and over the releases checked at
// the gate in the period that never reported a deployment (at their last
// check).
type Simulator struct {
	store    SimulateStore
	policies *Policies
	// Clock is the data cut-off's clock (nil: the system clock).
	Clock core.Clock
	// limit is the cap on what one answer reads (0: MaxSimulated).
	limit int
}

// NewSimulator wires the simulation.
func NewSimulator(store SimulateStore, policies *Policies) *Simulator {
	return &Simulator{store: store, policies: policies}
}

// MaxSimulated bounds the deployments and gate checks one simulation (or
// observe report) reads; an answer cut short by it says so (truncated).
const MaxSimulated = 20000

// Outcome is one policy's answer.
type Outcome struct {
	Decision core.Decision `json:"decision"`
	WouldBe  core.Decision `json:"would_be,omitempty"`
	Reasons  []core.Reason `json:"reasons"`
	// Findings are, for a deployment, the codes a reconciliation report
	// gives it under the policy (the gate's reasons and the reconcile-only
	// rules: GATE_BYPASSED, the emergency timers), in report order.
	Findings []string `json:"findings,omitempty"`
}

// SimulatedRelease is one deployment (or gate-checked release) judged by
// both policies.
type SimulatedRelease struct {
	Source       string    `json:"source"` // deployment or gate_check
	DeploymentID string    `json:"deployment_id,omitempty"`
	DecisionID   string    `json:"decision_id,omitempty"`
	ReleaseID    string    `json:"release_id"`
	Service      string    `json:"service"`
	Environment  string    `json:"environment"`
	Version      string    `json:"version"`
	At           time.Time `json:"at"`
	InForce      Outcome   `json:"in_force"`
	Proposed     Outcome   `json:"proposed"`
	Changed      bool      `json:"changed"`
}

// SimulationSummary counts the answers of both policies.
type SimulationSummary struct {
	Releases int                   `json:"releases"`
	Changed  int                   `json:"changed"`
	InForce  map[core.Decision]int `json:"in_force"`
	Proposed map[core.Decision]int `json:"proposed"`
	// PolicyVersion is the version in force it was compared with.
	PolicyVersion int `json:"policy_version"`
	// Truncated is set when the period held more than MaxSimulated
	// deployments or gate checks: the releases after them were not judged.
	Truncated bool `json:"truncated,omitempty"`
}

// SimulateInput is the request: the proposed policy document (YAML or
// JSON), the period [From, To) and optionally one environment.
type SimulateInput struct {
	Policy      []byte
	From, To    time.Time
	Environment string
}

// Prepare validates the input and compiles the proposed policy, before
// anything is streamed.
func (s *Simulator) Prepare(ctx context.Context, in SimulateInput) (*core.CompiledPolicy, error) {
	pol, err := config.ParsePolicy(in.Policy)
	if err != nil {
		return nil, err
	}
	proposed, err := core.Compile(pol, 0)
	if err != nil {
		return nil, err
	}
	switch {
	case in.From.IsZero() || in.To.IsZero():
		return nil, core.Invalid("from", "from and to are required (RFC 3339)")
	case !in.From.Before(in.To):
		return nil, core.Invalid("to", "must be after from")
	}
	if _, err := s.simulatedEnvironment(ctx, s.policies.Current(), proposed, in.Environment); err != nil {
		return nil, err
	}
	return proposed, nil
}

// simulatedEnvironment resolves a simulation's environment filter: a name
// or alias the proposed policy knows (it may add an environment) that the
// policy in force does not, else as the policy in force resolves a read of
// history (Policies.HistoryEnvironment: its names, then those the stored
// records carry); "" is every environment. A name none knows is a mistake
// (400), not a period without releases.
func (s *Simulator) simulatedEnvironment(ctx context.Context, current, proposed *core.CompiledPolicy, env string) (string, error) {
	if _, known := current.ResolveEnvironment(env); !known {
		if canonical, ok := proposed.ResolveEnvironment(env); ok {
			return canonical, nil
		}
	}
	return s.policies.HistoryEnvironment(ctx, current, "environment", env)
}

// Run judges the period with both policies, calling emit for each release
// in time order, and returns the counts.
func (s *Simulator) Run(ctx context.Context, proposed *core.CompiledPolicy, in SimulateInput, emit func(SimulatedRelease) error) (SimulationSummary, error) {
	current := s.policies.Current()
	sum := SimulationSummary{InForce: map[core.Decision]int{}, Proposed: map[core.Decision]int{}, PolicyVersion: current.Version()}
	env, err := s.simulatedEnvironment(ctx, current, proposed, in.Environment)
	if err != nil {
		return sum, err
	}
	deployed := map[string]bool{}
	clock := s.Clock
	if clock == nil {
		clock = core.SystemClock
	}
	cutoff := clock.Now().UTC().Truncate(time.Microsecond)
	q := core.ReconcileQuery{From: in.From.UTC(), To: in.To.UTC(), Environment: env, Cutoff: cutoff,
		SkipEvidence: !current.RequiresAnyEvidence() && !proposed.RequiresAnyEvidence()}
	keep := func(i core.Incident) bool { return current.IsMajor(i) || proposed.IsMajor(i) }
	inOpts, propOpts := current.ReconcileOptions(), proposed.ReconcileOptions()
	n, limit := 0, s.bound()
	err = s.store.ReconcileScan(ctx, q, keep, 0, func(page []core.DeploymentFacts) error {
		for _, df := range page {
			if n++; n > limit {
				return errSimulationFull
			}
			inF, inDec := core.ReconcileEvaluate(current, df, cutoff, inOpts)
			propF, propDec := core.ReconcileEvaluate(proposed, df, cutoff, propOpts)
			d := &df.Deployment
			item := SimulatedRelease{Source: "deployment", DeploymentID: d.ID, ReleaseID: inDec.ReleaseID,
				Service: inDec.Request.Service, Environment: inDec.Request.Environment, Version: inDec.Request.Version, At: d.StartedAt,
				InForce:  Outcome{Decision: inDec.Decision, WouldBe: inDec.WouldBe, Reasons: inDec.Reasons, Findings: findingCodes(inF)},
				Proposed: Outcome{Decision: propDec.Decision, WouldBe: propDec.WouldBe, Reasons: propDec.Reasons, Findings: findingCodes(propF)},
			}
			item.Changed = effective(item.InForce) != effective(item.Proposed)
			deployed[item.ReleaseID] = true
			if err := s.count(&sum, item, emit); err != nil {
				return err
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, errSimulationFull):
		sum.Truncated = true
	case err != nil:
		return sum, err
	}
	decs, err := s.store.ListDecisionsBetween(ctx, in.From, in.To, env, limit+1)
	if err != nil {
		return sum, err
	}
	if len(decs) > limit {
		decs, sum.Truncated = decs[:limit], true
	}
	last := map[string]int{}
	for i, d := range decs {
		last[d.ReleaseID] = i
	}
	for i, d := range decs {
		if last[d.ReleaseID] != i || deployed[d.ReleaseID] {
			continue
		}
		item, err := s.judge(ctx, current, proposed, d.Request, d.EvaluatedAt)
		if err != nil {
			return sum, err
		}
		item.Source, item.DecisionID = "gate_check", d.ID
		if err := s.count(&sum, item, emit); err != nil {
			return sum, err
		}
	}
	return sum, nil
}

// bound is the most deployments, and the most gate checks, one answer reads.
func (s *Simulator) bound() int {
	if s.limit > 0 {
		return s.limit
	}
	return MaxSimulated
}

// errSimulationFull stops the scan after MaxSimulated deployments.
var errSimulationFull = errors.New("simulation: deployment bound reached")

// findingCodes are the codes of a deployment's findings, in order.
func findingCodes(fs []core.ReconcileFinding) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.Code)
	}
	return out
}

func (s *Simulator) count(sum *SimulationSummary, item SimulatedRelease, emit func(SimulatedRelease) error) error {
	sum.Releases++
	sum.InForce[effective(item.InForce)]++
	sum.Proposed[effective(item.Proposed)]++
	if item.Changed {
		sum.Changed++
	}
	return emit(item)
}

// effective is what enforcing answers (observe mode's would_be).
func effective(o Outcome) core.Decision {
	if o.WouldBe != "" {
		return o.WouldBe
	}
	return o.Decision
}

// judge evaluates both policies on the facts as of at.
func (s *Simulator) judge(ctx context.Context, current, proposed *core.CompiledPolicy, req core.GateRequest, at time.Time) (SimulatedRelease, error) {
	creq, _ := proposed.CanonicalRequest(req)
	id := core.ReleaseID(creq.Service, creq.Version, creq.Environment)
	facts, err := s.store.GateFacts(ctx, core.FactsQuery{
		Service: creq.Service, Team: creq.Team, Environment: creq.Environment, Version: creq.Version, ChangeKeys: req.Changes,
		AllIncidents: current.IncidentScopeAll() || proposed.IncidentScopeAll(), AsOf: at, ExcludeReleaseID: id, Commit: creq.Commit, Evidence: true,
	})
	if err != nil {
		return SimulatedRelease{}, fmt.Errorf("facts of %s %s as of %s: %w", req.Service, req.Version, at.Format(time.RFC3339), err)
	}
	facts.Request, facts.ReleaseID = req, id
	in, out := core.Evaluate(current, facts, at), core.Evaluate(proposed, facts, at)
	return SimulatedRelease{ReleaseID: id, Service: creq.Service, Environment: creq.Environment, Version: creq.Version, At: at,
		InForce:  Outcome{Decision: in.Decision, WouldBe: in.WouldBe, Reasons: in.Reasons},
		Proposed: Outcome{Decision: out.Decision, WouldBe: out.WouldBe, Reasons: out.Reasons},
		Changed:  effective(Outcome{Decision: in.Decision, WouldBe: in.WouldBe}) != effective(Outcome{Decision: out.Decision, WouldBe: out.WouldBe}),
	}, nil
}

// Observed is one check answered in observe mode that enforcing would
// have blocked.
type Observed struct {
	DecisionID  string        `json:"decision_id"`
	ReleaseID   string        `json:"release_id"`
	Service     string        `json:"service"`
	Environment string        `json:"environment"`
	Version     string        `json:"version"`
	EvaluatedAt time.Time     `json:"evaluated_at"`
	WouldBe     core.Decision `json:"would_be"`
	Reasons     []core.Reason `json:"reasons"`
}

// ObserveReport is what observe mode let through in a period.
type ObserveReport struct {
	Items []Observed `json:"items"`
	// Truncated is set when the period held more than MaxSimulated gate
	// checks: the checks after them were not read.
	Truncated bool `json:"truncated,omitempty"`
}

// WouldHaveBlocked lists the gate checks of [from, to) (of one environment
// when env is set: a name or alias the policy in force knows, else
// KindInvalid) that observe mode allowed and enforcing would have answered
// wait or deny, oldest first, at most MaxSimulated checks read.
func (s *Simulator) WouldHaveBlocked(ctx context.Context, from, to time.Time, env string) (ObserveReport, error) {
	out := ObserveReport{Items: []Observed{}}
	switch {
	case from.IsZero() || to.IsZero():
		return out, core.Invalid("from", "from and to are required (RFC 3339)")
	case !from.Before(to):
		return out, core.Invalid("to", "must be after from")
	}
	env, err := s.policies.HistoryEnvironment(ctx, s.policies.Current(), "environment", env)
	if err != nil {
		return out, err
	}
	limit := s.bound()
	decs, err := s.store.ListDecisionsBetween(ctx, from, to, env, limit+1)
	if err != nil {
		return out, err
	}
	if len(decs) > limit {
		decs, out.Truncated = decs[:limit], true
	}
	for _, d := range decs {
		if d.WouldBe == "" {
			continue
		}
		out.Items = append(out.Items, Observed{DecisionID: d.ID, ReleaseID: d.ReleaseID, Service: d.Request.Service, Environment: d.Request.Environment,
			Version: d.Request.Version, EvaluatedAt: d.EvaluatedAt, WouldBe: d.WouldBe, Reasons: d.Reasons})
	}
	return out, nil
}
