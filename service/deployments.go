package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// DeploymentStore is what Deployments needs from storage.
type DeploymentStore interface {
	UpsertRelease(ctx context.Context, r core.Release) (core.Release, error)
	RecordDeployment(ctx context.Context, d core.Deployment, by string) (core.Deployment, bool, error)
	RequirePIR(ctx context.Context, p core.PIR) error
	GetChange(ctx context.Context, key string) (core.Change, error)
	GetDecision(ctx context.Context, id string) (core.GateDecision, error)
	// Together runs fn with a context under which the store's writes are
	// one transaction; SharesCommits reports whether that saves commits
	// (see InboxStore).
	Together(ctx context.Context, fn func(ctx context.Context) error) error
	SharesCommits() bool
}

// Deployments records what pipelines actually deployed, from the REST API
// or from CI webhooks, and opens the post-implementation reviews the policy
// requires.
type Deployments struct {
	store    DeploymentStore
	policies *Policies
	clock    core.Clock
	log      *slog.Logger
	maxList  int
	// OnRecorded, when set, is told of every recorded deployment event
	// (write-back of work notes). It must not block.
	OnRecorded func(ctx context.Context, d core.Deployment)
	// MaxFutureSkew is how far past now a reported start or finish may
	// lie (inbox.max_future_skew; 5 minutes when zero): a deployment is
	// judged as of its start, so a start to come would keep it out of
	// every report (and a report's late arrivals) until then.
	MaxFutureSkew time.Duration
}

// NewDeployments wires the service.
func NewDeployments(store DeploymentStore, policies *Policies, clock core.Clock, log *slog.Logger, maxList int) *Deployments {
	if maxList <= 0 {
		maxList = 50
	}
	return &Deployments{store: store, policies: policies, clock: clock, log: log, maxList: maxList}
}

// Validate checks and normalizes a deployment event: its service,
// environment and team are canonicalized as the gate's are
// (core.CompiledPolicy.Subject), so a report cannot file its release (and
// the review it requires) under another team than the catalog's.
func (s *Deployments) Validate(d core.Deployment) (core.Deployment, error) {
	cp := s.policies.Current()
	d.Service, d.Environment, d.Version = strings.TrimSpace(d.Service), strings.TrimSpace(d.Environment), strings.TrimSpace(d.Version)
	d.Team = strings.TrimSpace(d.Team)
	for _, f := range []struct {
		name, v  string
		required bool
	}{{"service", d.Service, true}, {"environment", d.Environment, true}, {"version", d.Version, true},
		{"team", d.Team, false}, {"provider", d.Provider, true}} {
		if err := validateName(f.name, f.v, f.required); err != nil {
			return d, err
		}
	}
	if d.RunID == "" || len(d.RunID) > 256 {
		return d, core.Invalid("run_id", "is required (at most 256 characters): with provider, service and environment it makes the report idempotent")
	}
	subj := cp.Subject(d.Service, d.Environment, d.Team)
	if !subj.KnownEnvironment {
		return d, core.Invalid("environment", "unknown environment %q; the policy knows %s", d.Environment, strings.Join(cp.Environments(), ", "))
	}
	if subj.IgnoredTeam != "" {
		s.log.Info("deployment report names a team the service catalog contradicts; the catalog's team is used",
			"service", subj.Service, "reported_team", subj.IgnoredTeam, "team", subj.Team)
	}
	d.Service, d.Environment, d.Team = subj.Service, subj.Environment, subj.Team
	if !core.ValidDeployStatus(d.Status) {
		return d, core.Invalid("status", "%q is not one of %s", d.Status, strings.Join(core.DeployStatuses(), ", "))
	}
	if d.StartedAt.IsZero() {
		return d, core.Invalid("started_at", "is required (RFC 3339)")
	}
	if d.FinishedAt != nil && d.FinishedAt.Before(d.StartedAt) {
		return d, core.Invalid("finished_at", "is before started_at")
	}
	skew := s.MaxFutureSkew
	if skew <= 0 {
		skew = 5 * time.Minute
	}
	// A finish is never before the start (checked above), so a start in
	// the future is named first.
	limit := s.clock.Now().Add(skew)
	for _, t := range []struct {
		field string
		at    *time.Time
	}{{"started_at", &d.StartedAt}, {"finished_at", d.FinishedAt}} {
		if t.at != nil && t.at.After(limit) {
			return d, core.Invalid(t.field, "%s is more than %s in the future (inbox.max_future_skew): a deployment is judged as of its start, so one reported to run later would stay out of every report until then",
				t.at.UTC().Format(time.RFC3339), skew)
		}
	}
	if d.Source == core.SourceAPI {
		if err := startInReach(d.StartedAt, s.clock.Now()); err != nil {
			return d, err
		}
	}
	if len(d.URL) > 2048 || len(d.Commit) > 128 || len(d.Actor) > 256 {
		return d, core.Invalid("url", "url, commit or actor is too long")
	}
	var err error
	if d.Changes, err = normalizeKeys("changes", d.Changes, s.maxList); err != nil {
		return d, err
	}
	if d.Incidents, err = normalizeKeys("incidents", d.Incidents, s.maxList); err != nil {
		return d, err
	}
	return d, nil
}

