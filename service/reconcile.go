package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// ReconcileStore is what reconciliation reports need from storage.
type ReconcileStore interface {
	// ReconcileScan streams the deployments of q with their as-of facts,
	// a page at a time (see store.DB.ReconcileScan).
	ReconcileScan(ctx context.Context, q core.ReconcileQuery, keep func(core.Incident) bool, pageSize int, fn func([]core.DeploymentFacts) error) error
	CreateReport(ctx context.Context, r core.Report) error
	AddFindings(ctx context.Context, reportID string, fs []core.ReconcileFinding) error
	AddProofs(ctx context.Context, reportID string, ps []core.ControlProof) error
	ReportProofs(ctx context.Context, reportID string, fn func(core.ControlProof) error) error
	// FinishReports marks reports finished, all in one commit.
	FinishReports(ctx context.Context, rs ...core.Report) error
	DeleteReport(ctx context.Context, id string) error
	GetReport(ctx context.Context, id string) (core.Report, error)
	ListReports(ctx context.Context, kind string, limit int, before string) ([]core.Report, error)
	ReportFindings(ctx context.Context, reportID string, fn func(core.ReconcileFinding) error) error
	ReportFindingsOfCode(ctx context.Context, reportID, code string, fn func(core.ReconcileFinding) error) error
	AckFinding(ctx context.Context, reportID string, id int, by, comment string, at time.Time) (core.ReconcileFinding, error)
	IncidentsOpenedBetween(ctx context.Context, from, to time.Time, fn func(core.Incident)) error
	IncidentsByKey(ctx context.Context, keys []string, fn func(core.Incident)) error
	GateOutcomes(ctx context.Context, from, to time.Time, fn func(service, environment, team string, dec core.Decision, n int)) error
	GateWaits(ctx context.Context, from, to time.Time, fn func(service, environment, team string, firstWait, firstAllow time.Time)) error
}

// Reconciler runs and reads reconciliation reports: every deployment of a
// period checked against the records as they stood when it started.
type Reconciler struct {
	store    ReconcileStore
	policies *Policies
	clock    core.Clock
	log      *slog.Logger
	opts     core.ReconcileOptions
	// PageSize is how many deployments are read per page (0: the store's
	// default).
	PageSize int
	// NoStoredVerdicts makes every report judge every deployment of its
	// period, neither reusing nor storing verdicts (see VerdictStore).
	NoStoredVerdicts bool
	// MaxJudgedByID is how many deployments without a stored verdict a
	// report judges by id before it judges its whole period instead (0:
	// 100,000).
	MaxJudgedByID int
	// DeploymentConnectors are the connectors that report deployments: a
	// report counts their quarantined deliveries of its period
	// (core.ReconcileSummary.QuarantinedEvents).
	DeploymentConnectors []string
}

// NewReconciler wires the service. The reconcile-only rules' thresholds
// come from the policy in force (its emergency timers); a non-zero field
// of opts overrides the policy's.
func NewReconciler(store ReconcileStore, policies *Policies, clock core.Clock, log *slog.Logger, opts core.ReconcileOptions) *Reconciler {
	return &Reconciler{store: store, policies: policies, clock: clock, log: log, opts: opts}
}

// maxReportPeriod bounds one report's period.
const maxReportPeriod = 5 * 366 * 24 * time.Hour

// maxAckComment bounds an acknowledgement's comment.
const maxAckComment = 4000

// normalizeQuery validates q against the policy in force: the environment
// resolved to its canonical name (or, one the policy no longer lists, to
// the name its stored records carry), names checked, the period bounded.
func (s *Reconciler) normalizeQuery(ctx context.Context, cp *core.CompiledPolicy, q core.ReconcileQuery) (core.ReconcileQuery, error) {
	if err := q.Validate(); err != nil {
		return q, err
	}
	if q.To.Sub(q.From) > maxReportPeriod {
		return q, core.Invalid("to", "the period is longer than %d days", int(maxReportPeriod.Hours()/24))
	}
	q.Environment, q.Service, q.Team = strings.TrimSpace(q.Environment), strings.TrimSpace(q.Service), strings.TrimSpace(q.Team)
	for _, f := range []struct{ name, v string }{{"environment", q.Environment}, {"service", q.Service}, {"team", q.Team}} {
		if err := validateName(f.name, f.v, false); err != nil {
			return q, err
		}
	}
	if q.Control = strings.TrimSpace(q.Control); q.Control != "" {
		if len(q.Control) > 200 {
			return q, core.Invalid("control", "is longer than 200 characters")
		}
		if !policyNamesControl(cp.Policy(), q.Control) {
			return q, core.Invalid("control", "no evidence requirement of the policy in force carries control %q", q.Control)
		}
	}
	env, err := s.policies.HistoryEnvironment(ctx, cp, "environment", q.Environment)
	if err != nil {
		return q, err
	}
	q.Environment = env
	q.From, q.To = q.From.UTC(), q.To.UTC()
	return q, nil
}

