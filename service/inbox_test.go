package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config/mappings"
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/store"

	dto "github.com/prometheus/client_model/go"
)

// stepClock is a settable clock shared by the inbox and its store.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *stepClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// faultyStore is a real store whose change writes and event outcomes fail
// as a test says, per change key / event id.
type faultyStore struct {
	*store.DB
	upsert map[string]func() error // by change key
	finish map[string]error        // by event id, for outcome "processed"
	// finishes, when set, runs before a batch's outcomes are recorded and
	// fails the batch with its error.
	finishes func(ctx context.Context) error
	// postponeDown, when set, fails every PostponeEvent as unavailable;
	// saveDown every SavePendingGate.
	postponeDown, saveDown bool
}

func (f *faultyStore) SavePendingGate(ctx context.Context, p core.PendingGate) error {
	if f.saveDown {
		return core.StoreDown(errors.New("read tcp 127.0.0.1:5432: connection timed out"), "database unavailable")
	}
	return f.DB.SavePendingGate(ctx, p)
}

func (f *faultyStore) PostponeEvent(ctx context.Context, id, lastError string, retryAt time.Time) error {
	if f.postponeDown {
		return core.StoreDown(errors.New("read tcp 127.0.0.1:5432: connection timed out"), "database unavailable")
	}
	return f.DB.PostponeEvent(ctx, id, lastError, retryAt)
}

func (f *faultyStore) UpsertChange(ctx context.Context, c core.Change) (core.UpsertResult, error) {
	if fail, ok := f.upsert[c.Key]; ok {
		if err := fail(); err != nil {
			return "", err
		}
	}
	return f.DB.UpsertChange(ctx, c)
}

func (f *faultyStore) FinishEvent(ctx context.Context, id, status, reason, record string) error {
	if err, ok := f.finish[id]; ok && status == core.EventProcessed {
		return err
	}
	return f.DB.FinishEvent(ctx, id, status, reason, record)
}

// FinishEvents fails the whole batch when one of its events' outcome
// would fail alone, as a database refusing one row fails the statement.
func (f *faultyStore) FinishEvents(ctx context.Context, outcomes []core.EventOutcome) ([]bool, error) {
	if f.finishes != nil {
		if err := f.finishes(ctx); err != nil {
			return nil, err
		}
	}
	for _, o := range outcomes {
		if err, ok := f.finish[o.ID]; ok && o.Status == core.EventProcessed {
			return nil, err
		}
	}
	return f.DB.FinishEvents(ctx, outcomes)
}

