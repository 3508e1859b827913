package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/jsonenc"
)

// VerdictStore keeps the verdicts reports judged, so that the next report
// judges only the deployments whose verdict is missing or may have
// changed (see store.DB.CheckVerdicts).
type VerdictStore interface {
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
	CheckVerdicts(ctx context.Context, at time.Time) (since time.Time, err error)
	PlanVerdicts(ctx context.Context, q core.ReconcileQuery, key string, since time.Time, limit int) (core.VerdictPlan, error)
	SaveVerdicts(ctx context.Context, key string, at time.Time, vs []core.Verdict, fresh bool) error
	ForgetVerdicts(ctx context.Context, q core.ReconcileQuery) error
	AddVerdictFindings(ctx context.Context, reportID string, q core.ReconcileQuery, key string) (core.ReconcileSummary, error)
}

// verdictLease serializes the reports and refreshes that check, write and
// read stored verdicts, across replicas: a report that cannot take it
// within verdictLeaseWait judges every deployment itself and stores
// nothing.
const (
	verdictLease    = "reconcile-verdicts"
	verdictLeaseTTL = 10 * time.Minute
)

// maxUnjudged is how many deployments without a stored verdict a report
// lists to judge by id (Reconciler.MaxJudgedByID); past it, it judges its
// whole period in start order, storing every verdict.
const maxUnjudged = 100_000

// judgeWithVerdicts judges the deployments of q that have no stored
// verdict under the policy in force (all of them the first time, or after
// the policy or tollgate changed), stores their verdicts, then gives
// report id the findings of every verdict of q, numbered in deployment
// order, and returns the summary. The stored verdicts are first checked
// against the records stored since the last report. Findings are the same
// as judgeEach's: a verdict is reused only while nothing it was judged by
// has changed.
func (s *Reconciler) judgeWithVerdicts(ctx context.Context, vs VerdictStore, cp *core.CompiledPolicy, q core.ReconcileQuery, opts core.ReconcileOptions, id string) (core.ReconcileSummary, error) {
	held, err := s.awaitVerdictLease(ctx, vs, id, verdictLeaseWait)
	if err != nil {
		return core.ReconcileSummary{}, err
	}
	if !held {
		s.log.InfoContext(ctx, "another report is using the stored verdicts: judging every deployment", "report", id)
		return s.judgeEach(ctx, cp, q, opts, id, nil)
	}
	defer s.releaseVerdictLease(ctx, vs, id)
	sum, _, err := s.judgeStored(ctx, vs, cp, q, opts, id, true)
	return sum, err
}

// releaseVerdictLease gives the verdicts' lease up.
func (s *Reconciler) releaseVerdictLease(ctx context.Context, vs VerdictStore, holder string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := vs.ReleaseLease(rctx, verdictLease, holder); err != nil {
		s.log.WarnContext(ctx, "could not release the verdicts' lease", "holder", holder, "error", err)
	}
}

// judgeStored is judgeWithVerdicts under the lease, which id holds: it
// checks and plans the stored verdicts, judges what the plan lists and
// stores the verdicts, and, when report, gives report id the findings.
// It returns the summary (when report) and how many deployments it judged.
func (s *Reconciler) judgeStored(ctx context.Context, vs VerdictStore, cp *core.CompiledPolicy, q core.ReconcileQuery, opts core.ReconcileOptions, id string, report bool) (core.ReconcileSummary, int, error) {
	started := time.Now()
	since, err := vs.CheckVerdicts(ctx, q.Cutoff)
	if err != nil {
		return core.ReconcileSummary{}, 0, err
	}
	key := verdictKey(cp, opts, q.SkipEvidence)
	limit := s.MaxJudgedByID
	if limit <= 0 {
		limit = maxUnjudged
	}
	plan, err := vs.PlanVerdicts(ctx, q, key, since, limit)
	if err != nil {
		return core.ReconcileSummary{}, 0, err
	}
	if !plan.ByID {
		// Every deployment of the period is judged: its verdicts go first,
		// so the new ones are written without an upsert each.
		if err := vs.ForgetVerdicts(ctx, q); err != nil {
			return core.ReconcileSummary{}, 0, err
		}
	}
	scan := q
	scan.ByID, scan.Deployments = plan.ByID, plan.Deployments
	judged := core.NewReconcileSummary()
	var batch []core.Verdict
	pageStart := time.Now()
	err = s.store.ReconcileScan(ctx, scan, cp.IsMajor, s.PageSize, func(page []core.DeploymentFacts) error {
		if !report {
			// A refresh is background work: it rests refreshRest times as
			// long as each page took (reading and judging it), so that it
			// never takes more than a fraction of the machine from the
			// gate, however much it has to judge.
			if err := connectors.Sleep(ctx, time.Duration(refreshRest*float64(time.Since(pageStart)))); err != nil {
				return err
			}
			defer func() { pageStart = time.Now() }()
		}
		if err := s.renewVerdictLease(ctx, vs, id); err != nil {
			return err
		}
		batch = batch[:0]
		for _, df := range page {
			fs, dec := core.ReconcileEvaluate(cp, df, q.Cutoff, opts)
			judged.Add(fs)
			d := &df.Deployment
			batch = append(batch, core.Verdict{
				DeploymentID: d.ID, StartedAt: d.StartedAt, Environment: d.Environment, Service: d.Service, Team: d.Team,
				Findings: fs, Volatile: dec.Emergency || d.StartedAt.After(q.Cutoff.Add(-core.VerdictSettle)),
			})
		}
		return vs.SaveVerdicts(ctx, key, q.Cutoff, batch, !plan.ByID)
	})
	if err != nil {
		return core.ReconcileSummary{}, 0, err
	}
	sum := core.NewReconcileSummary()
	if report {
		if err := s.renewVerdictLease(ctx, vs, id); err != nil {
			return core.ReconcileSummary{}, 0, err
		}
		if sum, err = vs.AddVerdictFindings(ctx, id, q, key); err != nil {
			return core.ReconcileSummary{}, 0, err
		}
	}
	sum.DeploymentsChecked = plan.Reused + judged.DeploymentsChecked
	sum.Compliant = plan.ReusedCompliant + judged.Compliant
	s.log.DebugContext(ctx, "stored verdicts", "report", id, "reused", plan.Reused, "judged", judged.DeploymentsChecked,
		"by_id", plan.ByID, "took", time.Since(started))
	return sum, judged.DeploymentsChecked, nil
}