// policyNamesControl reports whether an evidence requirement of p carries
// control (case-insensitively).
func policyNamesControl(p core.Policy, control string) bool {
	for _, e := range p.Environments {
		for _, r := range e.Evidence {
			for _, c := range r.Controls {
				if strings.EqualFold(c, control) {
					return true
				}
			}
		}
	}
	return false
}

// Run reconciles the period of q under the policy in force and stores the
// report (its findings, summary, policy version and data cut-off: now), so
// reading it later gives the same answer. name is the schedule that asked,
// or "". The findings are written a page at a time: memory stays flat
// whatever the period. A run that fails leaves no report behind.
func (s *Reconciler) Run(ctx context.Context, q core.ReconcileQuery, actor, name string) (core.Report, error) {
	r, err := s.Prepare(ctx, q, actor, name, time.Time{})
	if err != nil {
		return core.Report{}, err
	}
	if err := s.Finish(ctx, r); err != nil {
		return core.Report{}, err
	}
	return r, nil
}

// Prepare is Run but for its last step: the report is judged and stored
// unfinished — neither listed nor read, nor its schedule's last run —
// until Finish (or Discard) takes it. cutoff is its data cut-off (zero:
// now): the reports of one scheduled run share their main report's, so
// that the next run reads on from exactly where they read up to.
func (s *Reconciler) Prepare(ctx context.Context, q core.ReconcileQuery, actor, name string, cutoff time.Time) (core.Report, error) {
	return s.prepare(ctx, q, actor, name, cutoff, nil)
}

// prepare is Prepare with keep: which findings the report takes (nil:
// all; see judgeEach).
func (s *Reconciler) prepare(ctx context.Context, q core.ReconcileQuery, actor, name string, cutoff time.Time, keep func(core.ReconcileFinding) bool) (core.Report, error) {
	cp := s.policies.Current()
	q, err := s.normalizeQuery(ctx, cp, q)
	if err != nil {
		return core.Report{}, err
	}
	now := s.clock.Now().UTC().Truncate(time.Microsecond)
	q.Cutoff = now
	if !cutoff.IsZero() {
		q.Cutoff = cutoff.UTC().Truncate(time.Microsecond)
	}
	q.SkipEvidence = !cp.RequiresAnyEvidence()
	opts := s.opts.Over(cp.ReconcileOptions())
	r := core.Report{
		ID: newID(), Kind: core.ReportKindReconciliation, Name: name, Query: q, PolicyVersion: cp.Version(),
		Options: opts, Summary: core.NewReconcileSummary(), CreatedAt: now, CreatedBy: actor,
	}
	if err := s.store.CreateReport(ctx, r); err != nil {
		return core.Report{}, fmt.Errorf("create report: %w", err)
	}
	r.Summary, err = s.judge(ctx, cp, q, opts, r.ID, keep)
	if err == nil {
		r.Summary.QuarantinedEvents, err = s.quarantined(ctx, q)
	}
	if qc, ok := s.store.(QueuedCounter); ok && err == nil && q.RevisedAfter.IsZero() {
		r.Summary.QueuedDeployments, err = qc.CountQueued(ctx, q)
	}
	if err != nil {
		s.Discard(ctx, r)
		return core.Report{}, fmt.Errorf("reconcile %s to %s: %w", q.From.Format(time.RFC3339), q.To.Format(time.RFC3339), err)
	}
	return r, nil
}

// judge judges the deployments of q for report id: with the stored
// verdicts where they serve, else each deployment afresh.
func (s *Reconciler) judge(ctx context.Context, cp *core.CompiledPolicy, q core.ReconcileQuery, opts core.ReconcileOptions, id string, keep func(core.ReconcileFinding) bool) (core.ReconcileSummary, error) {
	// Stored verdicts cover periods, not recording times: a report of late
	// arrivals (or revised findings) judges each of its (few) deployments
	// afresh.
	if vs, ok := s.store.(VerdictStore); ok && keep == nil && q.Control == "" && q.RecordedAfter.IsZero() && q.RevisedAfter.IsZero() && !s.NoStoredVerdicts {
		return s.judgeWithVerdicts(ctx, vs, cp, q, opts, id)
	}
	return s.judgeEach(ctx, cp, q, opts, id, keep)
}

