package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/metrics"
)

// This file is what tollgate asks of the ITSMs (ServiceNow, Jira) through
// their APIs, and tells them: pollers that bring what a lost webhook
// missed, the gate's read-back of a change the store does not know, the
// change opened for a release that links none, and work notes written
// back from a durable outbox. Records read through an API go through the
// inbox like webhook deliveries: the same mapping profiles, the same
// versioning and out-of-order rules.

// Ingest stores a record read from connector's API as an inbox event
// (deduplicated on its key and update stamp). With now, it is normalized
// at once (the gate's read-back needs it stored before it answers);
// otherwise the normalizer takes it. It returns what the record became
// ("change:CHG0000024") when normalized.
func (in *Inbox) Ingest(ctx context.Context, connector string, rec connectors.Record, now bool) (string, error) {
	id, dup, err := in.store.InsertEvent(ctx, core.Event{
		Connector: connector, Type: rec.Type,
		DedupeKey:  "api:" + rec.Key + "@" + rec.UpdatedAt.UTC().Format(time.RFC3339Nano),
		Headers:    map[string]string{"X-Tollgate-Source": "api"},
		Body:       rec.Body,
		ReceivedAt: in.clock.Now(), Status: core.EventPending,
	})
	if err != nil {
		return "", fmt.Errorf("store %s record %s: %w", connector, rec.Key, err)
	}
	if !now {
		if !dup {
			in.count(connector, "polled")
			in.Wake()
		}
		return "", nil
	}
	e, err := in.store.GetEvent(ctx, id)
	if err != nil {
		return "", fmt.Errorf("load event %s: %w", id, err)
	}
	if e.Status == core.EventProcessed {
		return e.Record, nil
	}
	status, reason, record, err := in.normalize(ctx, e)
	if err != nil {
		return "", err
	}
	if err := in.store.FinishEvent(ctx, e.ID, status, reason, record); err != nil && !core.IsKind(err, core.KindConflict) {
		return "", fmt.Errorf("finish event %s: %w", e.ID, err)
	}
	in.count(connector, status)
	if status != core.EventProcessed {
		return "", core.Invalid("record", "%s record %s was %s: %s", connector, rec.Key, status, reason)
	}
	return record, nil
}

// PollSource lists the records of one ITSM updated at or after since,
// oldest first.
type PollSource interface {
	Poll(ctx context.Context, since time.Time, emit func(connectors.Record) error) error
}

// PollStore is what a poller needs from storage: its lease and watermark.
type PollStore interface {
	Leaser
	Watermark(ctx context.Context, connector string) (time.Time, bool, error)
	SetWatermark(ctx context.Context, connector string, wm time.Time) error
}

// Poller constants.
const (
	// InitialLookback is how far back a poller's first poll reads.
	InitialLookback = 24 * time.Hour
	// pollOverlap is read again on every poll: Jira's JQL dates have
	// minute precision and records updated in the same second as the
	// watermark must not be skipped. The inbox deduplicates the repeats.
	pollOverlap = time.Minute
	// pollLeaseRetry is the wait after the lease could not be read (the
	// database is away) when the interval is longer.
	pollLeaseRetry = time.Second
)

// Poller brings the records of one connector's API into the inbox every
// interval, on one replica at a time (the holder of the lease
// "poll:<connector>"), from a durable watermark.
type Poller struct {
	name     string
	src      PollSource
	store    PollStore
	inbox    *Inbox
	interval time.Duration
	holder   string
	clock    core.Clock
	log      *slog.Logger
	metrics  *metrics.Set
	lastOK   time.Time
	leaseTTL time.Duration   // 0: 2×interval + 30 s
	hooks    map[string]bool // the source's webhooks (HookWatcher): disabled, as last read
}

// NewPoller wires a poller; holder names this replica for the lease.
func NewPoller(name string, src PollSource, store PollStore, inbox *Inbox, interval time.Duration, holder string, clock core.Clock, log *slog.Logger, m *metrics.Set) *Poller {
	return &Poller{name: name, src: src, store: store, inbox: inbox, interval: interval, holder: holder, clock: clock, log: log, metrics: m}
}

