package service

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// RevisionStore finds what a schedule's revised findings judge again
// (store/verdicts: RevisedDeployments, EmergencyDeployments) and what the
// schedule reported of it (store.DB.ReportedFindings).
type RevisionStore interface {
	RevisedDeployments(ctx context.Context, q core.RevisionQuery, keep func(core.Incident) bool) ([]core.DeploymentStart, bool, error)
	EmergencyDeployments(ctx context.Context, q core.RevisionQuery, from, to time.Time) ([]core.DeploymentStart, bool, error)
	ReportedFindings(ctx context.Context, kind string, names []string, from time.Time, ids []string, fn func(deployment, code, ref string)) error
}

// Revision asks for a schedule's revised findings: see Reconciler.Revise.
type Revision struct {
	core.RevisionQuery
	// Name is the report's name; Reported the names of the reports
	// whose findings count as reported (the schedule's own, its late
	// arrivals, its revised findings).
	Name     string
	Reported []string
	Actor    string
}

// maxRevised bounds the deployments one revised report judges again: the
// latest started are taken, and a warning says more matched.
const maxRevised = 100_000

// Revise prepares (see Prepare) a schedule's revised findings: the
// deployments its earlier reports judged, started before rv.Before and
// recorded by rv.Since (their cut-off), that something since may have
// given a finding, judged again as of rv.Cutoff — an emergency deployment
// whose review or validation deadline fell in [rv.Since, rv.Cutoff): no
// report before could say it was missed; or one that a record stored
// since with an earlier validity (a change or incident version, a review)
// or an update of its own row may judge otherwise. The report holds only
// the findings no report named rv.Reported showed; ok is false, and
// nothing is stored, when there are none.
func (s *Reconciler) Revise(ctx context.Context, rv Revision) (core.Report, bool, error) {
	rs, ok := s.store.(RevisionStore)
	if !ok || rv.Before.IsZero() {
		return core.Report{}, false, nil
	}
	cp := s.policies.Current()
	opts := s.opts.Over(cp.ReconcileOptions())
	rv.Limit = maxRevised
	starts, err := s.emergencyDue(ctx, rs, cp, opts, rv.RevisionQuery)
	if err != nil {
		return core.Report{}, false, err
	}
	late, truncated, err := rs.RevisedDeployments(ctx, rv.RevisionQuery, cp.IsMajor)
	if err != nil {
		return core.Report{}, false, err
	}
	starts = append(starts, late...)
	slices.SortFunc(starts, func(a, b core.DeploymentStart) int {
		if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	starts = slices.CompactFunc(starts, func(a, b core.DeploymentStart) bool { return a.ID == b.ID })
	if len(starts) > maxRevised || truncated {
		s.log.WarnContext(ctx, "more deployments may have new findings than a revised report judges again: it judges the latest started",
			"report", rv.Name, "judged", min(len(starts), maxRevised))
		starts = starts[max(0, len(starts)-maxRevised):]
	}
	if len(starts) == 0 {
		return core.Report{}, false, nil
	}
	return s.prepareRevised(ctx, rs, rv, starts)
}

// prepareRevised judges starts again for rv, keeping the findings the
// schedule did not report, and keeps the report when it has any.
func (s *Reconciler) prepareRevised(ctx context.Context, rs RevisionStore, rv Revision, starts []core.DeploymentStart) (core.Report, bool, error) {
	ids := make([]string, len(starts))
	for i, st := range starts {
		ids[i] = st.ID
	}
	first, last := starts[0].StartedAt, starts[len(starts)-1].StartedAt
	if last.Sub(first) >= maxReportPeriod {
		first = last.Add(-maxReportPeriod + time.Microsecond)
		i, _ := slices.BinarySearchFunc(starts, first, func(st core.DeploymentStart, t time.Time) int { return st.StartedAt.Compare(t) })
		ids, first = ids[i:], starts[i].StartedAt
	}
	type key struct{ deployment, code, ref string }
	reported := map[key]bool{}
	if err := rs.ReportedFindings(ctx, core.ReportKindReconciliation, rv.Reported, first, ids, func(d, code, ref string) {
		reported[key{d, code, ref}] = true
	}); err != nil {
		return core.Report{}, false, err
	}
	q := core.ReconcileQuery{From: first, To: last.Add(time.Microsecond), Environment: rv.Environment, RevisedAfter: rv.Since, ByID: true, Deployments: ids}
	r, err := s.prepare(ctx, q, rv.Actor, rv.Name, rv.Cutoff, func(f core.ReconcileFinding) bool {
		return !reported[key{f.Deployment.ID, f.Code, f.Ref}]
	})
	if err != nil || r.Summary.Findings > 0 {
		return r, err == nil, err
	}
	s.Discard(ctx, r)
	return core.Report{}, false, nil
}

// emergencyDue returns the emergency deployments of q whose review or
// validation deadline fell in [q.Since, q.Cutoff): a report before q.Since
// could not yet call it missed, one at q.Cutoff does. A deadline grows
// with the start, so each is met by the starts of one span, found here in
// the policy's calendar; the store reads the emergency deployments of the
// two spans, and each one's deadlines are checked again.
func (s *Reconciler) emergencyDue(ctx context.Context, rs RevisionStore, cp *core.CompiledPolicy, opts core.ReconcileOptions, q core.RevisionQuery) ([]core.DeploymentStart, error) {
	review := func(start time.Time) time.Time { return cp.AddBusinessHours(start, opts.ReviewWithin) }
	validation := func(start time.Time) time.Time { return start.Add(opts.ValidationWithin) }
	// The latest start whose review deadline was behind q.Since: each
	// business hour takes an hour or more, so it is before q.Since less
	// the hours; a day back at a time from there.
	lo := q.Since.Add(-opts.ReviewWithin)
	for range maxCalendarSteps {
		if review(lo).Before(q.Since) {
			break
		}
		lo = lo.Add(-24 * time.Hour)
	}
	hi := q.Cutoff.Add(-opts.ReviewWithin)
	spans := [][2]time.Time{
		{firstStart(review, lo, hi, q.Since), firstStart(review, lo, hi, q.Cutoff).Add(time.Second)},
		{q.Since.Add(-opts.ValidationWithin), q.Cutoff.Add(-opts.ValidationWithin).Add(time.Second)},
	}
	var out []core.DeploymentStart
	for _, sp := range spans {
		if q.Before.Before(sp[1]) {
			sp[1] = q.Before
		}
		if !sp[1].After(sp[0]) {
			continue
		}
		cands, truncated, err := rs.EmergencyDeployments(ctx, q, sp[0], sp[1])
		if err != nil {
			return nil, err
		}
		if truncated {
			s.log.WarnContext(ctx, "more emergency deployments reached a deadline than a revised report judges again: it judges the latest started", "judged", len(cands))
		}
		out = append(out, cands...)
	}
	due := func(deadline time.Time) bool { return !deadline.Before(q.Since) && deadline.Before(q.Cutoff) }
	return slices.DeleteFunc(out, func(c core.DeploymentStart) bool {
		return !due(review(c.StartedAt)) && !due(validation(c.StartedAt))
	}), nil
}

// firstStart returns, to the second, the earliest start in [lo, hi] whose
// deadline is at or after t (at most a second early), deadline growing
// with the start; hi when none is.
func firstStart(deadline func(time.Time) time.Time, lo, hi, t time.Time) time.Time {
	if !hi.After(lo) || deadline(hi).Before(t) {
		return hi
	}
	for hi.Sub(lo) > time.Second {
		mid := lo.Add(hi.Sub(lo) / 2)
		if deadline(mid).Before(t) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// maxCalendarSteps bounds the days emergencyDue steps back to find the
// earliest start whose review deadline is still ahead of a cut-off.
const maxCalendarSteps = 400

// revisedSuffix names a schedule's revised-findings reports ("weekly-prod
// (revised)"), apart from its own so they do not move its last report
// time.
const revisedSuffix = " (revised)"
