package service

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/tollgate-dev/tollgate/core"
)

// CronSchedule is a parsed cron expression (robfig/cron's Schedule).
type CronSchedule interface {
	// Next returns the next activation time after t.
	Next(t time.Time) time.Time
}

// ReportSchedule is one scheduled reconciliation report.
type ReportSchedule struct {
	Name        string
	Cron        CronSchedule
	Period      time.Duration
	Environment string
	WebhookURL  string
}

// ScheduleStore is what the scheduler needs besides the reconciler: the
// lease that makes one replica run the schedules, when each schedule last
// ran, and retention.
type ScheduleStore interface {
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
	// LastReport is the newest finished report of kind a schedule made.
	LastReport(ctx context.Context, kind, name string) (core.Report, bool, error)
	// LateDeployments counts what a late-arrivals report covers (see
	// store/unjudged) and the earliest start among it.
	LateDeployments(ctx context.Context, environment string, before, after, uncoveredFrom, by time.Time) (int, time.Time, error)
	DeleteReportsBefore(ctx context.Context, kind string, t time.Time) (int, error)
	DeleteUnfinishedReports(ctx context.Context, t time.Time) (int, error)
	DeleteSettledBefore(ctx context.Context, t time.Time, max int) (int, error)
}

// inboxPurgeMax is how many settled deliveries one tick deletes: a first
// purge of a large inbox goes on tick after tick, in short statements.
const inboxPurgeMax = 100000

// cleanupTimeout bounds the writes done after a stop or a failure (a
// lease given up, a failed report removed): with the database away they
// would otherwise hold the shutdown until TCP gives up.
const cleanupTimeout = 5 * time.Second

// reportsLease names the lease of the report scheduler.
const reportsLease = "reports"

// unfinishedAfter is when a report begun and never finished is taken for
// one whose replica died while judging it, and removed: far longer than
// judging a period takes, so no report still running is.
const unfinishedAfter = time.Hour

// Scheduler runs the scheduled reports on the one replica holding the
// "reports" lease, posts their summaries to their webhooks, and deletes
// reports older than the retention and settled inbox deliveries older
// than InboxRetention.
type Scheduler struct {
	rec       *Reconciler
	store     ScheduleStore
	schedules []ReportSchedule
	retention time.Duration
	holder    string
	clock     core.Clock
	log       *slog.Logger
	client    *retryablehttp.Client
	started   time.Time
	tickMu    sync.Mutex // one tick at a time (Run's, or a caller's TickAt)
	lastPurge time.Time
	// lastUnfinished is when unfinished reports were last looked for.
	lastUnfinished time.Time
	// OnMetrics, when set, receives release metrics of the trailing
	// MetricsWindow grouped by environment (a bounded set, so they can be
	// gauges), computed every MetricsEvery (default an hour; 0 never) by
	// the lease holder.
	OnMetrics     func(core.ReleaseMetrics)
	MetricsWindow time.Duration
	MetricsEvery  time.Duration
	lastMetrics   time.Time
	// VerdictsEvery is how often the lease holder brings the stored
	// verdicts up to date (Reconciler.RefreshVerdicts), so that reports
	// find the deployments judged; 0 never.
	VerdictsEvery time.Duration
	lastVerdicts  time.Time
	// InboxRetention is how long settled (processed or ignored) inbox
	// deliveries are kept; 0 keeps them all.
	InboxRetention time.Duration
	lastInboxPurge time.Time
	// Tick is how often Run looks for due work (default 30s); the lease
	// lasts LeaseTTL (default 10m) and is renewed every tick, so a long run
	// keeps it.
	Tick     time.Duration
	LeaseTTL time.Duration
}

// NewScheduler wires the scheduler; holder names this replica.
func NewScheduler(rec *Reconciler, store ScheduleStore, schedules []ReportSchedule, retention time.Duration, holder string, clock core.Clock, log *slog.Logger) *Scheduler {
	client := retryablehttp.NewClient()
	client.RetryMax = 4
	client.RetryWaitMin = time.Second
	client.RetryWaitMax = 30 * time.Second
	client.HTTPClient.Timeout = 15 * time.Second
	client.Logger = nil
	return &Scheduler{rec: rec, store: store, schedules: schedules, retention: retention, holder: holder,
		clock: clock, log: log, client: client, started: clock.Now(), Tick: 30 * time.Second, LeaseTTL: 10 * time.Minute,
		MetricsEvery: time.Hour}
}

