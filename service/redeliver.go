package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/metrics"
)

// A webhook sender that does not retry (GitHub, GitLab) leaves tollgate's
// inbox without every delivery it failed to make while tollgate, its load
// balancer or its database was away — a deployment the reconciler never
// sees, a protection rule that waits for an answer until GitHub gives up
// after 30 days. The Redeliverer reads the sender's own record of its
// attempts and asks it to send again what failed and tollgate did not
// store.

// DeliveryLog is a webhook whose sender lists its delivery attempts and
// sends one again on request (a GitHub App's webhook, GitLab's project
// webhooks).
type DeliveryLog interface {
	// Deliveries calls fn with the attempts of each of the sender's logs
	// (connectors.Delivery.Log: one per GitLab webhook; a GitHub App has
	// one, "") from the newest back to since(log).
	Deliveries(ctx context.Context, since func(log string) time.Time, fn func(connectors.Delivery) error) error
	// Redeliver asks the sender to make the attempt d again.
	Redeliver(ctx context.Context, d connectors.Delivery) error
}

// RedeliverStore is what a redeliverer keeps and reads in the database:
// its lease, its watermark and which deliveries the inbox holds.
type RedeliverStore interface {
	PollStore
	// StoredKeys returns which of keys connector's inbox holds.
	StoredKeys(ctx context.Context, connector string, keys []string) (map[string]bool, error)
}

// Redelivery limits.
const (
	// MaxRedeliveries is how many times one delivery is asked for again
	// before the redeliverer gives up on it (and says so in the log):
	// one tollgate keeps failing needs a person, not more attempts.
	MaxRedeliveries = 5
	// maxRedeliveriesPerRun bounds the requests of one run, so that a
	// long outage's backlog comes back over a few intervals rather than
	// as one burst against the connector's rate limit.
	maxRedeliveriesPerRun = 200
	// redeliverOverlap is read again on every run: a sender lists an
	// attempt once it has ended, possibly after later ones.
	redeliverOverlap = 5 * time.Minute
	// redeliverMemory is how long a delivery's request count is kept:
	// past it the delivery is behind the watermark.
	redeliverMemory = 24 * time.Hour
)

// Redeliverer asks one connector's sender, every interval and on one
// replica at a time (the holder of the lease "redeliver:<connector>"), to
// send again each delivery whose attempts since its watermark all failed
// transiently (no answer, a timeout, 429, 5xx) and that the inbox does not
// hold. A delivery the receiver refused (4xx: a bad signature, a body too
// large) is not asked for again: it would be refused again.
type Redeliverer struct {
	name     string
	src      DeliveryLog
	store    RedeliverStore
	interval time.Duration
	holder   string
	clock    core.Clock
	log      *slog.Logger
	metrics  *metrics.Set

	// asked counts the redeliveries this process requested per delivery
	// id (only the lease holder runs, so the count lives here).
	asked map[string]redeliverAsk
}

type redeliverAsk struct {
	n    int // redeliveries requested; -1: settled (stored, given up on, refused by the sender)
	last time.Time
}

// NewRedeliverer wires a redeliverer; holder names this replica for the
// lease.
func NewRedeliverer(name string, src DeliveryLog, store RedeliverStore, interval time.Duration, holder string, clock core.Clock, log *slog.Logger, m *metrics.Set) *Redeliverer {
	return &Redeliverer{name: name, src: src, store: store, interval: interval, holder: holder, clock: clock, log: log, metrics: m,
		asked: map[string]redeliverAsk{}}
}

// Run redelivers every interval until ctx ends, then gives up its lease.
func (r *Redeliverer) Run(ctx context.Context) {
	leased{name: "redeliver:" + r.name, holder: r.holder, interval: r.interval, store: r.store, log: r.log}.run(ctx,
		func(ctx context.Context) {
			if _, err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
				r.failed(ctx, err)
			}
		}, r.failed)
}

func (r *Redeliverer) failed(ctx context.Context, err error) {
	r.count("error", 1)
	r.log.WarnContext(ctx, "redelivery run failed", "connector", r.name, "error", err.Error())
}

func (r *Redeliverer) count(outcome string, n int) {
	if r.metrics != nil && n > 0 {
		r.metrics.Redeliveries.WithLabelValues(r.name, outcome).Add(float64(n))
	}
}

// RedeliverRun is what one run found and did.
type RedeliverRun struct {
	// Attempts is how many attempts the sender listed since the watermark.
	Attempts int `json:"attempts"`
	// Failed is how many deliveries had no successful attempt and a
	// transient failure last.
	Failed int `json:"failed"`
	// Stored of those were in the inbox all the same (the sender gave up
	// waiting after tollgate had stored it).
	Stored int `json:"stored"`
	// Requested were asked for again.
	Requested int `json:"requested"`
	// Abandoned were given up on in this run: asked for MaxRedeliveries
	// times already (the log names each; they are not counted again).
	Abandoned int `json:"abandoned"`
	// Deferred could not be sent now (connectors.ErrDeferred: a webhook
	// the sender holds disabled): read and asked for again next run.
	Deferred int `json:"deferred"`
	// Unread counts the logs read only in part (connectors.ErrUnread):
	// the sender held more attempts since the watermark than a run reads.
	Unread int `json:"unread"`
}