// SetLeaseTTL sets how long the poll lease lasts past each renewal —
// how long a replica that stopped answering keeps the others from
// polling — instead of twice the interval plus 30 s.
func (p *Poller) SetLeaseTTL(d time.Duration) { p.leaseTTL = d }

// Run polls every interval until ctx ends, then gives up its lease so
// another replica takes over at once.
func (p *Poller) Run(ctx context.Context) {
	start := p.clock.Now()
	defer p.forgetHooks()
	leased{name: "poll:" + p.name, holder: p.holder, interval: p.interval, ttl: p.leaseTTL, store: p.store, log: p.log,
		idle: func(context.Context) { p.forgetHooks() }}.run(ctx,
		func(ctx context.Context) {
			if _, err := p.PollOnce(ctx); err != nil && ctx.Err() == nil {
				p.failed(ctx, err)
			} else if err == nil {
				p.CheckHooks(ctx)
			}
			if p.metrics != nil {
				last := p.lastOK
				if last.IsZero() {
					last = start
				}
				p.metrics.PollLag.WithLabelValues(p.name).Set(p.clock.Now().Sub(last).Seconds())
			}
		}, p.failed)
}

// Leaser is the lease table: one replica at a time holds a named lease.
type Leaser interface {
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

// leased runs work every interval on the replica that holds the lease
// name, until ctx ends, and then gives the lease up so another replica
// takes over at once.
type leased struct {
	name, holder string
	interval     time.Duration
	ttl          time.Duration // 0: 2×interval + 30 s
	store        Leaser
	log          *slog.Logger
	// idle, when set, runs when another replica holds the lease: what
	// this one reported as the holder is no longer its to report.
	idle func(context.Context)
}

func (l leased) run(ctx context.Context, work func(context.Context), leaseFailed func(context.Context, error)) {
	t := time.NewTimer(0)
	defer t.Stop()
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := l.store.ReleaseLease(rctx, l.name, l.holder); err != nil {
			l.log.Warn("lease not released", "lease", l.name, "error", err.Error())
		}
	}()
	ttl := l.ttl
	if ttl <= 0 {
		ttl = 2*l.interval + 30*time.Second
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		held, err := l.store.AcquireLease(ctx, l.name, l.holder, ttl)
		next := l.interval
		switch {
		case err != nil:
			leaseFailed(ctx, err)
			// The database is away: try again soon, not an interval
			// later, so that the work resumes within about a second of
			// its return whatever the interval.
			next = min(l.interval, pollLeaseRetry)
		case held:
			work(ctx)
		case l.idle != nil:
			l.idle(ctx)
		}
		t.Reset(next)
	}
}

func (p *Poller) failed(ctx context.Context, err error) {
	if p.metrics != nil {
		p.metrics.PollErrors.WithLabelValues(p.name).Inc()
	}
	p.log.WarnContext(ctx, "poll failed", "connector", p.name, "error", err.Error())
}

// overlap is how far before the watermark a poll reads: pollOverlap, or
// more when the source says its search lags behind writes (Jira Cloud's:
// a record updated before the newest one read may be found only later).
func (p *Poller) overlap() time.Duration {
	if o, ok := p.src.(interface{ PollOverlap() time.Duration }); ok {
		return max(pollOverlap, o.PollOverlap())
	}
	return pollOverlap
}