func newTestInbox(t *testing.T, clock core.Clock, cfg InboxConfig) (*Inbox, *faultyStore) {
	t.Helper()
	return newTestInboxOn(t, "sqlite:"+filepath.Join(t.TempDir(), "t.db"), clock, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// newTestInboxOn is newTestInbox on the database at url, logging to log.
func newTestInboxOn(t *testing.T, url string, clock core.Clock, cfg InboxConfig, log *slog.Logger) (*Inbox, *faultyStore) {
	t.Helper()
	db, maps := openInboxStore(t, url, clock, log)
	fs := &faultyStore{DB: db, upsert: map[string]func() error{}, finish: map[string]error{}}
	conns := []Connector{{Config: connectors.Config{Name: "servicenow", Type: "servicenow"}}}
	return NewInbox(fs, conns, maps, nil, metrics.New(), clock, log, cfg), fs
}

// openInboxStore opens and migrates the store at url, with the shipped
// mapping profiles loaded.
func openInboxStore(t *testing.T, url string, clock core.Clock, log *slog.Logger) (*store.DB, *Mappings) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, url, store.Options{Clock: clock, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	maps, err := NewMappings(db, log, mappings.FS)
	if err != nil {
		t.Fatal(err)
	}
	if err := maps.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	return db, maps
}

// runUntilDrained runs the inboxes until no event is pending (at most 30
// s), stops them, and reports every event not processed; it returns how
// many were.
func runUntilDrained(t *testing.T, db *store.DB, inboxes ...*Inbox) int {
	t.Helper()
	ctx := context.Background()
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, in := range inboxes {
		wg.Go(func() { in.Run(rctx) })
	}
	defer func() { cancel(); wg.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, n, err := db.InboxLag(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events still pending", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	evs, err := db.ListEvents(ctx, core.EventFilter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	processed := 0
	for _, e := range evs {
		if e.Status == core.EventProcessed {
			processed++
		} else {
			t.Errorf("event %s: %s %q", e.ID, e.Status, e.Reason)
		}
	}
	return processed
}

// snEvent stores a ServiceNow delivery of change key, received at at.
func snEvent(t *testing.T, db *store.DB, key string, at time.Time) string {
	t.Helper()
	return snDelivery(t, db, key, key, time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC), at)
}

// snVersion stores a ServiceNow delivery of change key as it stood at at
// (its own delivery: dedupe names it).
func snVersion(t *testing.T, db *store.DB, key, dedupe string, at time.Time) string {
	t.Helper()
	return snDelivery(t, db, key, dedupe, at, at)
}

// snDelivery stores a ServiceNow delivery of change key updated at
// updated, received at received.
func snDelivery(t *testing.T, db *store.DB, key, dedupe string, updated, received time.Time) string {
	t.Helper()
	body := fmt.Sprintf(`{"result":{"sys_class_name":"change_request","number":%q,"state":"-5","sys_updated_on":%q}}`, key, updated.Format("2006-01-02 15:04:05"))
	id, _, err := db.InsertEvent(context.Background(), core.Event{Connector: "servicenow", Type: "change_request", DedupeKey: dedupe, Body: []byte(body), ReceivedAt: received})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Each claimed event is settled alone: a transient failure is retried with
// a backoff and its last error shown, then quarantined after MaxAttempts;
// a panic or an outcome that cannot be recorded quarantines that event
// only; an event whose claims never finished (a crash loop) is quarantined
// once its attempts are spent. Before, a failure to record one outcome
// aborted the batch and left every event claimed with it pending.
func TestInboxSettlesEachEventAlone(t *testing.T) {
	ctx := context.Background()
	clock := &stepClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	in, fs := newTestInbox(t, clock, InboxConfig{BatchSize: 10, Lease: time.Minute, MaxAttempts: 3})

	ids := map[string]string{}
	for i, key := range []string{"CHG1", "CHG2", "CHG3", "CHG5"} {
		ids[key] = snEvent(t, fs.DB, key, clock.Now().Add(time.Duration(i)*time.Millisecond))
	}
	fs.upsert["CHG1"] = func() error { return core.Errorf(core.KindUnavailable, "database busy") }
	fs.upsert["CHG3"] = func() error { panic("mapping bug") }
	fs.finish[ids["CHG5"]] = errors.New("connection reset while recording")

	if n, err := in.ProcessBatch(ctx); err != nil || n != 4 {
		t.Fatalf("batch: %d %v", n, err)
	}
	get := func(key string) core.Event {
		e, err := fs.GetEvent(ctx, ids[key])
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	if e := get("CHG2"); e.Status != core.EventProcessed {
		t.Fatalf("good event: %+v", e)
	}
	if e := get("CHG3"); e.Status != core.EventQuarantined || !strings.Contains(e.Reason, "mapping bug") {
		t.Fatalf("panicking event: %s %q", e.Status, e.Reason)
	}
	if e := get("CHG5"); e.Status != core.EventQuarantined || !strings.Contains(e.Reason, "connection reset while recording") {
		t.Fatalf("unrecordable outcome: %s %q", e.Status, e.Reason)
	}
	e := get("CHG1")
	if e.Status != core.EventPending || e.Attempts != 1 || !strings.Contains(e.LastError, "database busy") ||
		e.ClaimedUntil == nil || !e.ClaimedUntil.Equal(clock.Now().Add(time.Second)) {
		t.Fatalf("transient failure: %+v, want pending with its error, retried after 1s", e)
	}
	// Not before its backoff …
	if n, _ := in.ProcessBatch(ctx); n != 0 {
		t.Fatalf("claimed %d events before the backoff ended", n)
	}
	// … then retried until the attempts are spent.
	for attempt := 2; attempt <= 3; attempt++ {
		clock.add(time.Minute)
		if n, err := in.ProcessBatch(ctx); err != nil || n != 1 {
			t.Fatalf("attempt %d: %d %v", attempt, n, err)
		}
	}
	if e := get("CHG1"); e.Status != core.EventQuarantined || e.Reason != "gave up after 3 attempts; last error: database busy" {
		t.Fatalf("after 3 attempts: %s %q", e.Status, e.Reason)
	}
	var retried dto.Metric
	if err := in.metrics.InboxEvents.WithLabelValues("servicenow", "retried").Write(&retried); err != nil || retried.GetCounter().GetValue() != 2 {
		t.Fatalf("retried counted %v times (%v), want 2", retried.GetCounter().GetValue(), err)
	}

	// A crash loop: claims that never finish count attempts too.
	crash := snEvent(t, fs.DB, "CHG9", clock.Now())
	for range 3 {
		if _, err := fs.ClaimEvents(ctx, 10, time.Second); err != nil {
			t.Fatal(err)
		}
		clock.add(2 * time.Second)
	}
	if n, err := in.ProcessBatch(ctx); err != nil || n != 1 {
		t.Fatalf("crash-loop batch: %d %v", n, err)
	}
	e, _ = fs.GetEvent(ctx, crash)
	if e.Status != core.EventQuarantined || !strings.HasPrefix(e.Reason, "gave up after 3 attempts") {
		t.Fatalf("crash-looping event: %s %q", e.Status, e.Reason)
	}

	// A replay gives a quarantined event fresh attempts.
	delete(fs.upsert, "CHG1")
	if err := in.Replay(ctx, ids["CHG1"], "admin"); err != nil {
		t.Fatal(err)
	}
	if n, err := in.ProcessBatch(ctx); err != nil || n != 1 {
		t.Fatalf("after replay: %d %v", n, err)
	}
	if e := get("CHG1"); e.Status != core.EventProcessed {
		t.Fatalf("replayed event: %s %q", e.Status, e.Reason)
	}
}

// A conflict with a concurrent writer of the record is retried like
// other contention, not quarantined at its first attempt.
func TestInboxRetriesAConflict(t *testing.T) {
	ctx := context.Background()
	clock := &stepClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	in, fs := newTestInbox(t, clock, InboxConfig{BatchSize: 10, Lease: time.Minute, MaxAttempts: 3})
	id := snEvent(t, fs.DB, "CHG4", clock.Now())
	conflicts := 1
	fs.upsert["CHG4"] = func() error {
		if conflicts == 0 {
			return nil
		}
		conflicts--
		return core.Wrap(core.KindConflict, errors.New(`pq: duplicate key value violates unique constraint "changes_pkey"`), "already exists")
	}
	if n, err := in.ProcessBatch(ctx); err != nil || n != 1 {
		t.Fatalf("batch: %d %v", n, err)
	}
	e, err := fs.GetEvent(ctx, id)
	if err != nil || e.Status != core.EventPending || e.Attempts != 1 || !strings.Contains(e.LastError, "already exists") {
		t.Fatalf("after a conflict: %+v (%v), want pending with its error", e, err)
	}
	clock.add(time.Minute)
	if n, err := in.ProcessBatch(ctx); err != nil || n != 1 {
		t.Fatalf("retry: %d %v", n, err)
	}
	if e, _ := fs.GetEvent(ctx, id); e.Status != core.EventProcessed {
		t.Fatalf("retried event: %s %q", e.Status, e.Reason)
	}
}

// A database outage is not the event's failure: an event whose record
// cannot be written because the store is down is postponed with the error
// shown, but its attempts are given back, so however long the outage, it
// is processed once the database is back, never quarantined for it.
func TestInboxOutageSpendsNoAttempts(t *testing.T) {
	clock := &stepClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	in, fs := newTestInbox(t, clock, InboxConfig{BatchSize: 10, Lease: time.Minute, MaxAttempts: 3})
	id := snEvent(t, fs.DB, "CHG1", clock.Now())
	down := true
	fs.upsert["CHG1"] = downWhile(&down, "dial tcp 127.0.0.1:5432: connect: connection refused")
	requireWaitsOut(t, in, fs, clock, id, "connection refused", &down)
}

// requireWaitsOut processes the event id in ten batches a minute apart
// while *down: each leaves it pending with no attempt spent and shown
// (its last error); once *down is cleared, the next batch processes it.
func requireWaitsOut(t *testing.T, in *Inbox, fs *faultyStore, clock *stepClock, id, shown string, down *bool) {
	t.Helper()
	ctx := context.Background()
	for round := range 10 {
		if n, err := in.ProcessBatch(ctx); err != nil || n != 1 {
			t.Fatalf("round %d: %d %v", round, n, err)
		}
		e, err := fs.GetEvent(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if e.Status != core.EventPending || e.Attempts != 0 || !strings.Contains(e.LastError, shown) {
			t.Fatalf("round %d: %s, %d attempts, last error %q; want pending, no attempt spent, %q shown", round, e.Status, e.Attempts, e.LastError, shown)
		}
		clock.add(time.Minute)
	}
	*down = false
	if n, err := in.ProcessBatch(ctx); err != nil || n != 1 {
		t.Fatalf("once back: %d %v", n, err)
	}
	if e, _ := fs.GetEvent(ctx, id); e.Status != core.EventProcessed || e.Record != "change:CHG1" {
		t.Fatalf("once back: %s %q", e.Status, e.Reason)
	}
}

// An outage that also keeps the normalizer from giving its claim back (the
// postponement fails too) leaves the event claimed: once the database
// answers again, the next batch hands the claim back, uncounted, and the
// event is processed — not a lease (here a minute) later. A claim at its
// lease's end is left to it: another worker may hold the event by then.
func TestInboxHandsBackClaimsTheOutageLeft(t *testing.T) {
	for _, tt := range []struct {
		name     string
		downFor  time.Duration // from the claim to the database's return
		handBack bool
	}{
		{"the database back within the lease", 30 * time.Second, true},
		{"back as the lease ends", time.Minute - 500*time.Millisecond, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			clock := &stepClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
			in, fs := newTestInbox(t, clock, InboxConfig{BatchSize: 10, Lease: time.Minute, MaxAttempts: 3})
			id := snEvent(t, fs.DB, "CHG1", clock.Now())
			down := true
			fs.upsert["CHG1"] = downWhile(&down, "read tcp 127.0.0.1:5432: connection timed out")
			fs.postponeDown = true
			if n, err := in.ProcessBatch(ctx); err != nil || n != 1 {
				t.Fatalf("during the outage: %d %v", n, err)
			}
			if e, _ := fs.GetEvent(ctx, id); e.Status != core.EventPending || e.Attempts != 1 || e.ClaimedUntil == nil || !e.ClaimedUntil.After(clock.Now()) {
				t.Fatalf("during the outage: %+v, want pending and still claimed", e)
			}
			// Still down: a batch hands nothing back and forgets nothing.
			if n, err := in.ProcessBatch(ctx); err != nil || n != 0 {
				t.Fatalf("still down: %d %v", n, err)
			}

			clock.add(tt.downFor)
			down, fs.postponeDown = false, false
			// The first batch hands the claim back as of now; the step
			// clock then moves on a millisecond, as a real one would have.
			if _, err := in.ProcessBatch(ctx); err != nil {
				t.Fatal(err)
			}
			clock.add(time.Millisecond)
			_, _ = in.ProcessBatch(ctx)
			e, _ := fs.GetEvent(ctx, id)
			switch {
			case tt.handBack && (e.Status != core.EventProcessed || e.Attempts != 1):
				t.Fatalf("%v into the claim: %s, %d attempts (%q); want processed, the outage's attempt given back", tt.downFor, e.Status, e.Attempts, e.Reason)
			case !tt.handBack && (e.Status != core.EventPending || e.Attempts != 1):
				t.Fatalf("%v into the claim: %s, %d attempts; want left claimed to its lease", tt.downFor, e.Status, e.Attempts)
			}
		})
	}
}

// downWhile is a store fault: unavailable (cause) while *down is set.
func downWhile(down *bool, cause string) func() error {
	return func() error {
		if *down {
			return core.StoreDown(errors.New(cause), "database unavailable")
		}
		return nil
	}
}

// inboxWithEvents is a test inbox (batches of 10, a minute's lease, 3
// attempts) holding n pending ServiceNow deliveries CHG1…CHGn.
func inboxWithEvents(t *testing.T, n int) (*Inbox, *faultyStore, *stepClock, []string) {
	t.Helper()
	clock := &stepClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	in, fs := newTestInbox(t, clock, InboxConfig{BatchSize: 10, Lease: time.Minute, MaxAttempts: 3})
	var ids []string
	for i := range n {
		ids = append(ids, snEvent(t, fs.DB, fmt.Sprint("CHG", i+1), clock.Now().Add(time.Duration(i)*time.Millisecond)))
	}
	return in, fs, clock, ids
}

// A batch cut short by the process stopping: the event being processed
// and those after it are handed back at once, uncounted; what was
// processed before is recorded. No event is quarantined for the stop.
func TestInboxStopHandsBackClaims(t *testing.T) {
	in, fs, clock, ids := inboxWithEvents(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	fs.upsert["CHG2"] = func() error { cancel(); return context.Canceled }
	if n, err := in.ProcessBatch(ctx); err != nil || n != 4 {
		t.Fatalf("batch: %d %v", n, err)
	}
	bg := context.Background()
	for i, id := range ids {
		e, err := fs.GetEvent(bg, id)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case i == 0 && e.Status != core.EventProcessed:
			t.Fatalf("event processed before the stop: %s %q", e.Status, e.Reason)
		case i > 0 && (e.Status != core.EventPending || e.Attempts != 0 || e.ClaimedUntil == nil || e.ClaimedUntil.After(clock.Now())):
			t.Fatalf("event %d after the stop: %+v, want pending, claimable now, no attempt spent", i, e)
		}
	}
}

// A stop that arrives while a batch's outcomes are being recorded does
// not cut the recording short: the work is done, and cutting it would have
// it done again with an attempt counted (and, before, quarantined events
// whose recording the stop had failed). An outcome that cannot be recorded
// in time quarantines nothing either: the event's claim runs out.
func TestInboxStopWhileRecordingLosesNoWork(t *testing.T) {
	in, fs, clock, ids := inboxWithEvents(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	fs.finishes = func(rctx context.Context) error {
		cancel() // the stop arrives now
		return rctx.Err()
	}
	if n, err := in.ProcessBatch(ctx); err != nil || n != 3 {
		t.Fatalf("batch: %d %v", n, err)
	}
	bg := context.Background()
	for _, id := range ids {
		if e, _ := fs.GetEvent(bg, id); e.Status != core.EventProcessed || e.Attempts != 1 {
			t.Fatalf("event %s after a stop during its recording: %+v, want processed at its first attempt", id, e)
		}
	}

	// The batch statement fails, and one event's own outcome runs out of
	// time.
	late := snEvent(t, fs.DB, "CHG9", clock.Now())
	fs.finishes = func(context.Context) error { return errors.New("batch refused") }
	fs.finish[late] = context.DeadlineExceeded
	if n, err := in.ProcessBatch(bg); err != nil || n != 1 {
		t.Fatalf("second batch: %d %v", n, err)
	}
	if e, _ := fs.GetEvent(bg, late); e.Status != core.EventPending || e.ClaimedUntil == nil || !e.ClaimedUntil.After(clock.Now()) {
		t.Fatalf("event whose outcome ran out of time: %+v, want pending under its claim, not quarantined", e)
	}
}

// A delivery stored by another replica (here: straight into the store, not
// through this inbox's Receive) wakes this normalizer through the store's
// announcement, long before its poll.
func TestInboxWakesOnStoredDelivery(t *testing.T) {
	in, fs := newTestInbox(t, core.SystemClock, InboxConfig{PollInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(100 * time.Millisecond) // the first (empty) look for work is over

	id := snEvent(t, fs.DB, "CHG1", time.Now())
	deadline := time.Now().Add(3 * time.Second)
	for {
		e, err := fs.GetEvent(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if e.Status == core.EventProcessed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("event still %s after 3s: the stored delivery did not wake the normalizer", e.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestInboxWorkerWritesAreReplayable: the normalizer's workers write under
// core.WithReplayableWrites (what they store is rebuilt from the inbox when
// a crash of the database loses it); a batch processed on request — an
// admin's call, a test — is not.
func TestInboxWorkerWritesAreReplayable(t *testing.T) {
	in, fs := newTestInbox(t, core.SystemClock, InboxConfig{PollInterval: 10 * time.Millisecond})
	replayable := make(chan bool, 4)
	fs.finishes = func(ctx context.Context) error {
		replayable <- core.ReplayableWrites(ctx)
		return nil
	}
	snEvent(t, fs.DB, "CHG1", time.Now())
	if n, err := in.ProcessBatch(context.Background()); err != nil || n != 1 {
		t.Fatalf("ProcessBatch = %d, %v", n, err)
	}
	if <-replayable {
		t.Error("a batch processed on request wrote under WithReplayableWrites")
	}

	snEvent(t, fs.DB, "CHG2", time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case r := <-replayable:
		if !r {
			t.Error("the worker's batch did not write under WithReplayableWrites")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the worker recorded no outcome in 5 s")
	}
}

// circuitEnricher completes records as given, or fails as an outbound
// client whose circuit is open does while open is set.
type circuitEnricher struct{ open *bool }

func (c circuitEnricher) Enrich(_ context.Context, _ string, body []byte) ([]byte, error) {
	if *c.open {
		return nil, fmt.Errorf("ServiceNow acme: read change_request: %w", connectors.ErrCircuitOpen)
	}
	return body, nil
}

// An ITSM API whose circuit is open is not the event's failure either: an
// event that needs the API to complete its record waits for the circuit
// to heal, its attempts given back, instead of being quarantined once the
// retries' backoff (seconds) is spent during an outage of minutes.
func TestInboxAPICircuitOpenSpendsNoAttempts(t *testing.T) {
	clock := &stepClock{t: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, maps := openInboxStore(t, "sqlite:"+filepath.Join(t.TempDir(), "t.db"), clock, log)
	fs := &faultyStore{DB: db, upsert: map[string]func() error{}, finish: map[string]error{}}
	open := true
	conns := []Connector{{Config: connectors.Config{Name: "servicenow", Type: "servicenow"}, Enricher: circuitEnricher{&open}}}
	in := NewInbox(fs, conns, maps, nil, metrics.New(), clock, log, InboxConfig{BatchSize: 10, Lease: time.Minute, MaxAttempts: 3})
	id := snEvent(t, fs.DB, "CHG1", clock.Now())
	requireWaitsOut(t, in, fs, clock, id, "circuit open", &open)
}

// gatedEnricher completes records as given once release is closed,
// telling entered when the first call arrives: an ITSM API answering as
// slowly as the test wants.
type gatedEnricher struct {
	entered chan struct{}
	once    *sync.Once
	release chan struct{}
}

func (g gatedEnricher) Enrich(ctx context.Context, _ string, body []byte) ([]byte, error) {
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.release:
		return body, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A batch slower than the lease keeps its claims: another worker asking
// for events while the first waits on a slow API gets none of them, and
// the event is processed once with one attempt counted.
func TestInboxSlowBatchKeepsItsClaims(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, maps := openInboxStore(t, "sqlite:"+filepath.Join(t.TempDir(), "t.db"), core.SystemClock, log)
	const lease = time.Second
	slow := gatedEnricher{entered: make(chan struct{}), once: &sync.Once{}, release: make(chan struct{})}
	cfg := InboxConfig{BatchSize: 10, Lease: lease, MaxAttempts: 5}
	a := NewInbox(db, []Connector{{Config: connectors.Config{Name: "servicenow", Type: "servicenow"}, Enricher: slow}}, maps, nil, metrics.New(), core.SystemClock, log, cfg)
	b := NewInbox(db, []Connector{{Config: connectors.Config{Name: "servicenow", Type: "servicenow"}, Enricher: circuitEnricher{new(bool)}}}, maps, nil, metrics.New(), core.SystemClock, log, cfg)
	id := snEvent(t, db, "CHG1", time.Now())

	done := make(chan error, 1)
	go func() {
		_, err := a.ProcessBatch(context.Background())
		done <- err
	}()
	select {
	case <-slow.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first worker never called the API")
	}
	time.Sleep(5 * lease / 2) // the claim's first lease has long ended
	if n, err := b.ProcessBatch(context.Background()); err != nil || n != 0 {
		t.Fatalf("the second worker claimed %d events (%v) while the first still worked on them", n, err)
	}
	close(slow.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e, err := db.GetEvent(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != core.EventProcessed || e.Attempts != 1 {
		t.Fatalf("event %s after %d attempts (%s), want processed after 1", e.Status, e.Attempts, e.Reason)
	}
}