// watermarkKey is the row of the redeliverer's watermark of a log among
// the pollers' watermarks: "redeliver:<connector>" for the sender's only
// (or default) log, "redeliver:<connector>:<log>" for each of several.
func (r *Redeliverer) watermarkKey(log string) string {
	if log == "" {
		return "redeliver:" + r.name
	}
	return "redeliver:" + r.name + ":" + log
}

// RunOnce reads the sender's attempts since each log's watermark (less an
// overlap; a log without one from the connector's, InitialLookback before
// the first run), asks for the failed deliveries again, oldest first, and
// moves each log's watermark to the newest attempt read in it — or, when
// it left a delivery of the log (the run's limit, the sender failing or
// deferring it), to the oldest left, so the next run finds it again. A
// webhook the sender holds disabled so keeps its own watermark back, not
// the others'.
func (r *Redeliverer) RunOnce(ctx context.Context) (RedeliverRun, error) {
	var run RedeliverRun
	now := r.clock.Now()
	wm, ok, err := r.store.Watermark(ctx, r.watermarkKey(""))
	if err != nil {
		return run, err
	}
	if !ok {
		wm = now.Add(-InitialLookback)
	}
	for id, a := range r.asked {
		if now.Sub(a.last) > redeliverMemory {
			delete(r.asked, id)
		}
	}
	marks := &logMarks{r: r, ctx: ctx, first: wm, from: map[string]time.Time{"": wm}, newest: map[string]time.Time{"": wm}, held: map[string]bool{}}
	byID, err := r.read(ctx, marks, &run)
	if err != nil {
		return run, err
	}
	var failed []connectors.Delivery
	for id, s := range byID {
		switch {
		case s.ok:
			delete(r.asked, id)
		case s.last.Transient():
			failed = append(failed, s.last)
		}
	}
	sort.Slice(failed, func(i, j int) bool { return failed[i].At.Before(failed[j].At) })
	run.Failed = len(failed)
	stop := r.ask(ctx, failed, byID, now, &run, marks)
	r.count("requested", run.Requested)
	r.count("stored", run.Stored)
	r.count("abandoned", run.Abandoned)
	r.count("deferred", run.Deferred)
	if err := marks.save(ctx); err != nil {
		if stop != nil {
			r.log.WarnContext(ctx, "redelivery watermark not stored", "connector", r.name, "error", err.Error())
			return run, stop
		}
		return run, err
	}
	return run, stop
}

// seenDelivery is what a run read of one delivery's attempts.
type seenDelivery struct {
	ok       bool // one attempt succeeded
	attempts int
	last     connectors.Delivery // the newest attempt
}

// read reads each log's attempts made since its watermark less the
// overlap, by delivery, moving marks to the newest attempt of each log.
func (r *Redeliverer) read(ctx context.Context, marks *logMarks, run *RedeliverRun) (map[string]*seenDelivery, error) {
	byID := map[string]*seenDelivery{}
	err := r.src.Deliveries(ctx, marks.since, func(d connectors.Delivery) error {
		run.Attempts++
		marks.saw(d)
		if d.GUID == "" {
			return nil
		}
		s := byID[d.GUID]
		if s == nil {
			s = &seenDelivery{last: d}
			byID[d.GUID] = s
		} else if d.At.After(s.last.At) {
			s.last = d
		}
		s.attempts++
		s.ok = s.ok || d.OK
		return nil
	})
	if unread, only := connectors.SplitUnread(err); only {
		// What was read is asked for; what a log holds beyond the run's
		// limit no later run reaches either: said, loudly, once.
		for _, u := range unread {
			r.log.ErrorContext(ctx, "redelivery: "+u.Error(), "connector", r.name)
		}
		r.count("unread", len(unread))
		run.Unread = len(unread)
		err = nil
	}
	if err == nil {
		err = marks.err
	}
	if err != nil {
		return nil, fmt.Errorf("list %s deliveries: %w", r.name, err)
	}
	return byID, nil
}

