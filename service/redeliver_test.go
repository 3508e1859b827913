package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
)

// fakeDeliveryLog is a sender's delivery log: a redelivery it is asked for
// becomes a new attempt (now), failing or not as the test says.
type fakeDeliveryLog struct {
	now       func() time.Time
	attempts  []connectors.Delivery
	asked     []string // GUIDs asked for again
	refuse    map[string]error
	redoOK    bool // a redelivery succeeds
	listErr   error
	tailErr   error                // returned after the attempts are handed on
	sinceArg  time.Time            // the log "" was read from
	sinceArgs map[string]time.Time // each log was read from
}

func (f *fakeDeliveryLog) Deliveries(_ context.Context, since func(string) time.Time, fn func(connectors.Delivery) error) error {
	f.sinceArg = since("")
	f.sinceArgs = map[string]time.Time{}
	if f.listErr != nil {
		return f.listErr
	}
	sorted := slices.Clone(f.attempts)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].At.After(sorted[j].At) })
	for _, d := range sorted {
		from := since(d.Log)
		f.sinceArgs[d.Log] = from
		if d.At.Before(from) {
			continue // newest first: this log's others are older still
		}
		if err := fn(d); err != nil {
			return err
		}
	}
	return f.tailErr
}

func (f *fakeDeliveryLog) Redeliver(_ context.Context, d connectors.Delivery) error {
	if err := f.refuse[d.GUID]; err != nil {
		return err
	}
	f.asked = append(f.asked, d.GUID)
	redo := d
	redo.ID, redo.At, redo.Redelivery, redo.OK, redo.StatusCode = d.ID+"r", f.now(), true, f.redoOK, 503
	if f.redoOK {
		redo.StatusCode = 202
	}
	f.attempts = append(f.attempts, redo)
	return nil
}

// redeliverStore is the lease, watermarks and inbox lookup in memory: the
// connector's watermark in outageStore's, each log's in logs.
type redeliverStore struct {
	outageStore
	stored map[string]bool
	err    error // the inbox lookup fails
	logs   map[string]time.Time
}

func (s *redeliverStore) Watermark(ctx context.Context, key string) (time.Time, bool, error) {
	if strings.Count(key, ":") < 2 {
		return s.outageStore.Watermark(ctx, key)
	}
	wm, ok := s.logs[key]
	return wm, ok, nil
}

func (s *redeliverStore) SetWatermark(ctx context.Context, key string, wm time.Time) error {
	if strings.Count(key, ":") < 2 {
		return s.outageStore.SetWatermark(ctx, key, wm)
	}
	if s.logs == nil {
		s.logs = map[string]time.Time{}
	}
	s.logs[key] = wm
	return nil
}

func (s *redeliverStore) StoredKeys(_ context.Context, connector string, keys []string) (map[string]bool, error) {
	if s.err != nil {
		return nil, s.err
	}
	out := map[string]bool{}
	for _, k := range keys {
		if s.stored[connector+"/"+k] {
			out[k] = true
		}
	}
	return out, nil
}

