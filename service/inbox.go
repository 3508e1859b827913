package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/mapping"
)

// InboxStore is what the inbox and its normalizer need from storage.
type InboxStore interface {
	InsertEvent(ctx context.Context, e core.Event) (string, bool, error)
	ClaimEvents(ctx context.Context, limit int, lease time.Duration) ([]core.Event, error)
	ExtendClaims(ctx context.Context, ids []string, until, newUntil time.Time) (int, error)
	FinishEvent(ctx context.Context, id, status, reason, record string) error
	FinishEvents(ctx context.Context, outcomes []core.EventOutcome) ([]bool, error)
	RetryEvent(ctx context.Context, id, lastError string, retryAt time.Time) error
	PostponeEvent(ctx context.Context, id, lastError string, retryAt time.Time) error
	GetEvent(ctx context.Context, id string) (core.Event, error)
	ListEvents(ctx context.Context, f core.EventFilter) ([]core.Event, error)
	ReplayEvent(ctx context.Context, id, actor string) error
	ReplayQuarantined(ctx context.Context, connector, actor string) (int, error)
	InboxLag(ctx context.Context) (time.Time, int, error)
	// Together runs fn with a context under which the store's
	// transactions are one, committed when fn returns nil; SharesCommits
	// says whether that is worth holding its locks for.
	Together(ctx context.Context, fn func(ctx context.Context) error) error
	SharesCommits() bool
	UpsertChange(ctx context.Context, c core.Change) (core.UpsertResult, error)
	UpsertIncident(ctx context.Context, i core.Incident) (core.UpsertResult, error)
	SignOffPIR(ctx context.Context, releaseID, by, summary string, at time.Time) (core.PIR, error)
}

// Connector is one configured connector with its webhook adapter.
type Connector struct {
	Config  connectors.Config
	Webhook connectors.Webhook
	// Enricher, when set, completes each raw record through the system's
	// API before it is mapped (webhook and poll alike).
	Enricher Enricher
	// Previous, while the connector's webhook secret is rotated, verifies
	// deliveries with the previous secret (webhook_secret_previous) when
	// the current one refuses them.
	Previous connectors.Webhook
}

// Enricher completes a raw record before mapping: ServiceNow references
// given as bare sys_ids get display values, changes get their approvers.
// An error means the record cannot be completed now: a *StatusError-like
// 4xx answer quarantines the event (replayable once fixed), anything else
// leaves it to be retried.
type Enricher interface {
	Enrich(ctx context.Context, eventType string, body []byte) ([]byte, error)
}

// InboxWaker is implemented by a store that announces stored deliveries
// (on every replica): the normalizer then wakes at once instead of at its
// next poll.
type InboxWaker interface {
	SubscribeInbox() (<-chan string, func())
}

// InboxConfig tunes the normalizer.
type InboxConfig struct {
	Workers      int
	BatchSize    int
	Lease        time.Duration
	PollInterval time.Duration
	// MaxAttempts is how many claims an event gets before it is
	// quarantined with its last error (default 5).
	MaxAttempts int
	// MaxFutureSkew is how far in the future a source stamp may lie
	// (default 5m); a later one is quarantined.
	MaxFutureSkew time.Duration
	// StoreOnly makes Run start no workers: this replica stores and
	// acknowledges deliveries, other replicas normalize them (Run still
	// keeps the lag gauges).
	StoreOnly bool
}

// Inbox takes webhook deliveries (verify → store raw → acknowledge) and
// normalizes stored events into canonical records through the mapping
// profiles. Nothing is acknowledged before it is committed; an event that
// cannot be mapped is quarantined with its reason, never dropped.
type Inbox struct {
	store       InboxStore
	conns       map[string]Connector
	mappings    *Mappings
	deployments *Deployments
	metrics     *metrics.Set
	clock       core.Clock
	log         *slog.Logger
	cfg         InboxConfig
	wake        chan struct{}
	gates       *CIGates

	// stranded holds, with their last errors, the claims this process
	// could not give back because the database was unavailable; the next
	// batch hands them back (handBackStranded).
	stranded stranded[string]
	// previousSaid holds the connectors whose previous secret was used
	// (said once in the log).
	previousSaid sync.Map
}

// SetCIGates hands the gate requests of CIs that wait at their own gate
// (GateRequester connectors) to gates.
func (in *Inbox) SetCIGates(gates *CIGates) { in.gates = gates }