// PollOnce reads what changed since the watermark into the inbox and
// advances the watermark to the newest stamp read. It returns how many
// records it read.
func (p *Poller) PollOnce(ctx context.Context) (int, error) {
	wm, ok, err := p.store.Watermark(ctx, p.name)
	if err != nil {
		return 0, err
	}
	if !ok {
		wm = p.clock.Now().Add(-InitialLookback)
	}
	since := wm.Add(-p.overlap())
	newest, n := wm, 0
	// A stamp further ahead than the inbox takes (its record is refused
	// there) does not move the watermark: one record stamped years ahead
	// would otherwise stop the polls — the net for lost webhooks — until
	// then.
	limit := p.clock.Now().Add(p.futureSkew())
	err = p.src.Poll(ctx, since, func(r connectors.Record) error {
		if _, err := p.inbox.Ingest(ctx, p.name, r, false); err != nil {
			return err
		}
		n++
		if r.UpdatedAt.After(newest) && !r.UpdatedAt.After(limit) {
			newest = r.UpdatedAt
		}
		return nil
	})
	// Whatever was stored before a failure is durable: keep the progress.
	if newest.After(wm) || !ok {
		if serr := p.store.SetWatermark(ctx, p.name, newest); serr != nil && err == nil {
			err = serr
		}
	}
	if err != nil {
		return n, fmt.Errorf("poll %s: %w", p.name, err)
	}
	p.lastOK = p.clock.Now()
	if p.metrics != nil {
		p.metrics.PollLag.WithLabelValues(p.name).Set(0)
	}
	p.log.DebugContext(ctx, "polled", "connector", p.name, "records", n, "watermark", newest)
	return n, nil
}

// futureSkew is how far ahead a stamp the inbox takes may lie.
func (p *Poller) futureSkew() time.Duration {
	if p.inbox == nil || p.inbox.cfg.MaxFutureSkew <= 0 {
		return defaultMaxFutureSkew
	}
	return p.inbox.cfg.MaxFutureSkew
}

// ChangeReader reads one change from an ITSM by key.
type ChangeReader interface {
	Name() string
	// System names the instance for messages ("ServiceNow acme").
	System() string
	// OwnsChange reports whether key has the shape of this instance's
	// change keys.
	OwnsChange(key string) bool
	// ReadChange returns the change's record; connectors.ErrNotFound
	// (wrapped) when the instance has none.
	ReadChange(ctx context.Context, key string) (connectors.Record, error)
}

// ReadBack answers the gate's question about changes the store does not
// know by asking the owning ITSM, once per key at a time, within the
// connector's read_back_timeout; what it finds is stored (through the
// inbox) before the gate evaluates.
type ReadBack struct {
	readers []readBackSource
	inbox   *Inbox
	log     *slog.Logger
	sf      singleflight.Group
}

type readBackSource struct {
	r       ChangeReader
	timeout time.Duration
}

// NewReadBack wires an empty read-back; Add the readers.
func NewReadBack(inbox *Inbox, log *slog.Logger) *ReadBack { return &ReadBack{inbox: inbox, log: log} }

// Add registers a reader with its time budget.
func (rb *ReadBack) Add(r ChangeReader, timeout time.Duration) {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	rb.readers = append(rb.readers, readBackSource{r: r, timeout: timeout})
}

// Len is the number of readers.
func (rb *ReadBack) Len() int { return len(rb.readers) }

// ReadBack implements the gate's ChangeReadBack.
func (rb *ReadBack) ReadBack(ctx context.Context, keys []string) (bool, map[string]string) {
	var (
		stored bool
		notes  = map[string]string{}
	)
	ch := make(chan answer, len(keys))
	asked := 0
	for _, key := range keys {
		src, ok := rb.owner(key)
		if !ok {
			continue
		}
		asked++
		go func() {
			v, _, _ := rb.sf.Do(key, func() (any, error) {
				// The call is shared by every check waiting for this key:
				// it runs to its own budget, whoever asked first.
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), src.timeout)
				defer cancel()
				return rb.fetch(cctx, src.r, key), nil
			})
			a := v.(answer)
			a.key = key
			ch <- a
		}()
	}
	for i := 0; i < asked; i++ {
		select {
		case a := <-ch:
			if a.ok {
				stored = true
			} else {
				notes[a.key] = a.note
			}
		case <-ctx.Done():
			return stored, notes
		}
	}
	return stored, notes
}

// answer is one key's read-back outcome.
type answer struct {
	key, note string
	ok        bool
}