// Run ticks until ctx ends, then gives the lease up.
func (s *Scheduler) Run(ctx context.Context) {
	t := time.NewTicker(s.Tick)
	defer t.Stop()
	for {
		if err := s.TickAt(ctx, s.clock.Now()); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "scheduled reports", "error", err)
		}
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			if err := s.store.ReleaseLease(rctx, reportsLease, s.holder); err != nil {
				s.log.Warn("release the reports lease", "error", err)
			}
			cancel()
			return
		case <-t.C:
		}
	}
}

// TickAt does what is due at now, when this replica holds the lease: each
// schedule whose next fire time after its last report (or after this
// scheduler started, for a schedule that never ran) has come runs once,
// for the latest fire time passed (a replica that was down does not
// replay every missed run); then, at most hourly, old reports are deleted;
// every MetricsEvery the release metrics are handed to OnMetrics, and
// every VerdictsEvery the stored verdicts are brought up to date.
func (s *Scheduler) TickAt(ctx context.Context, now time.Time) error {
	s.tickMu.Lock()
	defer s.tickMu.Unlock()
	held, err := s.store.AcquireLease(ctx, reportsLease, s.holder, s.LeaseTTL)
	if err != nil || !held {
		return err
	}
	var errs []error
	for _, sc := range s.schedules {
		prev, ok, err := s.store.LastReport(ctx, core.ReportKindReconciliation, sc.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		last := s.started
		if ok {
			last = prev.CreatedAt
		}
		fire := sc.Cron.Next(last)
		if fire.After(now) {
			continue
		}
		for n := sc.Cron.Next(fire); !n.After(now); n = sc.Cron.Next(n) {
			fire = n
		}
		var previous *core.Report // a schedule's first report has no earlier one to be late for
		if ok {
			previous = &prev
		}
		// A schedule may run long (a first judgement, a webhook retried):
		// the lease is renewed before each, and a replica that lost it
		// meanwhile leaves the rest to the one that took it.
		if held, err := s.store.AcquireLease(ctx, reportsLease, s.holder, s.LeaseTTL); err != nil || !held {
			return errors.Join(append(errs, err)...)
		}
		if err := s.runOne(ctx, sc, fire, previous); err != nil {
			errs = append(errs, err)
		}
	}
	if now.Sub(s.lastUnfinished) >= time.Hour {
		n, err := s.store.DeleteUnfinishedReports(ctx, now.Add(-unfinishedAfter))
		if err != nil {
			errs = append(errs, err)
		} else {
			s.lastUnfinished = now
			if n > 0 {
				s.log.WarnContext(ctx, "reports begun and never finished deleted (their replica stopped while judging)", "reports", n)
			}
		}
	}
	if s.retention > 0 && now.Sub(s.lastPurge) >= time.Hour {
		n, err := s.store.DeleteReportsBefore(ctx, core.ReportKindReconciliation, now.Add(-s.retention))
		if err != nil {
			errs = append(errs, err)
		} else {
			s.lastPurge = now
			if n > 0 {
				s.log.InfoContext(ctx, "old reports deleted", "reports", n, "retention", s.retention)
			}
		}
	}
	if err := s.purgeInbox(ctx, now); err != nil {
		errs = append(errs, err)
	}
	if s.lastMetrics.IsZero() {
		// Like the verdicts' refresh, the first metrics come a minute after
		// start: reading 30 days of deployments amid a start (a rollout
		// under traffic) would compete with the gate for the database.
		s.lastMetrics = s.started.Add(time.Minute - s.MetricsEvery)
	}
	if s.OnMetrics != nil && s.MetricsEvery > 0 && now.Sub(s.lastMetrics) >= s.MetricsEvery {
		window := s.MetricsWindow
		if window <= 0 {
			window = 30 * 24 * time.Hour
		}
		m, err := s.rec.Metrics(ctx, MetricsQuery{From: now.Add(-window), To: now, GroupBy: core.GroupByEnvironment})
		if err != nil {
			errs = append(errs, err)
		} else {
			s.lastMetrics = now
			s.OnMetrics(m)
		}
	}
	if s.lastVerdicts.IsZero() {
		// The first refresh comes a minute after start, not amid it.
		s.lastVerdicts = s.started.Add(time.Minute - s.VerdictsEvery)
	}
	if s.VerdictsEvery > 0 && now.Sub(s.lastVerdicts) >= s.VerdictsEvery {
		if _, err := s.rec.RefreshVerdicts(ctx); err != nil {
			errs = append(errs, err)
		} else {
			s.lastVerdicts = now
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d scheduled tasks failed, first: %w", len(errs), errs[0])
	}
	return nil
}

// runOne runs schedule sc's report for the period ending at fire and,
// after the schedule's previous report prev (nil for its first), a report
// of the deployments that arrived late (lateArrivals) and one of the
// findings its earlier reports could not yet show (revised). The run's
// reports share one cut-off and are finished in one commit: a run whose
// late or revised pass failed is not the schedule's last, and the next
// tick runs it again, so every deployment recorded is judged by some
// scheduled report, and every finding that comes true later is shown by
// one.
func (s *Scheduler) runOne(ctx context.Context, sc ReportSchedule, fire time.Time, prev *core.Report) error {
	q := core.ReconcileQuery{From: fire.Add(-sc.Period), To: fire, Environment: sc.Environment}
	rep, err := s.rec.Prepare(ctx, q, "schedule:"+sc.Name, sc.Name, time.Time{})
	if err != nil {
		return fmt.Errorf("scheduled report %s: %w", sc.Name, err)
	}
	reports := []core.Report{rep}
	if prev != nil {
		more, err := s.followUps(ctx, sc, rep, *prev)
		if err != nil {
			s.rec.Discard(ctx, append(reports, more...)...)
			return fmt.Errorf("scheduled report %s: %w", sc.Name, err)
		}
		reports = append(reports, more...)
	}
	if err := s.rec.Finish(ctx, reports...); err != nil {
		return fmt.Errorf("scheduled report %s: %w", sc.Name, err)
	}
	if sc.WebhookURL == "" {
		return nil
	}
	for _, r := range reports {
		if err := s.post(ctx, sc, r); err != nil {
			// The report is stored; only its announcement failed.
			return fmt.Errorf("scheduled report %s: post summary: %w", sc.Name, err)
		}
	}
	return nil
}

// followUps prepares the reports a run after the schedule's first adds to
// its own, rep: its late arrivals and its revised findings, when there
// are any. On an error it returns those it prepared, for the caller to
// discard.
func (s *Scheduler) followUps(ctx context.Context, sc ReportSchedule, rep, prev core.Report) ([]core.Report, error) {
	var out []core.Report
	late, ok, err := s.lateArrivals(ctx, sc, rep, prev)
	if err != nil {
		return out, fmt.Errorf("late arrivals: %w", err)
	}
	if ok {
		out = append(out, late)
	}
	// The deployments the earlier reports judged: started before this
	// period and, when the two periods leave a gap (which the late
	// arrivals judge), before it; recorded by the previous cut-off.
	before := rep.Query.From
	if gap := lateStart(rep, prev); !gap.IsZero() {
		before = gap
	}
	revised, ok, err := s.rec.Revise(ctx, Revision{
		RevisionQuery: core.RevisionQuery{Environment: rep.Query.Environment, Before: before, Since: previousCutoff(prev), Cutoff: rep.Query.Cutoff},
		Name:          sc.Name + revisedSuffix,
		Reported:      []string{sc.Name, sc.Name + lateSuffix, sc.Name + revisedSuffix},
		Actor:         "schedule:" + sc.Name,
	})
	if err != nil {
		return out, fmt.Errorf("revised findings: %w", err)
	}
	if ok {
		s.log.InfoContext(ctx, "revised findings reported", "schedule", sc.Name, "report", revised.ID,
			"deployments", revised.Summary.DeploymentsChecked, "findings", revised.Summary.Findings)
		out = append(out, revised)
	}
	return out, nil
}

// previousCutoff is the cut-off of a schedule's previous run.
func previousCutoff(prev core.Report) time.Time {
	return cmp.Or(prev.Query.Cutoff, prev.CreatedAt).UTC()
}

// lateStart is the end of the previous report's period when it ended
// before rep's began (a span no report of the schedule covered, which
// the late arrivals judge), else zero.
func lateStart(rep, prev core.Report) time.Time {
	if prev.Query.To.Before(rep.Query.From) {
		return prev.Query.To.UTC()
	}
	return time.Time{}
}

// lateArrivals prepares, when there are any, the report of the deployments
// that no report of schedule sc judged although they started before rep's
// period: those recorded after the previous report's cut-off (a pipeline
// reporting at its end after the report ran, a report delayed or replayed
// from quarantine), and those that started between the previous report's
// period and this one, whenever recorded (a period shorter than the
// interval between fire times, fire times skipped while no replica ran).
func (s *Scheduler) lateArrivals(ctx context.Context, sc ReportSchedule, rep, prev core.Report) (core.Report, bool, error) {
	since, uncovered := previousCutoff(prev), lateStart(rep, prev)
	n, earliest, err := s.store.LateDeployments(ctx, rep.Query.Environment, rep.Query.From, since, uncovered, rep.Query.Cutoff)
	if err != nil || n == 0 {
		return core.Report{}, false, err
	}
	lq := core.ReconcileQuery{From: earliest, To: rep.Query.From, Environment: sc.Environment, RecordedAfter: since, UncoveredFrom: uncovered}
	if lq.To.Sub(lq.From) > maxReportPeriod {
		s.log.WarnContext(ctx, "deployments recorded late started further back than a report reaches: the late-arrivals report covers the last five years of them",
			"schedule", sc.Name, "earliest_start", earliest, "late_deployments", n)
		lq.From = lq.To.Add(-maxReportPeriod)
	}
	late, err := s.rec.Prepare(ctx, lq, "schedule:"+sc.Name, sc.Name+lateSuffix, rep.Query.Cutoff)
	if err != nil {
		return core.Report{}, false, err
	}
	s.log.InfoContext(ctx, "late arrivals reported", "schedule", sc.Name, "report", late.ID, "deployments", n,
		"recorded_after", since.Format(time.RFC3339), "earliest_start", earliest.Format(time.RFC3339))
	return late, true, nil
}

// lateSuffix names a schedule's late-arrivals reports ("weekly-prod
// (late arrivals)"), apart from its own so they do not move its last
// report time.
const lateSuffix = " (late arrivals)"

// webhookMessage is Slack- and Teams-compatible: both render "text".
type webhookMessage struct {
	Text string `json:"text"`
}

// SummaryText is the one-message summary of a report posted to webhooks.
func SummaryText(name string, r core.Report) string {
	env := r.Query.Environment
	if env == "" {
		env = "all environments"
	}
	sum := r.Summary
	codes := make([]string, 0, len(sum.ByCode))
	for c, n := range sum.ByCode {
		codes = append(codes, fmt.Sprintf("%s %d", c, n))
	}
	slices.Sort(codes)
	detail := ""
	if len(codes) > 0 {
		detail = " (" + strings.Join(codes, ", ") + ")"
	}
	if sum.QuarantinedEvents > 0 {
		detail += fmt.Sprintf("; %d deployment deliveries of the period quarantined, judged by no report", sum.QuarantinedEvents)
	}
	if sum.QueuedDeployments > 0 {
		detail += fmt.Sprintf("; %d deployments of the period still queued (never reported running), judged by no report", sum.QueuedDeployments)
	}
	return fmt.Sprintf("tollgate reconciliation report %s, %s to %s, %s: %d deployments checked, %d compliant, %d findings%s. Report %s.",
		name, r.Query.From.Format(time.RFC3339), r.Query.To.Format(time.RFC3339), env,
		sum.DeploymentsChecked, sum.Compliant, sum.Findings, detail, r.ID)
}

func (s *Scheduler) post(ctx context.Context, sc ReportSchedule, r core.Report) error {
	body, err := json.Marshal(webhookMessage{Text: SummaryText(cmp.Or(r.Name, sc.Name), r)})
	if err != nil {
		return err
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, sc.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		// The error text names the URL, whose path is the webhook's
		// secret: report the host only.
		host := "(unparsable URL)"
		if u, perr := url.Parse(sc.WebhookURL); perr == nil {
			host = u.Host
		}
		return fmt.Errorf("webhook at %s unreachable after retries", host)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}

// purgeInbox deletes, at most hourly, the settled inbox deliveries older
// than InboxRetention — again at the next tick while a purge is cut short
// by inboxPurgeMax.
func (s *Scheduler) purgeInbox(ctx context.Context, now time.Time) error {
	if s.InboxRetention <= 0 || now.Sub(s.lastInboxPurge) < time.Hour {
		return nil
	}
	n, err := s.store.DeleteSettledBefore(ctx, now.Add(-s.InboxRetention), inboxPurgeMax)
	if n > 0 {
		s.log.InfoContext(ctx, "settled inbox deliveries deleted", "events", n, "retention", s.InboxRetention)
	}
	if err == nil && n < inboxPurgeMax {
		s.lastInboxPurge = now
	}
	return err
}