// Record stores a deployment event idempotently (provider + run id +
// service + environment) and, when it succeeded in an environment whose
// policy requires a review for its change types, requires the PIR. by
// names the reporter (a token, a connector) for the audit entry of a
// report that changes a recorded deployment's links.
func (s *Deployments) Record(ctx context.Context, d core.Deployment, by string) (core.Deployment, bool, error) {
	d, err := s.Prepare(ctx, d)
	if err != nil {
		return d, false, err
	}
	return s.Store(ctx, d, by)
}

// Prepare validates a deployment event (Validate) and keeps the decision
// it names only when that decision was about this release (bindDecision):
// the reads Store needs, made before any of its writes.
func (s *Deployments) Prepare(ctx context.Context, d core.Deployment) (core.Deployment, error) {
	d, err := s.Validate(d)
	if err != nil {
		return d, err
	}
	if err := s.bindDecision(ctx, &d); err != nil {
		return d, err
	}
	return d, nil
}

// Store records a prepared deployment event (Prepare): its release, the
// event, and the review its success requires. Under a shared transaction
// (the inbox's batch) it writes in it, and what the recorded event
// triggers (OnRecorded) waits for that transaction's commit.
func (s *Deployments) Store(ctx context.Context, d core.Deployment, by string) (core.Deployment, bool, error) {
	var (
		stored  core.Deployment
		created bool
		err     error
	)
	write := func(ctx context.Context) (err error) {
		stored, created, err = s.write(ctx, d, by)
		return err
	}
	later, inBatch := ctx.Value(afterCommitKey{}).(*afterCommit)
	switch {
	case inBatch:
		// The batch's transaction holds the writes; a failure fails the
		// batch, which stores its events one by one.
		err = write(ctx)
	case s.store.SharesCommits():
		// The release, the deployment and its review requirement with one
		// commit; alone when the deployment's links change, which the
		// audit chain's group commit records, or when the shared
		// transaction lost a race: a deadlock, or the release's first
		// insert meeting another's.
		err = s.store.Together(ctx, write)
		if errors.Is(err, core.ErrOwnCommit) || (core.IsKind(err, core.KindUnavailable) && !core.IsStoreDown(err) && ctx.Err() == nil) {
			err = write(ctx)
		}
	default:
		err = write(ctx)
	}
	if err != nil {
		return d, false, err
	}
	if s.OnRecorded != nil {
		if inBatch {
			*later = append(*later, func(ctx context.Context) { s.OnRecorded(ctx, stored) })
		} else {
			s.OnRecorded(ctx, stored)
		}
	}
	return stored, created, nil
}

// afterCommit is what waits for the commit of the inbox's batch
// (storeTogether), whose transaction a context carrying it is under: a
// deployment's write-back must not be queued for a record that is then
// rolled back and recorded again under another id.
type afterCommit []func(ctx context.Context)

type afterCommitKey struct{}