func (rb *ReadBack) owner(key string) (readBackSource, bool) {
	for _, s := range rb.readers {
		if s.r.OwnsChange(key) {
			return s, true
		}
	}
	return readBackSource{}, false
}

// fetch reads and stores one change; the note says why it is not there.
func (rb *ReadBack) fetch(ctx context.Context, r ChangeReader, key string) answer {
	rec, err := r.ReadChange(ctx, key)
	if errors.Is(err, connectors.ErrNotFound) {
		return answer{note: "not in " + r.System()}
	}
	if err != nil {
		rb.log.WarnContext(ctx, "read-back failed", "connector", r.Name(), "key", key, "error", err.Error())
		return answer{note: r.System() + " unreachable: " + unreachable(err)}
	}
	record, err := rb.inbox.Ingest(ctx, r.Name(), rec, true)
	if err != nil {
		rb.log.WarnContext(ctx, "read-back record not stored", "connector", r.Name(), "key", key, "error", err.Error())
		return answer{note: "read from " + r.System() + " but not stored: " + err.Error()}
	}
	if record != "change:"+key {
		return answer{note: fmt.Sprintf("%s %s is not a change (it maps to %q)", r.System(), key, record)}
	}
	return answer{ok: true}
}

// unreachable words an API failure for a gate reason: the instance's
// own text without the instance's name repeated.
func unreachable(err error) string {
	s := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer within the read-back budget"
	}
	if i := strings.Index(s, ": "); i > 0 && (strings.HasPrefix(s, "ServiceNow ") || strings.HasPrefix(s, "Jira ")) {
		s = s[i+2:]
	}
	return s
}

// ChangeOpener opens changes in one ITSM.
type ChangeOpener interface {
	Name() string
	System() string
	CreateChange(ctx context.Context, n connectors.NewChange) (string, error)
	// FindCreated returns the change opened for a release earlier
	// (connectors.ErrNotFound when none): after a crash between the call
	// and recording its answer.
	FindCreated(ctx context.Context, releaseID string) (string, error)
}

// CreationStore keeps the durable record of changes opened for releases.
type CreationStore interface {
	ClaimCreation(ctx context.Context, releaseID, connector string, staleAfter time.Duration) (core.ChangeCreation, bool, error)
	GetCreation(ctx context.Context, releaseID string) (core.ChangeCreation, error)
	FinishCreation(ctx context.Context, releaseID, key, errText string) error
}

// Creation budget: an attempt not finished after creationStale is
// presumed crashed and may be taken over; a check waits at most
// creationWait for another one's attempt.
const (
	creationStale = 2 * time.Minute
	creationWait  = 30 * time.Second
)

// Creator opens a change for a release that links none, in the ITSM whose
// change_creation covers the environment: exactly one per release, the
// intent recorded durably before the ITSM is called.
type Creator struct {
	store   CreationStore
	openers []creatorEntry
	log     *slog.Logger
	metrics *metrics.Set
	sf      singleflight.Group
	stale   atomic.Int64 // creationStale unless SetStaleAfter changed it
}

// SetStaleAfter sets how long a pending attempt may last before another
// check presumes it crashed and takes it over (tests).
func (c *Creator) SetStaleAfter(d time.Duration) { c.stale.Store(int64(d)) }

type creatorEntry struct {
	o    ChangeOpener
	envs *connectors.ChangeCreation
}

// NewCreator wires an empty creator; Add the openers.
func NewCreator(store CreationStore, log *slog.Logger, m *metrics.Set) *Creator {
	c := &Creator{store: store, log: log, metrics: m}
	c.stale.Store(int64(creationStale))
	return c
}

// Add registers an opener for the environments its configuration covers.
func (c *Creator) Add(o ChangeOpener, cfg *connectors.ChangeCreation) {
	c.openers = append(c.openers, creatorEntry{o: o, envs: cfg})
}

// Len is the number of openers.
func (c *Creator) Len() int { return len(c.openers) }

// CreationFailed is the ITSM's refusal to open a change.
type CreationFailed struct {
	System string
	Err    error
}