// NewInbox wires the inbox.
func NewInbox(store InboxStore, conns []Connector, mappings *Mappings, deployments *Deployments, m *metrics.Set, clock core.Clock, log *slog.Logger, cfg InboxConfig) *Inbox {
	byName := make(map[string]Connector, len(conns))
	for _, c := range conns {
		byName[c.Config.Name] = c
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 50
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * time.Minute
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.MaxFutureSkew <= 0 {
		cfg.MaxFutureSkew = defaultMaxFutureSkew
	}
	return &Inbox{store: store, conns: byName, mappings: mappings, deployments: deployments, metrics: m,
		clock: clock, log: log, cfg: cfg, wake: make(chan struct{}, 1)}
}

// previousSecret counts a delivery authenticated with the connector's
// previous secret, and says so in the log the first time.
func (in *Inbox) previousSecret(ctx context.Context, connector string) {
	if in.metrics != nil {
		in.metrics.PreviousSecret.WithLabelValues(connector).Inc()
	}
	if _, said := in.previousSaid.LoadOrStore(connector, true); !said {
		in.log.InfoContext(ctx, "a delivery was authenticated with webhook_secret_previous: the sender still uses the old secret "+
			"(tollgate_webhook_previous_secret_total counts them; remove webhook_secret_previous once it stops rising)", "connector", connector)
	}
}

func (in *Inbox) count(connector, outcome string) {
	if in.metrics != nil {
		in.metrics.InboxEvents.WithLabelValues(connector, outcome).Inc()
	}
}

// Connectors lists the configured connector names.
func (in *Inbox) Connectors() []string {
	out := make([]string, 0, len(in.conns))
	for n := range in.conns {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Receive authenticates one delivery, reads its type and delivery id, and
// stores it durably. Duplicates (same delivery id, or same body when the
// vendor sends no id) are acknowledged with duplicate=true, stored once.
// admit, when given, runs once the delivery is authenticated and before
// it is stored; its error refuses the delivery (the connector's rate
// limit: deliveries nobody signed must not spend the real sender's).
func (in *Inbox) Receive(ctx context.Context, name string, h http.Header, query url.Values, body []byte, admit func() error) (string, bool, error) {
	c, ok := in.conns[name]
	if !ok {
		return "", false, core.NotFound("connector", name)
	}
	if err := c.Webhook.Verify(h, query, body); err != nil {
		if c.Previous == nil || c.Previous.Verify(h, query, body) != nil {
			in.count(name, "rejected")
			in.log.WarnContext(ctx, "webhook refused", "connector", name, "reason", err.Error())
			return "", false, err
		}
		in.previousSecret(ctx, name)
	}
	if admit != nil {
		if err := admit(); err != nil {
			return "", false, err
		}
	}
	inb, err := c.Webhook.Classify(h, body)
	if err != nil {
		in.count(name, "rejected")
		return "", false, err
	}
	key := inb.DeliveryID
	if key == "" {
		sum := sha256.Sum256(body)
		key = "sha256:" + hex.EncodeToString(sum[:])
	}
	id, dup, err := in.store.InsertEvent(ctx, core.Event{
		Connector: name, Type: inb.Type, DedupeKey: key, Headers: inb.Headers, Body: body,
		ReceivedAt: in.clock.Now(), Status: core.EventPending,
	})
	if err != nil {
		return "", false, fmt.Errorf("store event from %s: %w", name, err)
	}
	if dup {
		in.count(name, "duplicate")
	} else {
		in.count(name, "received")
		in.Wake()
	}
	return id, dup, nil
}

// Wake nudges the normalizer (new events, replays).
func (in *Inbox) Wake() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// ListEvents lists stored events.
func (in *Inbox) ListEvents(ctx context.Context, f core.EventFilter) ([]core.Event, error) {
	return in.store.ListEvents(ctx, f)
}

// GetEvent returns one stored event with its body.
func (in *Inbox) GetEvent(ctx context.Context, id string) (core.Event, error) {
	return in.store.GetEvent(ctx, id)
}

// Replay puts one event back in the queue (after a mapping fix).
func (in *Inbox) Replay(ctx context.Context, id, actor string) error {
	if err := in.store.ReplayEvent(ctx, id, actor); err != nil {
		return err
	}
	in.Wake()
	return nil
}

// ReplayQuarantined requeues every quarantined event of a connector.
func (in *Inbox) ReplayQuarantined(ctx context.Context, connector, actor string) (int, error) {
	n, err := in.store.ReplayQuarantined(ctx, connector, actor)
	if err != nil {
		return 0, err
	}
	in.Wake()
	return n, nil
}

// Run runs the normalizer workers until ctx ends. When the store announces
// stored deliveries (InboxWaker), each announcement wakes a worker, so an
// event stored on any replica is normalized at once rather than at the
// next poll.
func (in *Inbox) Run(ctx context.Context) {
	workers := in.cfg.Workers
	if in.cfg.StoreOnly {
		workers = 0
	}
	if w, ok := in.store.(InboxWaker); ok && workers > 0 {
		wake, cancel := w.SubscribeInbox()
		defer cancel()
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-wake:
					in.Wake()
				}
			}
		}()
	}
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			in.worker(ctx)
		}()
	}
	// Every second: the drain is watched through these gauges (lag back
	// to 0 within seconds of a burst), so they must not trail it by more.
	in.updateLag(ctx)
	lag := time.NewTicker(time.Second)
	defer lag.Stop()
	stop := ctx.Done()
	for running := workers; ; {
		select {
		case <-done:
			if running--; running == 0 {
				return
			}
		case <-stop: // the workers stop with ctx; wait for them
			if running == 0 {
				return
			}
			stop = nil
		case <-lag.C:
			in.updateLag(ctx)
		}
	}
}

func (in *Inbox) updateLag(ctx context.Context) {
	if in.metrics == nil {
		return
	}
	oldest, n, err := in.store.InboxLag(ctx)
	if err != nil {
		return
	}
	in.metrics.InboxPending.Set(float64(n))
	if oldest.IsZero() {
		in.metrics.InboxLag.Set(0)
	} else {
		in.metrics.InboxLag.Set(in.clock.Now().Sub(oldest).Seconds())
	}
}

// worker normalizes batches until ctx ends. Its writes are replayable
// (core.WithReplayableWrites): everything it stores is derived from the
// inbox's deliveries, which were durable before their senders were
// answered, and an event whose outcome a crash of the database loses is
// pending again. So its commits do not wait for their flushes, and the
// deliveries' and decisions' commits, which must, do not queue behind
// them. What it answers to the outside (a CI's gate request, a
// protection-rule callback) follows a gate decision, which the audit
// chain's group commit makes durable together with everything before it.
func (in *Inbox) worker(ctx context.Context) {
	ctx = core.WithReplayableWrites(ctx)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-in.wake:
		case <-t.C:
		}
		for ctx.Err() == nil {
			n, err := in.ProcessBatch(ctx)
			if err != nil {
				if ctx.Err() == nil { // a claim cancelled by the stop is no failure
					in.log.WarnContext(ctx, "normalizer batch failed", "error", err.Error())
				}
				break
			}
			if n < in.cfg.BatchSize {
				break
			}
		}
		t.Reset(in.cfg.PollInterval)
	}
}

// settleTimeout bounds recording the outcomes of a batch whose context
// ended (the process is stopping): the work is done, and recording it
// spares the events a second processing and an attempt after the restart.
const settleTimeout = 5 * time.Second