// Finish marks prepared reports finished, all in one commit (a schedule's
// run is done only when all its reports are); when that fails they are
// discarded.
func (s *Reconciler) Finish(ctx context.Context, rs ...core.Report) error {
	if err := s.store.FinishReports(ctx, rs...); err != nil {
		s.Discard(ctx, rs...)
		return fmt.Errorf("finish reports: %w", err)
	}
	for _, r := range rs {
		s.log.InfoContext(ctx, "reconciliation report", "report", r.ID, "deployments", r.Summary.DeploymentsChecked,
			"findings", r.Summary.Findings, "policy_version", r.PolicyVersion, "schedule", r.Name)
	}
	return nil
}

// Discard removes prepared reports and what they wrote. One it cannot
// remove (the database away) stays unfinished, never read, and the
// scheduler removes it once stale.
func (s *Reconciler) Discard(ctx context.Context, rs ...core.Report) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	for _, r := range rs {
		if err := s.store.DeleteReport(dctx, r.ID); err != nil {
			s.log.ErrorContext(ctx, "could not remove a failed report (the scheduler removes it once stale)", "report", r.ID, "error", err)
		}
	}
}

// QuarantineCounter counts the deliveries the inbox quarantined
// (store.DB.CountQuarantined).
type QuarantineCounter interface {
	CountQuarantined(ctx context.Context, connectors []string, from, to time.Time) (int, error)
}

// QueuedCounter counts the deployments of a report's period and scope
// still queued (store.DB.CountQueued).
type QueuedCounter interface {
	CountQueued(ctx context.Context, q core.ReconcileQuery) (int, error)
}

// quarantined counts the deployment deliveries of q's period the inbox
// quarantined (a late-arrivals report has no period of receipt of its
// own: none).
func (s *Reconciler) quarantined(ctx context.Context, q core.ReconcileQuery) (int, error) {
	qc, ok := s.store.(QuarantineCounter)
	if !ok || len(s.DeploymentConnectors) == 0 || !q.RecordedAfter.IsZero() {
		return 0, nil
	}
	return qc.CountQuarantined(ctx, s.DeploymentConnectors, q.From, q.To)
}

// Get returns a stored report.
func (s *Reconciler) Get(ctx context.Context, id string) (core.Report, error) {
	return s.store.GetReport(ctx, id)
}

// List returns reports, newest first.
func (s *Reconciler) List(ctx context.Context, limit int, before string) ([]core.Report, error) {
	return s.store.ListReports(ctx, core.ReportKindReconciliation, limit, before)
}

// Findings calls fn with each finding of a report, in order.
func (s *Reconciler) Findings(ctx context.Context, id string, fn func(core.ReconcileFinding) error) error {
	if _, err := s.store.GetReport(ctx, id); err != nil {
		return err
	}
	return s.store.ReportFindings(ctx, id, fn)
}

// FindingsOfCode calls fn with each finding of a report with the given
// code, in order.
func (s *Reconciler) FindingsOfCode(ctx context.Context, id, code string, fn func(core.ReconcileFinding) error) error {
	return s.store.ReportFindingsOfCode(ctx, id, code, fn)
}

// Proofs calls fn with each control proof of a report (one filtered by a
// control id), in order.
func (s *Reconciler) Proofs(ctx context.Context, id string, fn func(core.ControlProof) error) error {
	return s.store.ReportProofs(ctx, id, fn)
}

// ParseFindingID reads a finding's number from a path (…/findings/{n}):
// a positive decimal number, else KindInvalid. Findings are numbered in a
// 32-bit column, so a number past what it holds names no finding:
// KindNotFound, as an unused number does (the database would refuse to
// compare it).
func ParseFindingID(reportID, raw string) (int, error) {
	n, err := strconv.ParseInt(raw, 10, 64)
	if errors.Is(err, strconv.ErrRange) && n > 0 {
		err = nil // past int64 (n is its maximum): past a finding number too
	}
	switch {
	case err != nil || n <= 0:
		return 0, core.Invalid("finding_id", "%q is not a finding number", raw)
	case n > math.MaxInt32:
		return 0, core.NotFound("finding", reportID+"/"+raw)
	}
	return int(n), nil
}

// Ack records a change manager's acceptance of a finding, with a required
// comment. The finding stays in the report, shown as accepted.
func (s *Reconciler) Ack(ctx context.Context, reportID string, findingID int, comment, actor string) (core.ReconcileFinding, error) {
	comment = strings.TrimSpace(comment)
	switch {
	case comment == "":
		return core.ReconcileFinding{}, core.Invalid("comment", "is required: say why the finding is accepted")
	case len(comment) > maxAckComment:
		return core.ReconcileFinding{}, core.Invalid("comment", "is longer than %d characters", maxAckComment)
	case findingID <= 0:
		return core.ReconcileFinding{}, core.Invalid("finding_id", "must be a positive number")
	case findingID > math.MaxInt32:
		return core.ReconcileFinding{}, core.NotFound("finding", reportID+"/"+strconv.Itoa(findingID))
	}
	if _, err := s.store.GetReport(ctx, reportID); err != nil {
		return core.ReconcileFinding{}, err
	}
	return s.store.AckFinding(ctx, reportID, findingID, actor, comment, s.clock.Now())
}