// ask asks the sender for each failed delivery again, oldest first,
// unless the inbox holds it, it was settled before, or it has been asked
// for MaxRedeliveries times; the watermarks are held back before the
// deliveries left (the run's limit, the sender deferring one, or the
// sender failing, whose error it returns).
func (r *Redeliverer) ask(ctx context.Context, failed []connectors.Delivery, byID map[string]*seenDelivery, now time.Time, run *RedeliverRun, marks *logMarks) error {
	if len(failed) == 0 {
		return nil
	}
	ids := make([]string, len(failed))
	for i, d := range failed {
		ids[i] = d.GUID
	}
	stored, err := r.store.StoredKeys(ctx, r.name, ids)
	if err != nil {
		marks.hold(failed...)
		return err
	}
	for i, d := range failed {
		a := r.asked[d.GUID]
		switch {
		case a.n < 0:
			continue // settled in an earlier run: stored, given up on, or refused by the sender
		case stored[d.GUID]:
			run.Stored++
			r.asked[d.GUID] = redeliverAsk{n: -1, last: now}
			continue
		case a.n >= MaxRedeliveries || byID[d.GUID].attempts > MaxRedeliveries:
			run.Abandoned++
			r.asked[d.GUID] = redeliverAsk{n: -1, last: now}
			r.log.ErrorContext(ctx, "delivery still failing after redeliveries: giving up; see the sender's delivery log",
				"connector", r.name, "delivery", d.GUID, "event", d.Event, "action", d.Action, "status", d.StatusCode,
				"attempts", byID[d.GUID].attempts)
			continue
		case run.Requested >= maxRedeliveriesPerRun:
			marks.hold(failed[i:]...)
			return nil
		}
		if err := r.src.Redeliver(ctx, d); err != nil {
			if errors.Is(err, connectors.ErrDeferred) {
				// This one cannot be sent now; the others can. The
				// watermark stays before it, so the next run reads it
				// again (the others, stored by then, are not asked twice).
				marks.hold(d)
				run.Deferred++
				r.log.DebugContext(ctx, "redelivery deferred", "connector", r.name, "delivery", d.GUID, "error", err.Error())
				continue
			}
			if core.IsKind(err, core.KindInvalid) {
				// The sender refused this one for good (too old to
				// redeliver, gone): asking again would not help.
				r.log.WarnContext(ctx, "redelivery refused", "connector", r.name, "delivery", d.GUID, "error", err.Error())
				r.asked[d.GUID] = redeliverAsk{n: -1, last: now}
				r.count("refused", 1)
				continue
			}
			marks.hold(failed[i:]...)
			return fmt.Errorf("redeliver %s delivery %s: %w", r.name, d.GUID, err)
		}
		run.Requested++
		r.asked[d.GUID] = redeliverAsk{n: a.n + 1, last: now}
		r.log.InfoContext(ctx, "asked the sender to redeliver a failed delivery", "connector", r.name, "delivery", d.GUID,
			"event", d.Event, "action", d.Action, "status", d.StatusCode, "failed_at", d.At, "redelivery", a.n+1)
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// logMarks are one run's watermarks, one per log of the sender.
type logMarks struct {
	r   *Redeliverer
	ctx context.Context
	// first is where a log without a watermark of its own starts: the
	// connector's (the log "" — a GitHub App's only one).
	first  time.Time
	from   map[string]time.Time // each log's watermark as read
	newest map[string]time.Time // each log read: where its watermark goes
	held   map[string]bool      // logs whose watermark a delivery left holds back
	err    error                // reading a log's watermark failed
}

// since is where log is read from: its watermark less the overlap.
func (m *logMarks) since(log string) time.Time {
	wm, ok := m.from[log]
	if !ok {
		wm = m.first
		stored, found, err := m.r.store.Watermark(m.ctx, m.r.watermarkKey(log))
		switch {
		case err != nil:
			m.err = errors.Join(m.err, err)
		case found:
			wm = stored
		}
		m.from[log], m.newest[log] = wm, wm
	}
	return wm.Add(-redeliverOverlap)
}

// saw moves d's log's watermark to d when it is newer.
func (m *logMarks) saw(d connectors.Delivery) {
	if _, ok := m.from[d.Log]; !ok {
		m.since(d.Log) // a sender that did not ask for this log's since
	}
	if d.At.After(m.newest[d.Log]) {
		m.newest[d.Log] = d.At
	}
}

// hold keeps each delivery's log's watermark at or before it.
func (m *logMarks) hold(ds ...connectors.Delivery) {
	for _, d := range ds {
		m.newest[d.Log] = minTime(m.newest[d.Log], d.At)
		m.held[d.Log] = true
	}
}

// save stores every log's watermark, and the connector's: the log ""'s
// (a GitHub App's own), which is also where a log that appears later (a
// webhook added) starts — so, unless a delivery of "" holds it back, the
// newest any log got to.
func (m *logMarks) save(ctx context.Context) error {
	for log, wm := range m.newest {
		if log != "" && !m.held[""] && wm.After(m.newest[""]) {
			m.newest[""] = wm
		}
	}
	var errs []error
	for log, wm := range m.newest {
		if err := m.r.store.SetWatermark(ctx, m.r.watermarkKey(log), wm); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