// write stores a validated deployment: its release, the deployment event,
// and the review its success requires.
func (s *Deployments) write(ctx context.Context, d core.Deployment, by string) (core.Deployment, bool, error) {
	rel, err := s.store.UpsertRelease(ctx, core.Release{
		Service: d.Service, Version: d.Version, Environment: d.Environment, Team: d.Team,
		Commit: d.Commit, Changes: d.Changes, FixesIncidents: d.Incidents,
	})
	if err != nil {
		return d, false, fmt.Errorf("record release of deployment: %w", err)
	}
	d.ReleaseID = rel.ID
	stored, created, err := s.store.RecordDeployment(ctx, d, by)
	if err != nil {
		return d, false, fmt.Errorf("record deployment: %w", err)
	}
	if stored.Status == core.DeploySucceeded {
		if err := s.requirePIR(ctx, stored); err != nil {
			return stored, created, err
		}
	}
	return stored, created, nil
}

// bindDecision keeps a deployment's decision_id only when that decision
// was about this very release: the same service, environment and version,
// and the same commit when both name one. An allow is bound to its
// release: a re-run or a later report of another commit does not reuse
// it; the deployment is then recorded without a decision (and the
// reconciler reports it as GATE_BYPASSED). An id no recorded decision has
// is kept as reported: it allows nothing (the reconciler finds no decision
// behind it), and the report stays as the pipeline sent it.
func (s *Deployments) bindDecision(ctx context.Context, d *core.Deployment) error {
	if d.DecisionID == "" {
		return nil
	}
	dec, err := s.store.GetDecision(ctx, d.DecisionID)
	if core.IsKind(err, core.KindNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load decision %s: %w", d.DecisionID, err)
	}
	if why := releaseMismatch(dec.Request, *d); why != "" {
		s.log.WarnContext(ctx, "deployment is not the release its decision was about; recorded without it",
			"decision_id", d.DecisionID, "service", d.Service, "run_id", d.RunID, "mismatch", why)
		d.DecisionID = ""
	}
	return nil
}

// releaseMismatch names what differs between a decision's release and a
// deployment's, or returns "". Commits compare as core.SameCommit does: a
// pipeline naming the abbreviated commit its gate check named in full is
// the same release.
func releaseMismatch(r core.GateRequest, d core.Deployment) string {
	switch {
	case !strings.EqualFold(r.Service, d.Service):
		return "service"
	case !strings.EqualFold(r.Environment, d.Environment):
		return "environment"
	case r.Version != d.Version:
		return "version"
	case !core.SameCommit(r.Commit, d.Commit):
		return "commit"
	}
	return ""
}

func (s *Deployments) requirePIR(ctx context.Context, d core.Deployment) error {
	types := make([]core.ChangeType, 0, len(d.Changes))
	for _, k := range d.Changes {
		c, err := s.store.GetChange(ctx, k)
		if core.IsKind(err, core.KindNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("load change %s for PIR rule: %w", k, err)
		}
		types = append(types, c.Type)
	}
	if !s.policies.Current().PIRRequired(d.Environment, types) {
		return nil
	}
	at := s.clock.Now()
	if d.FinishedAt != nil {
		at = *d.FinishedAt
	}
	err := s.store.RequirePIR(ctx, core.PIR{
		ReleaseID: d.ReleaseID, Service: d.Service, Version: d.Version, Environment: d.Environment,
		Team: d.Team, Commit: d.Commit, Status: core.PIRPending, RequiredAt: at.UTC().Truncate(time.Microsecond),
	})
	if err != nil {
		return fmt.Errorf("require PIR for release %s: %w", d.ReleaseID, err)
	}
	return nil
}

// startInReach refuses a deployment reported through the API with a
// start further back than a report reaches (maxReportPeriod): such a
// deployment would be stored and never judged, not even as a late
// arrival. A CI clock reset to 1970, or a time in seconds read as
// milliseconds, gives such a start. A vendor's event is stored as the
// vendor sent it (a replayed delivery may be old); the scheduler warns
// of late arrivals out of reach.
func startInReach(start, now time.Time) error {
	if now.Sub(start) > maxReportPeriod {
		return core.Invalid("started_at", "%s is more than five years ago: no report reaches that far, so the deployment would never be judged (a CI clock reset, or a time in the wrong unit?)",
			start.UTC().Format(time.RFC3339))
	}
	return nil
}