// TestRedeliverer: what one run asks the sender for again, and where it
// leaves its watermark.
func TestRedeliverer(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return now.Add(time.Duration(min) * time.Minute) }
	failed := func(guid string, min, status int) connectors.Delivery {
		return connectors.Delivery{ID: guid + "-" + time.Duration(min).String(), GUID: guid, At: at(min), StatusCode: status, Event: "deployment"}
	}
	ok := func(guid string, min int) connectors.Delivery {
		return connectors.Delivery{ID: guid + "-ok", GUID: guid, At: at(min), StatusCode: 202, OK: true, Event: "deployment"}
	}
	cases := []struct {
		name     string
		attempts []connectors.Delivery
		stored   []string
		storeErr error // the inbox lookup fails
		refuse   map[string]error
		wm       time.Time // zero: first run
		want     []string  // asked for again, in order
		run      RedeliverRun
		wantWM   time.Time
		wantErr  bool
	}{
		{
			name: "transient failures asked for again, oldest first; refusals, successes and stored ones not",
			attempts: []connectors.Delivery{
				failed("timeout", -30, 0), failed("bad-gateway", -40, 502), failed("limited", -20, 429),
				failed("bad-signature", -25, 401), failed("too-large", -24, 413),
				failed("healed", -50, 503), ok("healed", -45),
				failed("stored-late", -35, 0), ok("fine", -10),
			},
			stored: []string{"stored-late"},
			want:   []string{"bad-gateway", "timeout", "limited"},
			run:    RedeliverRun{Attempts: 9, Failed: 4, Stored: 1, Requested: 3},
			wantWM: at(-10),
		},
		{
			name:     "the last attempt decides: a transient failure after a refusal is asked for",
			attempts: []connectors.Delivery{failed("x", -20, 400), failed("x", -10, 503)},
			want:     []string{"x"},
			run:      RedeliverRun{Attempts: 2, Failed: 1, Requested: 1},
			wantWM:   at(-10),
		},
		{
			name:     "attempts before the watermark less the overlap are not read",
			attempts: []connectors.Delivery{failed("old", -120, 0), failed("new", -30, 0)},
			wm:       at(-60),
			want:     []string{"new"},
			run:      RedeliverRun{Attempts: 1, Failed: 1, Requested: 1},
			wantWM:   at(-30),
		},
		{
			name: "a delivery tried more than the most redeliveries is given up on",
			attempts: []connectors.Delivery{failed("hopeless", -60, 0), failed("hopeless", -50, 500), failed("hopeless", -40, 500),
				failed("hopeless", -30, 500), failed("hopeless", -20, 500), failed("hopeless", -10, 500)},
			run:    RedeliverRun{Attempts: 6, Failed: 1, Abandoned: 1},
			wantWM: at(-10),
		},
		{
			name:     "the sender refusing a redelivery for good skips it",
			attempts: []connectors.Delivery{failed("gone", -30, 0), failed("next", -20, 0)},
			refuse:   map[string]error{"gone": core.Invalid("delivery", "too old")},
			want:     []string{"next"},
			run:      RedeliverRun{Attempts: 2, Failed: 2, Requested: 1},
			wantWM:   at(-20),
		},
		{
			name:     "the sender failing stops the run with the watermark before the delivery left",
			attempts: []connectors.Delivery{failed("a", -30, 0), failed("b", -20, 0), ok("c", -5)},
			refuse:   map[string]error{"b": core.Errorf(core.KindUnavailable, "GitHub is away")},
			want:     []string{"a"},
			run:      RedeliverRun{Attempts: 3, Failed: 2, Requested: 1},
			wantWM:   at(-20),
			wantErr:  true,
		},
		{
			name:     "a delivery the sender defers is passed over, the others asked for, the watermark left before it",
			attempts: []connectors.Delivery{failed("held", -30, 0), failed("next", -20, 0), ok("c", -5)},
			refuse:   map[string]error{"held": core.Wrap(core.KindUnavailable, connectors.ErrDeferred, "the webhook is disabled")},
			want:     []string{"next"},
			run:      RedeliverRun{Attempts: 3, Failed: 2, Requested: 1, Deferred: 1},
			wantWM:   at(-30),
		},
		{
			name:     "the inbox failing asks for nothing and leaves the watermark before the oldest failure",
			attempts: []connectors.Delivery{failed("a", -30, 0), failed("b", -20, 0), ok("c", -5)},
			storeErr: core.Errorf(core.KindUnavailable, "database unreachable"),
			run:      RedeliverRun{Attempts: 3, Failed: 2},
			wantWM:   at(-30),
			wantErr:  true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			log := &fakeDeliveryLog{now: func() time.Time { return now }, attempts: c.attempts, refuse: c.refuse}
			st := &redeliverStore{stored: map[string]bool{}, err: c.storeErr}
			st.wm = c.wm
			for _, k := range c.stored {
				st.stored["gh/"+k] = true
			}
			r := NewRedeliverer("gh", log, st, time.Minute, "test", core.ClockFunc(func() time.Time { return now }), slog.New(slog.DiscardHandler), nil)
			run, err := r.RunOnce(context.Background())
			if (err != nil) != c.wantErr {
				t.Fatalf("err %v, want error %v", err, c.wantErr)
			}
			if !slices.Equal(log.asked, c.want) {
				t.Errorf("asked for %v, want %v", log.asked, c.want)
			}
			if run != c.run {
				t.Errorf("run %+v, want %+v", run, c.run)
			}
			if !st.wm.Equal(c.wantWM) {
				t.Errorf("watermark %v, want %v", st.wm, c.wantWM)
			}
			first := now.Add(-InitialLookback - redeliverOverlap)
			if !c.wm.IsZero() {
				first = c.wm.Add(-redeliverOverlap)
			}
			if !log.sinceArg.Equal(first) {
				t.Errorf("read since %v, want %v", log.sinceArg, first)
			}
		})
	}
}