// MetricsQuery asks for release metrics.
type MetricsQuery struct {
	From, To time.Time
	GroupBy  string // team (default), service or environment
	// FailureWindow is how long after a deployment a new incident on its
	// service counts against it (default core.DefaultFailureWindow).
	FailureWindow time.Duration
}

// Metrics computes release metrics for deployments started in [From, To)
// (docs/metrics.md defines each figure). It streams the deployments as the
// reconciler does (their changes as of their start), so memory holds the
// per-group samples, not the deployments.
func (s *Reconciler) Metrics(ctx context.Context, q MetricsQuery) (core.ReleaseMetrics, error) {
	if q.GroupBy == "" {
		q.GroupBy = core.GroupByTeam
	}
	if !core.ValidGroupBy(q.GroupBy) {
		return core.ReleaseMetrics{}, core.Invalid("group_by", "%q is not one of team, service, environment", q.GroupBy)
	}
	rq := core.ReconcileQuery{From: q.From.UTC(), To: q.To.UTC(), Cutoff: s.clock.Now(), SkipEvidence: true}
	if err := rq.Validate(); err != nil {
		return core.ReleaseMetrics{}, err
	}
	if q.To.Sub(q.From) > maxReportPeriod {
		return core.ReleaseMetrics{}, core.Invalid("to", "the period is longer than %d days", int(maxReportPeriod.Hours()/24))
	}
	acc := core.NewMetricsAccumulator(rq.From, rq.To, q.GroupBy, q.FailureWindow)
	if err := s.store.IncidentsOpenedBetween(ctx, rq.From, rq.To.Add(acc.Window()), acc.AddIncident); err != nil {
		return core.ReleaseMetrics{}, err
	}
	err := s.store.ReconcileScan(ctx, rq, func(core.Incident) bool { return false }, s.PageSize, func(page []core.DeploymentFacts) error {
		for _, df := range page {
			acc.AddDeployment(df)
		}
		return nil
	})
	if err != nil {
		return core.ReleaseMetrics{}, fmt.Errorf("metrics: %w", err)
	}
	if err := s.store.IncidentsByKey(ctx, acc.FixedIncidents(), acc.AddFixedIncident); err != nil {
		return core.ReleaseMetrics{}, err
	}
	if err := s.store.GateOutcomes(ctx, rq.From, rq.To, func(service, env, team string, d core.Decision, n int) {
		acc.AddGateCount(acc.GroupKey(service, env, team), d, n)
	}); err != nil {
		return core.ReleaseMetrics{}, err
	}
	if err := s.store.GateWaits(ctx, rq.From, rq.To, func(service, env, team string, w, a time.Time) {
		acc.AddWait(acc.GroupKey(service, env, team), w, a)
	}); err != nil {
		return core.ReleaseMetrics{}, err
	}
	return acc.Result(), nil
}

// judgeEach judges every deployment of q and adds the findings (and, for
// a control, the proofs) to report id a page at a time. keep, when set,
// says which findings the report takes (a revised report: those not
// reported before); a deployment left with none counts as compliant.
func (s *Reconciler) judgeEach(ctx context.Context, cp *core.CompiledPolicy, q core.ReconcileQuery, opts core.ReconcileOptions, id string, keep func(core.ReconcileFinding) bool) (core.ReconcileSummary, error) {
	sum := core.NewReconcileSummary()
	seq, proofSeq := 0, 0
	var batch []core.ReconcileFinding
	var proofs []core.ControlProof
	err := s.store.ReconcileScan(ctx, q, cp.IsMajor, s.PageSize, func(page []core.DeploymentFacts) error {
		batch, proofs = batch[:0], proofs[:0]
		for _, df := range page {
			fs, dec := core.ReconcileEvaluate(cp, df, q.Cutoff, opts)
			if q.Control != "" {
				kept, proof, inScope := core.ForControl(df, fs, dec, q.Control)
				if !inScope {
					continue
				}
				fs = kept
				if proof != nil {
					proofSeq++
					proof.ID = proofSeq
					proofs = append(proofs, *proof)
				}
			}
			if keep != nil {
				fs = slices.DeleteFunc(fs, func(f core.ReconcileFinding) bool { return !keep(f) })
			}
			sum.Add(fs)
			for i := range fs {
				seq++
				fs[i].ID = seq
			}
			batch = append(batch, fs...)
		}
		if err := s.store.AddFindings(ctx, id, batch); err != nil {
			return err
		}
		return s.store.AddProofs(ctx, id, proofs)
	})
	return sum, err
}