func (e *CreationFailed) Error() string { return e.System + " did not open a change: " + e.Err.Error() }
func (e *CreationFailed) Unwrap() error { return e.Err }

// OpenChange implements the gate's ChangeOpener: the key of the change
// opened for the release (opening it when none is), handled=false when no
// connector's change_creation covers the environment. A refusal by the
// ITSM is a *CreationFailed; other errors (the database) are the
// caller's.
func (c *Creator) OpenChange(ctx context.Context, req core.GateRequest, releaseID string) (string, string, bool, error) {
	var entry *creatorEntry
	for i := range c.openers {
		if c.openers[i].envs.Covers(req.Environment) {
			entry = &c.openers[i]
			break
		}
	}
	if entry == nil {
		return "", "", false, nil
	}
	v, err, _ := c.sf.Do(releaseID, func() (any, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), creationWait)
		defer cancel()
		return c.open(cctx, entry.o, req, releaseID)
	})
	if err != nil {
		return "", entry.o.System(), true, err
	}
	return v.(string), entry.o.System(), true, nil
}

func (c *Creator) open(ctx context.Context, o ChangeOpener, req core.GateRequest, releaseID string) (string, error) {
	for {
		rec, own, err := c.store.ClaimCreation(ctx, releaseID, o.Name(), time.Duration(c.stale.Load()))
		if err != nil {
			return "", err
		}
		if !own {
			switch rec.Status {
			case core.CreationCreated:
				return rec.ChangeKey, nil
			case core.CreationFailed:
				return "", &CreationFailed{System: o.System(), Err: errors.New(rec.Error)}
			}
			// Another replica's attempt is under way: wait for its answer.
			select {
			case <-ctx.Done():
				return "", core.Wrap(core.KindUnavailable, ctx.Err(), "another check is opening the change for release "+releaseID)
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		if rec.Attempts > 1 {
			// An earlier attempt may have opened the change and crashed
			// before recording it: look before opening another.
			key, err := o.FindCreated(ctx, releaseID)
			if err == nil {
				return key, c.finish(ctx, o, releaseID, key, nil)
			}
			if !errors.Is(err, connectors.ErrNotFound) {
				return "", c.finish(ctx, o, releaseID, "", err)
			}
		}
		key, err := o.CreateChange(ctx, connectors.NewChange{
			ReleaseID: releaseID, Service: req.Service, Environment: req.Environment, Version: req.Version,
			Commit: req.Commit, Team: req.Team, Actor: req.Actor, RunURL: runURL(req),
		})
		return key, c.finish(ctx, o, releaseID, key, err)
	}
}

func runURL(req core.GateRequest) string {
	if req.Pipeline == nil {
		return ""
	}
	return req.Pipeline.URL
}

// finish records the attempt's outcome; a refusal is returned as a
// *CreationFailed after it is recorded (and audited).
func (c *Creator) finish(ctx context.Context, o ChangeOpener, releaseID, key string, callErr error) error {
	outcome := "created"
	errText := ""
	if callErr != nil {
		outcome, key, errText = "failed", "", callErr.Error()
	}
	if c.metrics != nil {
		c.metrics.ChangeCreate.WithLabelValues(o.Name(), outcome).Inc()
	}
	if err := c.store.FinishCreation(ctx, releaseID, key, errText); err != nil {
		return err
	}
	if callErr != nil {
		c.log.WarnContext(ctx, "change creation failed", "connector", o.Name(), "release_id", releaseID, "error", errText)
		return &CreationFailed{System: o.System(), Err: callErr}
	}
	c.log.InfoContext(ctx, "change opened for release", "connector", o.Name(), "release_id", releaseID, "change", key)
	return nil
}

// ITSM is the ITSMGate of the configured connectors: either part may be
// nil.
type ITSM struct {
	Reads   *ReadBack
	Creates *Creator
}

var _ ITSMGate = ITSM{}

// ReadBack implements ITSMGate.
func (i ITSM) ReadBack(ctx context.Context, keys []string) (bool, map[string]string) {
	if i.Reads == nil {
		return false, nil
	}
	return i.Reads.ReadBack(ctx, keys)
}

// OpenChange implements ITSMGate.
func (i ITSM) OpenChange(ctx context.Context, req core.GateRequest, releaseID string) (string, string, bool, error) {
	if i.Creates == nil {
		return "", "", false, nil
	}
	return i.Creates.OpenChange(ctx, req, releaseID)
}

// openedChange is what change creation did for one check.
type openedChange struct {
	key, system string
	failed      *CreationFailed
}

// openChange links the change opened for a release that links none (when
// a connector opens changes for its environment).
func (g *Gate) openChange(ctx context.Context, req core.GateRequest, releaseID string) (core.GateRequest, openedChange, error) {
	if len(req.Changes) > 0 {
		return req, openedChange{}, nil
	}
	key, system, handled, err := g.ITSM.OpenChange(ctx, req, releaseID)
	var failed *CreationFailed
	switch {
	case !handled:
		return req, openedChange{}, nil
	case errors.As(err, &failed):
		return req, openedChange{system: system, failed: failed}, nil
	case err != nil:
		return req, openedChange{}, fmt.Errorf("open a change for release %s: %w", releaseID, err)
	}
	req.Changes = []string{key}
	return req, openedChange{key: key, system: system}, nil
}

// readBack asks the ITSMs for the linked changes the facts lack and, when
// any was stored, gathers the facts again.
func (g *Gate) readBack(ctx context.Context, q core.FactsQuery, facts core.Facts) (core.Facts, map[string]string, error) {
	var missing []string
	for _, k := range q.ChangeKeys {
		if _, ok := facts.Changes[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return facts, nil, nil
	}
	stored, notes := g.ITSM.ReadBack(ctx, missing)
	if !stored {
		return facts, notes, nil
	}
	f, err := g.store.GateFacts(ctx, q)
	return f, notes, err
}

// annotateITSM adds what the ITSMs said to a decision: why a change was
// not found, and the change tollgate opened (or could not open). The
// reasons about a change tollgate just opened for the release (not yet
// approved, incomplete, no window, not found yet) become one
// CHANGE_CREATED wait: the ITSM's workflow completes it. A rejected or
// canceled change still denies.
func annotateITSM(d *core.GateDecision, notes map[string]string, o openedChange) {
	for i := range d.Reasons {
		r := &d.Reasons[i]
		if r.Code == core.CodeChangeNotFound {
			if n, ok := notes[r.Ref]; ok {
				r.Message += ": " + n
			}
		}
	}
	switch {
	case o.failed != nil:
		kept := d.Reasons[:0]
		for _, r := range d.Reasons {
			if r.Code != core.CodeNoChange {
				kept = append(kept, r)
			}
		}
		d.Reasons = append(kept, core.Reason{Code: core.CodeChangeCreationFailed, Result: core.Deny, Ref: d.ReleaseID,
			Message: "the release links no change and " + o.failed.Error()})
	case o.key != "":
		var (
			folded []string
			kept   = make([]core.Reason, 0, len(d.Reasons))
		)
		for _, r := range d.Reasons {
			if r.Ref == o.key && r.Result != "" && !(r.Code == core.CodeChangeNotApproved && r.Result == core.Deny) {
				folded = append(folded, r.Message)
				continue
			}
			kept = append(kept, r)
		}
		msg := fmt.Sprintf("tollgate opened change %s in %s for this release", o.key, o.system)
		created := core.Reason{Code: core.CodeChangeCreated, Ref: o.key, Message: msg}
		if len(folded) > 0 {
			created.Result = core.Wait
			created.Message = msg + "; waiting for it: " + strings.Join(folded, "; ")
		}
		d.Reasons = append([]core.Reason{created}, kept...)
	default:
		return
	}
	d.Decision = core.Allow
	for _, r := range d.Reasons {
		switch r.Result {
		case core.Deny:
			d.Decision = core.Deny
		case core.Wait:
			if d.Decision == core.Allow {
				d.Decision = core.Wait
			}
		}
	}
}