// TestRedelivererAcrossRuns: a redelivery that fails again is asked for
// again in the next runs, up to MaxRedeliveries, then given up on once
// (not counted again); one that succeeds is not asked for again; a list
// that fails leaves the watermark where it was.
func TestRedelivererAcrossRuns(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	clock := &now
	log := &fakeDeliveryLog{now: func() time.Time { return *clock }, attempts: []connectors.Delivery{
		{ID: "1", GUID: "keeps-failing", At: now.Add(-time.Minute), StatusCode: 0},
	}}
	st := &redeliverStore{stored: map[string]bool{}}
	r := NewRedeliverer("gh", log, st, time.Minute, "test", core.ClockFunc(func() time.Time { return *clock }), slog.New(slog.DiscardHandler), nil)
	var abandoned int
	for i := 0; i < MaxRedeliveries+3; i++ {
		run, err := r.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		abandoned += run.Abandoned
		*clock = clock.Add(time.Minute)
	}
	if len(log.asked) != MaxRedeliveries || abandoned != 1 {
		t.Errorf("asked %d times and gave up %d times, want %d and 1", len(log.asked), abandoned, MaxRedeliveries)
	}

	log.attempts = append(log.attempts, connectors.Delivery{ID: "2", GUID: "heals", At: *clock, StatusCode: 502})
	log.redoOK = true
	log.asked = nil
	*clock = clock.Add(time.Minute)
	for i := 0; i < 3; i++ {
		if _, err := r.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		*clock = clock.Add(time.Minute)
	}
	if !slices.Equal(log.asked, []string{"heals"}) {
		t.Errorf("asked for %v, want [heals] once", log.asked)
	}

	wm := st.wm
	log.listErr = core.Errorf(core.KindUnavailable, "GitHub is away")
	if _, err := r.RunOnce(context.Background()); err == nil {
		t.Fatal("a failed list is no error")
	}
	if !st.wm.Equal(wm) {
		t.Errorf("watermark moved from %v to %v on a failed list", wm, st.wm)
	}
}

// TestRedelivererPerLog: a sender with several logs (GitLab's webhooks)
// has a watermark per log: a delivery deferred in one (a webhook GitLab
// holds disabled) holds back that log's watermark alone, the next run
// reads each log from its own, and a log that appears later starts from
// the newest any log got to.
func TestRedelivererPerLog(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return now.Add(time.Duration(min) * time.Minute) }
	attempt := func(log, guid string, min, status int) connectors.Delivery {
		return connectors.Delivery{ID: log + "/" + guid, Log: log, GUID: guid, At: at(min), StatusCode: status, OK: status == 202}
	}
	log := &fakeDeliveryLog{now: func() time.Time { return now }, attempts: []connectors.Delivery{
		attempt("31/5", "held", -30, 0), attempt("31/5", "held-ok", -40, 202),
		attempt("31/6", "b1", -20, 502), attempt("31/6", "b2", -5, 202),
	}, refuse: map[string]error{"held": core.Wrap(core.KindUnavailable, connectors.ErrDeferred, "the webhook is disabled")}, redoOK: true}
	st := &redeliverStore{stored: map[string]bool{}}
	r := NewRedeliverer("gl", log, st, time.Minute, "test", core.ClockFunc(func() time.Time { return now }), slog.New(slog.DiscardHandler), nil)

	run, err := r.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(log.asked, []string{"b1"}) || run.Deferred != 1 {
		t.Errorf("asked for %v (%+v), want [b1] and held deferred", log.asked, run)
	}
	want := map[string]time.Time{"redeliver:gl:31/5": at(-30), "redeliver:gl:31/6": at(-5)}
	for k, wm := range want {
		if !st.logs[k].Equal(wm) {
			t.Errorf("%s at %v, want %v", k, st.logs[k], wm)
		}
	}
	if !st.wm.Equal(at(-5)) {
		t.Errorf("the connector's watermark at %v, want the newest of the logs %v", st.wm, at(-5))
	}

	log.asked = nil
	log.attempts = append(log.attempts, attempt("31/7", "new-hook", -3, 0))
	if _, err := r.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	for lg, from := range map[string]time.Time{"31/5": at(-30), "31/6": at(-5), "31/7": at(-5)} {
		if got := log.sinceArgs[lg]; !got.Equal(from.Add(-redeliverOverlap)) {
			t.Errorf("log %s read from %v, want %v less the overlap", lg, got, from)
		}
	}
	if !slices.Equal(log.asked, []string{"new-hook"}) {
		t.Errorf("second run asked for %v, want [new-hook] (held still deferred, b1 asked once)", log.asked)
	}
}