// ProcessBatch claims and normalizes one batch; it returns how many events
// it claimed. The batch's outcomes are recorded together (one statement);
// when that fails, each event is settled on its own: whatever one event
// does (fails to map, carries bytes the database refuses, panics the
// mapping, keeps failing), it is quarantined or retried alone and the rest
// of the batch goes on. When ctx ends mid-batch, the events not yet
// processed are handed back uncounted. The error is only the claim's.
func (in *Inbox) ProcessBatch(ctx context.Context) (int, error) {
	in.handBackStranded(ctx)
	evs, err := in.store.ClaimEvents(ctx, in.cfg.BatchSize, in.cfg.Lease)
	if err != nil {
		return 0, fmt.Errorf("claim events: %w", err)
	}
	defer in.keepClaimed(ctx, evs)()
	done, settled, rest := in.storeTogether(ctx, evs)
	for i, e := range rest {
		if ctx.Err() != nil {
			in.handBack(ctx, rest[i:])
			break
		}
		if o, ok := in.process(ctx, e); ok {
			done, settled = append(done, o), append(settled, e)
		}
	}
	in.settle(ctx, settled, done)
	return len(evs), nil
}

// keepClaimed extends the claims of a batch being processed every third of
// the lease, until the returned function stops it (after the batch's
// outcomes are recorded). A batch slower than the lease — an ITSM API
// answering slowly for each of its events — would otherwise be claimed
// again by another worker, processed twice and its attempts counted
// twice, so that a slow API alone could quarantine deliveries. Only the
// claims still this batch's are extended (ExtendClaims): one taken over
// after a failed extension, postponed, handed back or settled is left.
func (in *Inbox) keepClaimed(ctx context.Context, evs []core.Event) (stop func()) {
	if len(evs) == 0 || evs[0].ClaimedUntil == nil {
		return func() {}
	}
	every := max(in.cfg.Lease/3, time.Millisecond)
	var ids []string // made at the first beat: most batches end before one
	var mu sync.Mutex
	until, stopped := *evs[0].ClaimedUntil, false
	var t *time.Timer
	mu.Lock() // the beat reads t under mu
	defer mu.Unlock()
	t = time.AfterFunc(every, func() {
		mu.Lock()
		from, done := until, stopped
		mu.Unlock()
		if done {
			return
		}
		if ids == nil { // beats run one at a time
			ids = make([]string, len(evs))
			for i, e := range evs {
				ids[i] = e.ID
			}
		}
		// A lease from now, and never less than a beat past the claim's
		// end (the store stamped it by its own clock).
		next := in.clock.Now().Add(in.cfg.Lease)
		if floor := from.Add(every); next.Before(floor) {
			next = floor
		}
		next = next.UTC().Truncate(time.Microsecond)
		n, err := in.store.ExtendClaims(ctx, ids, from, next)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case stopped:
		case err != nil:
			// The claim still ends at until; the next beat tries again.
			in.log.InfoContext(ctx, "cannot extend a slow batch's claims", "events", len(ids), "error", err.Error())
			t.Reset(every)
		case n > 0:
			until = next
			t.Reset(every)
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// staged is an event whose record storeTogether stores with others.
type staged struct {
	e    core.Event
	c    Connector
	rec  any
	kind int // 0 change, 1 incident, 2 deployment: the order records are locked in
	key  string
}

// storeTogether stores the records of a batch's plain change, incident
// and deployment events in one transaction (one commit instead of one or
// three per event) and returns their outcomes; rest is every other event,
// to be processed one by one — and all of them when any of those writes
// fails, so a failure stays the one event's, as process handles it.
// Records are written in the order of their keys (a key's events keep
// their order; deployments by their release's id, the order the audit
// chain's group commit inserts releases in), so two workers whose batches
// share records, or a batch and the group commit, lock them in the same
// order and never deadlock. A deployment whose links change needs the
// group commit (core.ErrOwnCommit): its batch is then stored one by one.
// What a recorded deployment triggers (the write-back of work notes) runs
// once the batch has committed. On PostgreSQL only (SharesCommits).
// Events that need more — a connector that completes records through its
// API, a CI's gate request, reviews, a mapping that fails, an event out of
// attempts — are left to process.
func (in *Inbox) storeTogether(ctx context.Context, evs []core.Event) (done []core.EventOutcome, settled, rest []core.Event) {
	if len(evs) < 2 || !in.store.SharesCommits() {
		return nil, nil, evs
	}
	var batch []staged
	for _, e := range evs {
		if s, ok := in.stage(ctx, e); ok {
			batch = append(batch, s)
		} else {
			rest = append(rest, e)
		}
	}
	if len(batch) < 2 {
		return nil, nil, evs
	}
	sort.SliceStable(batch, func(i, j int) bool {
		if batch[i].kind != batch[j].kind {
			return batch[i].kind < batch[j].kind
		}
		return batch[i].key < batch[j].key
	})
	var later afterCommit
	err := in.store.Together(context.WithValue(ctx, afterCommitKey{}, &later), func(ctx context.Context) (err error) {
		defer func() {
			if p := recover(); p != nil { // process quarantines the event that panics
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		for _, s := range batch {
			var outcome, record string
			if d, ok := s.rec.(*core.Deployment); ok {
				outcome, record, err = deploymentOutcome(in.deployments.Store(ctx, *d, "connector:"+s.c.Config.Name))
			} else {
				outcome, record, err = in.apply(ctx, s.c, s.rec, s.e.ReceivedAt)
			}
			if err != nil {
				return fmt.Errorf("event %s: %w", s.e.ID, err)
			}
			done = append(done, core.EventOutcome{ID: s.e.ID, Status: core.EventProcessed, Reason: outcome, Record: record})
			settled = append(settled, s.e)
		}
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			in.log.InfoContext(ctx, "storing a batch's records together failed: storing them one by one", "events", len(batch), "error", err.Error())
		}
		return nil, nil, evs
	}
	for _, fn := range later {
		fn(ctx)
	}
	return done, settled, rest
}

// stage maps e when storeTogether may store it: a change, incident or
// deployment of a connector that needs no API to complete it (other kinds
// are not mapped here, so process maps them once); a deployment is
// prepared for recording (its environment, its source's authority, the
// CI gate it passed). Anything else — and a mapping or preparation that
// fails or panics — is for process, which reports it.
func (in *Inbox) stage(ctx context.Context, e core.Event) (s staged, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	c, known := in.conns[e.Connector]
	if !known || e.Attempts > in.cfg.MaxAttempts || c.Enricher != nil {
		return staged{}, false
	}
	if _, isReq := c.Webhook.(GateRequester); isReq && c.Config.CIGate != nil {
		return staged{}, false
	}
	set, err := in.mappings.forConnector(c.Config.Mappings)
	if err != nil {
		return staged{}, false
	}
	prof, found := set.Select(c.Config.Type, e.Type, e.Body)
	if !found || prof.ThenNext() {
		return staged{}, false // one record a batch item: two go by process
	}
	if k := prof.Kind(); k != mapping.KindChange && k != mapping.KindIncident && k != mapping.KindDeployment {
		return staged{}, false // mapped once, by process
	}
	res := prof.ApplyFast(e.Body)
	if res.Err() != nil {
		return staged{}, false
	}
	switch r := res.Record.(type) {
	case *core.Change:
		return staged{e: e, c: c, rec: r, kind: 0, key: r.Key}, r.Key != ""
	case *core.Incident:
		return staged{e: e, c: c, rec: r, kind: 1, key: r.Key}, r.Key != ""
	case *core.Deployment:
		if in.deployments == nil || in.prepareDeployment(ctx, c, r, e.ReceivedAt) != nil {
			return staged{}, false
		}
		d, err := in.deployments.Prepare(ctx, *r)
		if err != nil {
			return staged{}, false
		}
		key := core.ReleaseID(d.Service, d.Version, d.Environment) + "\x00" + d.Provider + "\x00" + d.RunID + "\x00" + d.Service + "\x00" + d.Environment
		return staged{e: e, c: c, rec: &d, kind: 2, key: key}, true
	}
	return staged{}, false
}

// handBack gives the claims of events left unprocessed (the process is
// stopping) back at once, without counting the attempt, so a restart or
// another replica takes them without waiting for their lease.
func (in *Inbox) handBack(ctx context.Context, evs []core.Event) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	for _, e := range evs {
		if err := in.store.PostponeEvent(ctx, e.ID, "", in.clock.Now()); err != nil && !core.IsKind(err, core.KindConflict) {
			// The claim still ends with its lease.
			in.log.InfoContext(ctx, "cannot hand back an event's claim at shutdown", "event_id", e.ID, "error", err.Error())
		}
	}
}

// settle records the outcomes of a batch in one statement, or, when that
// fails, event by event.
func (in *Inbox) settle(ctx context.Context, evs []core.Event, outcomes []core.EventOutcome) {
	if len(outcomes) == 0 {
		return
	}
	// The work is done: a stop arriving while its outcomes are recorded
	// must not cut the recording short (the events would be normalized
	// again and their attempts counted), so it has a time of its own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	ok, err := in.store.FinishEvents(ctx, outcomes)
	if err != nil {
		in.log.WarnContext(ctx, "cannot record the batch's outcomes: recording them one by one", "events", len(outcomes), "error", err.Error())
		for i, o := range outcomes {
			in.finish(ctx, evs[i], o.Status, o.Reason, o.Record)
		}
		return
	}
	for i, o := range outcomes {
		if !ok[i] {
			in.log.InfoContext(ctx, "event already finished by another worker", "event_id", o.ID)
			continue
		}
		in.recorded(ctx, evs[i], o.Status, o.Reason)
	}
}

// process normalizes one claimed event and returns its outcome to record;
// ok is false when the event was retried instead. An event claimed more
// than MaxAttempts times (its processing kept failing, or crashed the
// process) is quarantined with its last error; a transient failure is
// retried after a backoff, and quarantined once the attempts are spent;
// a failure of the database itself (or the process stopping) is retried
// without spending an attempt.
func (in *Inbox) process(ctx context.Context, e core.Event) (core.EventOutcome, bool) {
	out := func(status, reason, record string) (core.EventOutcome, bool) {
		return core.EventOutcome{ID: e.ID, Status: status, Reason: reason, Record: record}, true
	}
	if e.Attempts > in.cfg.MaxAttempts {
		return out(core.EventQuarantined, gaveUp(e.Attempts-1, e.LastError), "")
	}
	status, reason, record, err := in.normalizeSafe(ctx, e)
	if err == nil {
		return out(status, reason, record)
	}
	if notTheEvents(ctx, err) {
		in.postpone(ctx, e, err)
		return core.EventOutcome{}, false
	}
	if e.Attempts >= in.cfg.MaxAttempts {
		return out(core.EventQuarantined, gaveUp(e.Attempts, err.Error()), "")
	}
	retryAt := in.clock.Now().Add(in.backoff(e.Attempts))
	in.log.WarnContext(ctx, "event will be retried", "event_id", e.ID, "connector", e.Connector, "attempt", e.Attempts,
		"retry_at", retryAt.Format(time.RFC3339), "error", err.Error())
	in.count(e.Connector, "retried")
	if rerr := in.store.RetryEvent(ctx, e.ID, err.Error(), retryAt); rerr != nil && !core.IsKind(rerr, core.KindConflict) {
		// The claim still ends with its lease: the event is tried again then.
		in.log.WarnContext(ctx, "cannot record the retry", "event_id", e.ID, "error", rerr.Error())
	}
	return core.EventOutcome{}, false
}

// notTheEvents reports whether a failure says nothing about the event:
// the database itself was unavailable (not contention on the event's
// record), the connector's API failed for every call lately (its circuit
// is open: completing records through it waits for it to heal), or the
// process is stopping.
func notTheEvents(ctx context.Context, err error) bool {
	return ctx.Err() != nil || core.IsStoreDown(err) || errors.Is(err, connectors.ErrCircuitOpen)
}

// postpone retries an event after a failure that is not its own, giving
// back the attempt its claim counted. At shutdown the claim is handed back
// at once, otherwise after the backoff of its attempts so far.
func (in *Inbox) postpone(ctx context.Context, e core.Event, cause error) {
	retryAt := in.clock.Now()
	lastErr := ""
	if ctx.Err() == nil {
		retryAt = retryAt.Add(in.backoff(e.Attempts))
		lastErr = cause.Error()
		in.log.WarnContext(ctx, "a dependency is unavailable (the database, or the connector's API): event postponed, its attempt not counted", "event_id", e.ID,
			"connector", e.Connector, "retry_at", retryAt.Format(time.RFC3339), "error", lastErr)
		in.count(e.Connector, "retried")
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if rerr := in.store.PostponeEvent(pctx, e.ID, lastErr, retryAt); rerr != nil && !core.IsKind(rerr, core.KindConflict) {
		// The claim still ends with its lease: the event is tried again
		// then, or sooner when the database answers again while the claim
		// is still ours.
		in.log.WarnContext(ctx, "cannot record the retry", "event_id", e.ID, "error", rerr.Error())
		if core.IsStoreDown(rerr) && e.ClaimedUntil != nil {
			in.stranded.add(e.ID, lastErr, *e.ClaimedUntil)
		}
	}
}

// handBackStranded gives back the claims an outage left held, as soon as
// the database answers again, without counting their attempts: their
// events are claimed again at once instead of when the claims' lease
// ends. A claim whose end has come (or nearly) is left to its lease:
// another worker may hold the event by now (stranded.flush).
func (in *Inbox) handBackStranded(ctx context.Context) {
	now := in.clock.Now()
	handed := in.stranded.flush(now, func(id, lastErr string) error {
		err := in.store.PostponeEvent(ctx, id, lastErr, now)
		if err != nil && !core.IsStoreDown(err) && !core.IsKind(err, core.KindConflict) && !core.IsKind(err, core.KindNotFound) {
			in.log.WarnContext(ctx, "cannot hand back a claim the outage left", "event_id", id, "error", err.Error())
		}
		return err
	})
	if handed > 0 {
		in.log.InfoContext(ctx, "the database answers again: claims the outage left are handed back", "events", handed)
	}
}

func gaveUp(attempts int, lastErr string) string {
	if lastErr == "" {
		lastErr = "none recorded (the process may have stopped while processing it)"
	}
	return fmt.Sprintf("gave up after %d attempts; last error: %s", attempts, lastErr)
}

// backoff is the wait before retrying an event after its attempt-th
// transient failure: 1s, 2s, 4s … capped at the lease.
func (in *Inbox) backoff(attempt int) time.Duration {
	d := time.Second << min(max(attempt-1, 0), 16)
	return min(d, in.cfg.Lease)
}

// finish records an event's outcome. When the database is unavailable,
// the event is postponed without spending an attempt (processing it again
// is idempotent); when the time to record it ran out, its claim is left to
// run out. When recording fails otherwise (other than because
// another worker finished it first), the event is quarantined with the
// failure as its reason; when even that fails, the failure is kept as the
// event's last error and its claim runs out, so it is tried again and
// counts an attempt.
func (in *Inbox) finish(ctx context.Context, e core.Event, status, reason, record string) {
	err := in.store.FinishEvent(ctx, e.ID, status, reason, record)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// Out of time (settleTimeout): that says nothing about the event.
		// Its claim runs out and it is normalized again then.
		in.log.WarnContext(ctx, "cannot record the event's outcome in time: it is tried again when its claim ends",
			"event_id", e.ID, "status", status, "error", err.Error())
		return
	}
	if core.IsKind(err, core.KindUnavailable) {
		in.postpone(ctx, e, err)
		return
	}
	if err != nil && !core.IsKind(err, core.KindConflict) && status != core.EventQuarantined {
		in.log.WarnContext(ctx, "cannot record the event's outcome: quarantining it", "event_id", e.ID, "status", status, "error", err.Error())
		reason = fmt.Sprintf("recording the outcome (%s: %s) failed: %v", status, reason, err)
		status, record = core.EventQuarantined, ""
		err = in.store.FinishEvent(ctx, e.ID, status, reason, record)
	}
	switch {
	case err == nil:
	case core.IsKind(err, core.KindConflict):
		// Our lease ran out and another worker finished the event
		// (normalizing is idempotent): nothing is lost.
		in.log.InfoContext(ctx, "event already finished by another worker", "event_id", e.ID)
		return
	default:
		in.log.ErrorContext(ctx, "cannot record the event's outcome", "event_id", e.ID, "status", status, "error", err.Error())
		if rerr := in.store.RetryEvent(ctx, e.ID, "recording the outcome failed: "+err.Error(), in.clock.Now().Add(in.backoff(e.Attempts))); rerr != nil {
			in.log.WarnContext(ctx, "cannot record the retry", "event_id", e.ID, "error", rerr.Error())
		}
		return
	}
	in.recorded(ctx, e, status, reason)
}

// recorded counts a recorded outcome and logs a quarantine.
func (in *Inbox) recorded(ctx context.Context, e core.Event, status, reason string) {
	in.count(e.Connector, status)
	if status == core.EventQuarantined {
		in.log.WarnContext(ctx, "event quarantined", "event_id", e.ID, "connector", e.Connector, "type", e.Type, "reason", reason)
	}
}

// normalizeSafe is normalize with a panic (a bug met by one payload)
// turned into that event's quarantine.
func (in *Inbox) normalizeSafe(ctx context.Context, e core.Event) (status, reason, record string, err error) {
	defer func() {
		if p := recover(); p != nil {
			in.log.ErrorContext(ctx, "normalizing an event panicked", "event_id", e.ID, "connector", e.Connector, "panic", fmt.Sprint(p))
			status, reason, record, err = core.EventQuarantined, fmt.Sprintf("internal error while normalizing: %v", p), "", nil
		}
	}()
	return in.normalize(ctx, e)
}

// normalize maps one event and applies it. It returns the event's outcome,
// or an error when the failure is transient and the event must be retried.
func (in *Inbox) normalize(ctx context.Context, e core.Event) (status, reason, record string, err error) {
	c, ok := in.conns[e.Connector]
	if !ok {
		return core.EventQuarantined, fmt.Sprintf("connector %q is no longer configured", e.Connector), "", nil
	}
	if status, reason, record, err, ok := in.gateRequest(ctx, c, e); ok {
		return status, reason, record, err
	}
	set, err := in.mappings.forConnector(c.Config.Mappings)
	if err != nil {
		return core.EventQuarantined, fmt.Sprintf("connector %q: %v", e.Connector, err), "", nil
	}
	body := e.Body
	if c.Enricher != nil {
		b, err := c.Enricher.Enrich(ctx, e.Type, e.Body)
		if err != nil {
			if permanentAPIError(err) {
				return core.EventQuarantined, fmt.Sprintf("connector %q: completing the record through the API failed: %v", e.Connector, err), "", nil
			}
			return "", "", "", core.Wrap(core.KindUnavailable, err, "complete the record through the API")
		}
		body = b
	}
	prof, ok := set.Select(c.Config.Type, e.Type, body)
	if m, meant := c.Webhook.(connectors.MeantForTollgate); !ok && meant && m.EveryDeliveryMeant() {
		return core.EventQuarantined, fmt.Sprintf("no mapping profile of connector %q (type %s) matches this %q delivery, and every %s delivery is meant to be recorded: %s",
			e.Connector, c.Config.Type, e.Type, c.Config.Type, set.Describe(c.Config.Type)), "", nil
	}
	if !ok {
		return core.EventIgnored, fmt.Sprintf("no mapping profile of connector %q (type %s) matches event type %q; tollgate does not use this event", e.Connector, c.Config.Type, e.Type), "", nil
	}
	res := prof.ApplyFast(body) // no per-field traces: only previews need them
	if err := res.Err(); err != nil {
		return core.EventQuarantined, fmt.Sprintf("mapping profile %q: %v", prof.Name(), err), "", nil
	}
	if why, skip := wholeRunUnplaced(c, prof, res.Record); skip {
		return core.EventIgnored, why, "", nil
	}
	outcome, record, err := in.apply(ctx, c, res.Record, e.ReceivedAt)
	if err == nil && prof.ThenNext() {
		return in.applyNext(ctx, c, e, set, prof, body, outcome, record)
	}
	switch {
	case err == nil:
		return core.EventProcessed, outcome, record, nil
	case ctx.Err() != nil:
		return "", "", "", ctx.Err() // stopping: not the event's failure
	case core.IsKind(err, core.KindUnavailable), core.IsKind(err, core.KindConflict):
		// A conflict is contention with a concurrent writer of the same
		// row (another worker, another replica, the API): the next attempt
		// finds the row it lost to. One that persists is quarantined once
		// the attempts are spent, with the error.
		return "", "", "", err
	case core.IsKind(err, core.KindForbidden):
		return core.EventQuarantined, err.Error(), "", nil
	case core.IsKind(err, core.KindInternal):
		// Unexpected: keep it visible and replayable rather than retry forever.
		return core.EventQuarantined, fmt.Sprintf("mapping profile %q: applying the record failed: %v", prof.Name(), err), "", nil
	default:
		return core.EventQuarantined, fmt.Sprintf("mapping profile %q: %v", prof.Name(), err), "", nil
	}
}

// wholeRunUnplaced says why a whole run's event (mapping.Compiled.WholeRun)
// is not recorded: it names no environment and the connector has no
// default_environment to record it to. Its deploying jobs are recorded by
// their own events; quarantining every run (every build and test run a
// subscription to runs brings) would bury the quarantine's real problems.
func wholeRunUnplaced(c Connector, prof *mapping.Compiled, rec any) (string, bool) {
	d, ok := rec.(*core.Deployment)
	if !ok || !prof.WholeRun() || strings.TrimSpace(d.Environment) != "" || strings.TrimSpace(c.Config.DefaultEnvironment) != "" {
		return "", false
	}
	return fmt.Sprintf("mapping profile %q reads a whole run, which names no environment, and connector %q has no default_environment: "+
		"the run's deploying jobs are recorded by their own events (set default_environment to record every run as a deployment to it)",
		prof.Name(), c.Config.Name), true
}

// applyNext applies, after prof (whose record is stored: outcome,
// record), the next profile that matches the event (prof's ThenNext): a
// delivery carrying two facts records both. A failure of the second is
// the event's, with what the first did said: a replay applies the first
// again (unchanged) and retries the second.
func (in *Inbox) applyNext(ctx context.Context, c Connector, e core.Event, set *mapping.Set, prof *mapping.Compiled, body []byte,
	outcome, record string) (status, reason, rec string, err error) {
	next, ok := set.SelectAfter(prof, c.Config.Type, e.Type, body)
	if !ok {
		return core.EventProcessed, outcome, record, nil
	}
	res := next.ApplyFast(body)
	if err := res.Err(); err != nil {
		return core.EventQuarantined, fmt.Sprintf("%s (%s); then mapping profile %q: %v", outcome, record, next.Name(), err), "", nil
	}
	outcome2, record2, err := in.apply(ctx, c, res.Record, e.ReceivedAt)
	switch {
	case err == nil:
		return core.EventProcessed, fmt.Sprintf("%s; then %s (%s)", outcome, outcome2, record2), record, nil
	case ctx.Err() != nil:
		return "", "", "", ctx.Err()
	case core.IsKind(err, core.KindUnavailable), core.IsKind(err, core.KindConflict):
		return "", "", "", err
	case core.IsKind(err, core.KindForbidden):
		// Not this connector's to record (a change moved to a project it
		// does not poll): the event's own fact is stored; this one is said.
		return core.EventProcessed, fmt.Sprintf("%s; then mapping profile %q not applied: %v", outcome, next.Name(), err), record, nil
	default:
		return core.EventQuarantined, fmt.Sprintf("%s (%s); then mapping profile %q: %v", outcome, record, next.Name(), err), "", nil
	}
}

// gateRequest hands a CI's waiting-gate event (a GitHub deployment
// protection rule, a GitLab deployment held for approval) to the CI gates
// when the connector answers them; ok is false for every other event,
// which is mapped as usual.
func (in *Inbox) gateRequest(ctx context.Context, c Connector, e core.Event) (status, reason, record string, err error, ok bool) {
	gr, isReq := c.Webhook.(GateRequester)
	if !isReq || c.Config.CIGate == nil || !in.gates.Enabled() {
		return "", "", "", nil, false
	}
	if ns, ok := c.Webhook.(NotYetStarted); ok && ns.NotYetStarted(e.Type) {
		return core.EventIgnored, "the CI's gate may still hold this deployment: its statuses record it once it runs", "", nil, true
	}
	p, isGate, err := gr.GateRequest(ctx, e.Type, e.Body)
	switch {
	case !isGate:
		return "", "", "", nil, false
	case err != nil && core.IsKind(err, core.KindUnavailable):
		return "", "", "", err, true
	case err != nil:
		// A redelivery of a request already answered finds its deployment
		// no longer waiting: it is the request held, not a refusal.
		if known, kerr := in.gates.Known(ctx, c.Config.Name, p.ExternalID); kerr == nil {
			return core.EventProcessed, "gate request already known (state " + known.State + ")", "gate:" + known.ID, nil, true
		}
		return core.EventQuarantined, fmt.Sprintf("gate request: %v", err), "", nil, true
	}
	stored, created, err := in.gates.Submit(ctx, c.Config, p)
	if err != nil {
		if core.IsKind(err, core.KindInvalid) {
			return core.EventQuarantined, fmt.Sprintf("gate request: %v", err), "", nil, true
		}
		return "", "", "", err, true
	}
	if !created {
		return core.EventProcessed, "gate request already known (state " + stored.State + ")", "gate:" + stored.ID, nil, true
	}
	if stored.State == core.PendingAnswering && len(stored.Reasons) > 0 { // refused on arrival (TOO_MANY_WAITING)
		return core.EventProcessed, "gate request rejected on arrival: " + stored.Reasons[0].Code, "gate:" + stored.ID, nil, true
	}
	return core.EventProcessed, "gate request pending", "gate:" + stored.ID, nil, true
}

// inheritGate links a CI deployment that was held at the CI's own gate
// to the gate request that released it (by the CI's deployment id: its
// CIDeploymentID, else its run id): the deployment takes that request's
// decision, its service (as the connector's services map named it) and,
// when it names none, its changes (GitHub's deployment payload names
// none). Only for the same commit (core.SameCommit: a short hash names
// the commit it begins): a deployment of another commit is not the
// release the gate decided.
func (in *Inbox) inheritGate(ctx context.Context, c Connector, r *core.Deployment) {
	if in.gates == nil || r.DecisionID != "" {
		return
	}
	id := r.CIDeploymentID
	if id == "" { // a profile that keys the deployment by the CI's deployment id
		id = r.RunID
	}
	p, ok := in.gates.Released(ctx, c.Config.Name, id)
	if !ok || !core.SameCommit(r.Commit, p.Request.Commit) {
		return
	}
	r.DecisionID, r.Service = p.DecisionID, p.Request.Service
	if len(r.Changes) == 0 {
		r.Changes = p.Request.Changes
	}
	// The CI held it until tollgate answered: it did not start before,
	// whatever the CI stamps as its creation (GitHub: when the job was
	// queued). Judged from its creation, its own allow would come after
	// its start.
	if p.AnsweredAt != nil && r.StartedAt.Before(*p.AnsweredAt) {
		r.StartedAt = *p.AnsweredAt
		if r.FinishedAt != nil && r.FinishedAt.Before(r.StartedAt) {
			r.StartedAt = *r.FinishedAt
		}
	}
	// The CI was told to reject it, and a rejected deployment does not run:
	// it ends failed (GitHub fails the job, GitLab fails it with
	// deployment_rejected) without being reported running. Judged as a
	// failed deployment, the gate that stopped it would read as "deployed
	// after a deny". Reported as queued with its finish, it stays queued
	// (counted by every report) unless a report said it ran: one run
	// anyway (an administrator bypassing the CI's protection) is recorded
	// failed and judged with the deny (store.DB.RecordDeployment).
	if p.Decision == core.Deny && r.Status == core.DeployFailed {
		r.Status = core.DeployQueued
	}
}

// owns refuses (KindForbidden: the event is quarantined with it) a change
// or incident whose key the connector may not write: for a Jira connector
// with projects, an issue of another project (connectors.Config.OwnsKey).
func owns(c Connector, what, key string) error {
	if c.Config.OwnsKey(key) {
		return nil
	}
	return core.Errorf(core.KindForbidden, "source authority: %s %s is not an issue of connector %q's projects (%s); add its project to projects if it is one",
		what, key, c.Config.Name, strings.Join(c.Config.Projects, ", "))
}

// defaultMaxFutureSkew is InboxConfig.MaxFutureSkew's default.
const defaultMaxFutureSkew = 5 * time.Minute

// authorize enforces source authority: the connector may write records of
// kind (its type's default or a grant in its config), and the source's
// own stamp is not further in the future than MaxFutureSkew. A refusal is
// KindForbidden or KindInvalid, and the event is quarantined with it.
func (in *Inbox) authorize(c Connector, kind string, stamps ...time.Time) error {
	if !c.Config.Writes(kind) {
		return core.Errorf(core.KindForbidden, "source authority: connector %q (type %s) may not write %s (it may write: %s); grant it with records: [%s] in its configuration if that is intended",
			c.Config.Name, c.Config.Type, kind, strings.Join(c.Config.WritableRecords(), ", "), kind)
	}
	limit := in.clock.Now().Add(in.cfg.MaxFutureSkew)
	for _, t := range stamps {
		if t.After(limit) {
			return core.Errorf(core.KindInvalid, "source authority: the source's stamp %s is more than %s in the future (inbox.max_future_skew); refused so it cannot freeze the record against later updates",
				t.UTC().Format(time.RFC3339), in.cfg.MaxFutureSkew)
		}
	}
	return nil
}

// stampOr is a record's source stamp, or, when its profile maps none, when
// its delivery was received: what the source said then, so a delivery
// replayed or retried later is ordered by when it was sent, not when it
// was processed (an old approval replayed does not pass for the newest).
func stampOr(stamp, received time.Time) time.Time {
	if stamp.IsZero() {
		return received
	}
	return stamp
}

// apply stores one canonical record and describes what happened; received
// is when its delivery was received.
func (in *Inbox) apply(ctx context.Context, c Connector, rec any, received time.Time) (outcome, record string, err error) {
	switch r := rec.(type) {
	case *core.Change:
		r.Source = c.Config.Name
		if r.Key == "" {
			return "", "", core.Invalid("key", "the change has no key")
		}
		if err := in.authorize(c, connectors.RecordChanges, r.SourceUpdatedAt); err != nil {
			return "", "", err
		}
		if err := owns(c, "change", r.Key); err != nil {
			return "", "", err
		}
		r.SourceUpdatedAt = stampOr(r.SourceUpdatedAt, received)
		res, err := in.store.UpsertChange(ctx, *r)
		if err != nil {
			return "", "", err
		}
		return describe(res), "change:" + r.Key, nil
	case *core.Incident:
		r.Source = c.Config.Name
		if r.Key == "" {
			return "", "", core.Invalid("key", "the incident has no key")
		}
		if err := in.authorize(c, connectors.RecordIncidents, r.SourceUpdatedAt); err != nil {
			return "", "", err
		}
		if err := owns(c, "incident", r.Key); err != nil {
			return "", "", err
		}
		r.SourceUpdatedAt = stampOr(r.SourceUpdatedAt, received)
		res, err := in.store.UpsertIncident(ctx, *r)
		if err != nil {
			return "", "", err
		}
		return describe(res), "incident:" + r.Key, nil
	case *core.Deployment:
		if err := in.prepareDeployment(ctx, c, r, received); err != nil {
			return "", "", err
		}
		return deploymentOutcome(in.deployments.Record(ctx, *r, "connector:"+c.Config.Name))
	case *core.PIR:
		if r.ReleaseID == "" {
			return "", "", core.Invalid("release_id", "the review names no release")
		}
		var signed time.Time
		if r.SignedOffAt != nil {
			signed = *r.SignedOffAt
		}
		if err := in.authorize(c, connectors.RecordReviews, signed); err != nil {
			return "", "", err
		}
		if r.Status != core.PIRSignedOff {
			return "review not signed off: nothing to do", "release:" + r.ReleaseID, nil
		}
		// Dated when the source said it, else when its delivery was
		// received: a sign-off replayed after other code shipped under the
		// same version must not sign off the review that code required.
		at := received
		if r.SignedOffAt != nil {
			at = *r.SignedOffAt
		}
		by := r.SignedOffBy
		if by == "" {
			by = "connector:" + c.Config.Name
		}
		if _, err := in.store.SignOffPIR(ctx, r.ReleaseID, by, r.Summary, at); err != nil {
			if core.IsKind(err, core.KindConflict) {
				// Signed off already, or the pending review was required
				// after this sign-off (other code): the reason says which.
				msg := err.Error()
				if ce := (*core.Error)(nil); errors.As(err, &ce) {
					msg = ce.Message
				}
				return "review not signed off: " + msg, "release:" + r.ReleaseID, nil
			}
			return "", "", err
		}
		return "review signed off", "release:" + r.ReleaseID, nil
	}
	return "", "", core.Errorf(core.KindInternal, "mapping produced an unsupported record type %T", rec)
}

// prepareDeployment completes a mapped deployment for recording: its
// source and provider, the connector's default environment, a start time,
// the source's authority to report it, and the CI gate it passed.
// received is when tollgate received the delivery.
func (in *Inbox) prepareDeployment(ctx context.Context, c Connector, r *core.Deployment, received time.Time) error {
	r.Source = c.Config.Name
	if r.Provider == "" {
		r.Provider = c.Config.Type
	}
	env, err := connectors.ApplyDefaultEnvironment(c.Config, r.Environment)
	if err != nil {
		return err
	}
	r.Environment = env
	if r.StartedAt.IsZero() {
		r.StartedAt = startOf(r, received, in.clock.Now())
	}
	var finished time.Time
	if r.FinishedAt != nil {
		finished = *r.FinishedAt
	}
	if err := in.authorize(c, connectors.RecordDeployments, r.StartedAt, finished); err != nil {
		return err
	}
	in.inheritGate(ctx, c, r)
	return nil
}

// startOf is when a deployment whose source reported no start (old
// Jenkins plugins send no build.timestamp) is taken to have started: its
// reported finish, when that came first, else when its delivery was
// received — the nearest tollgate knows, and what the reconciler judges
// it at. Never when the event is processed, which a backlog, a retry's
// backoff or a replay days later moves past the deployment itself; now
// only stands in for a delivery with no receive time.
func startOf(r *core.Deployment, received, now time.Time) time.Time {
	start := received
	if start.IsZero() {
		start = now
	}
	if r.FinishedAt != nil && !r.FinishedAt.IsZero() && r.FinishedAt.Before(start) {
		start = *r.FinishedAt
	}
	return start
}

// deploymentOutcome describes what recording a deployment did.
func deploymentOutcome(d core.Deployment, created bool, err error) (outcome, record string, _ error) {
	if err != nil {
		return "", "", err
	}
	if created {
		return "deployment recorded", "deployment:" + d.ID, nil
	}
	return "deployment updated", "deployment:" + d.ID, nil
}

func describe(r core.UpsertResult) string {
	switch r {
	case core.UpsertCreated:
		return "created"
	case core.UpsertUpdated:
		return "new version stored"
	case core.UpsertUnchanged:
		return "unchanged: same content as the stored version"
	case core.UpsertStale:
		return "stale: older than the stored version, not applied"
	case core.UpsertPast:
		return "past: older than the stored version, kept in the history from its stamp; the current state unchanged"
	}
	return string(r)
}

// permanentAPIError reports whether an API failure will not heal by
// itself (bad credentials, a refused request): the event is quarantined
// with the reason instead of retried forever.
func permanentAPIError(err error) bool { return connectors.IsPermanent(err) }