// errVerdictLeaseLost: another report or refresh took the stored
// verdicts' lease while this one paused past its expiry (a stalled VM, a
// slow page); what it had not yet written is left to that one.
var errVerdictLeaseLost = core.Errorf(core.KindConflict, "the stored verdicts' lease was taken over by another report or refresh; run the report again")

// renewVerdictLease renews the verdicts' lease that holder holds, or
// fails when it was lost: a holder that wrote on after losing it would
// write beside the one that took it (which may have forgotten the
// verdicts it is writing).
func (s *Reconciler) renewVerdictLease(ctx context.Context, vs VerdictStore, holder string) error {
	held, err := vs.AcquireLease(ctx, verdictLease, holder, verdictLeaseTTL)
	if err != nil {
		return err
	}
	if !held {
		return errVerdictLeaseLost
	}
	return nil
}

// refreshRest is how long a refresh rests after each page, as a multiple
// of the time the page took: 3 keeps it to about a quarter of the time.
const refreshRest = 3.0

// verdictLeaseWait is how long a report waits for another report or a
// refresh to finish with the stored verdicts before it judges afresh.
const verdictLeaseWait = 30 * time.Second

// awaitVerdictLease takes the verdicts' lease for holder, waiting up to
// wait for its holder to finish.
func (s *Reconciler) awaitVerdictLease(ctx context.Context, vs VerdictStore, holder string, wait time.Duration) (bool, error) {
	deadline := time.Now().Add(wait)
	for {
		held, err := vs.AcquireLease(ctx, verdictLease, holder, verdictLeaseTTL)
		if err != nil || held || !time.Now().Before(deadline) {
			return held, err
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// RefreshVerdicts brings the stored verdicts up to date without a report:
// it judges, under the policy in force, every deployment of the last five
// years whose verdict is missing or may have changed, so that the next
// report finds them judged. It returns how many it judged; when a report
// holds the verdicts it does nothing.
func (s *Reconciler) RefreshVerdicts(ctx context.Context) (int, error) {
	vs, ok := s.store.(VerdictStore)
	if !ok || s.NoStoredVerdicts {
		return 0, nil
	}
	holder := "refresh:" + newID()
	held, err := s.awaitVerdictLease(ctx, vs, holder, 0)
	if err != nil || !held {
		return 0, err
	}
	defer s.releaseVerdictLease(ctx, vs, holder)
	cp := s.policies.Current()
	now := s.clock.Now().UTC().Truncate(time.Microsecond)
	q := core.ReconcileQuery{From: now.Add(-maxReportPeriod), To: now.Add(time.Minute), Cutoff: now, SkipEvidence: !cp.RequiresAnyEvidence()}
	started := time.Now()
	_, judged, err := s.judgeStored(ctx, vs, cp, q, s.opts.Over(cp.ReconcileOptions()), holder, false)
	if err != nil {
		return 0, fmt.Errorf("refresh stored verdicts: %w", err)
	}
	if judged > 0 {
		s.log.InfoContext(ctx, "stored verdicts refreshed", "judged", judged, "took", time.Since(started))
	}
	return judged, nil
}

// verdictKey names what a verdict was judged by: the policy version, the
// reconcile options, whether evidence was read, and the tollgate build
// (another build may judge differently).
func verdictKey(cp *core.CompiledPolicy, opts core.ReconcileOptions, skipEvidence bool) string {
	o, _ := jsonenc.Marshal(opts)
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%s\x00%t\x00%s", cp.Version(), o, skipEvidence, buildFingerprint())
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// buildFingerprint identifies the running build: the SHA-256 of its
// executable (any change to the code changes it), else its build info.
var buildFingerprint = sync.OnceValue(func() string {
	if exe, err := os.Executable(); err == nil {
		if f, err := os.Open(exe); err == nil {
			defer f.Close()
			h := sha256.New()
			if _, err := io.Copy(h, f); err == nil {
				return hex.EncodeToString(h.Sum(nil))
			}
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.String()
	}
	return "unknown"
})