// TestRedelivererHeldAppLog: a sender whose own log "" (a GitHub App's)
// holds a deferred delivery keeps that watermark back even when its other
// logs (repository webhooks) got further: the held delivery is read again.
func TestRedelivererHeldAppLog(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return now.Add(time.Duration(min) * time.Minute) }
	log := &fakeDeliveryLog{now: func() time.Time { return now }, attempts: []connectors.Delivery{
		{ID: "1", GUID: "app-held", At: at(-30)},
		{ID: "repos/acme/x/hooks/1/deliveries/2", Log: "repos/acme/x/hooks/1", GUID: "repo-ok", At: at(-5), StatusCode: 202, OK: true},
	}, refuse: map[string]error{"app-held": core.Wrap(core.KindUnavailable, connectors.ErrDeferred, "later")}}
	st := &redeliverStore{stored: map[string]bool{}}
	r := NewRedeliverer("gh", log, st, time.Minute, "test", core.ClockFunc(func() time.Time { return now }), slog.New(slog.DiscardHandler), nil)
	if _, err := r.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !st.wm.Equal(at(-30)) || !st.logs["redeliver:gh:repos/acme/x/hooks/1"].Equal(at(-5)) {
		t.Errorf("watermarks: the App's %v (want %v, held), the repository webhook's %v (want %v)", st.wm, at(-30), st.logs, at(-5))
	}
}

// TestRedelivererUnread: a log the sender could not list back to its
// watermark within a run (connectors.ErrUnread) does not stop the run:
// what was read is asked for, the watermarks move, and the loss is said
// (logged as an error, counted in run.Unread); any other error joined to
// it still fails the run.
func TestRedelivererUnread(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return now.Add(time.Duration(min) * time.Minute) }
	unread := fmt.Errorf("%w: project acme/x hook 6 events: more than 10000 since …", connectors.ErrUnread)
	log := &fakeDeliveryLog{now: func() time.Time { return now }, redoOK: true, tailErr: errors.Join(unread), attempts: []connectors.Delivery{
		{ID: "31/6/1", Log: "31/6", GUID: "u1", At: at(-5), StatusCode: 0},
	}}
	st := &redeliverStore{stored: map[string]bool{}}
	var logs strings.Builder
	r := NewRedeliverer("gl", log, st, time.Minute, "test", core.ClockFunc(func() time.Time { return now }), slog.New(slog.NewTextHandler(&logs, nil)), nil)
	run, err := r.RunOnce(context.Background())
	if err != nil || run.Unread != 1 || !slices.Equal(log.asked, []string{"u1"}) {
		t.Fatalf("run %+v, err %v, asked %v: want u1 asked and one log unread", run, err, log.asked)
	}
	if !st.logs["redeliver:gl:31/6"].Equal(at(-5)) {
		t.Errorf("the log's watermark at %v, want moved to %v", st.logs["redeliver:gl:31/6"], at(-5))
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "more than 10000") {
		t.Errorf("the unread log is not said: %s", logs.String())
	}
	log.tailErr = errors.Join(unread, errors.New("project acme/y: 500"))
	if _, err := r.RunOnce(context.Background()); err == nil {
		t.Error("an error beside the unread log did not fail the run")
	}
}
