package service

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/all"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/faultfake"
	"github.com/tollgate-dev/tollgate/internal/itsmfake"
	"github.com/tollgate-dev/tollgate/internal/metrics"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const (
	outageUser = "tollgate.api"
	outagePW   = "sn-outage-pass"
)

// outageRetry keeps a failing ServiceNow cheap: 2 retries 10-40ms apart,
// 200ms per attempt, the circuit open for 300ms after 3 failed calls.
var outageRetry = &connectors.RetryPolicy{Max: 2, WaitMin: 10 * time.Millisecond, WaitMax: 40 * time.Millisecond,
	MaxRetryAfter: time.Second, FailuresToOpen: 3, OpenFor: 300 * time.Millisecond}

// outageInstance is a ServiceNow fake (one change) behind a fault server,
// and the API client of connector "servicenow" for it.
func outageInstance(t *testing.T) (*itsmfake.Server, *faultfake.Server, all.API) {
	t.Helper()
	fake := itsmfake.New(outageUser, outagePW)
	t.Cleanup(fake.Close)
	fake.PutSN("change_request", map[string]any{
		"number": map[string]any{"display_value": "CHG0000301", "value": "CHG0000301"},
		"sys_updated_on": map[string]any{"display_value": itsmfake.SNTime(time.Now().Add(-time.Hour)),
			"value": itsmfake.SNTime(time.Now().Add(-time.Hour))},
		"sys_class_name": map[string]any{"display_value": "Change Request", "value": "change_request"},
	})
	srv := faultfake.New(fake.Handler())
	t.Cleanup(srv.Close)
	api, err := all.NewAPI(connectors.Config{Name: "servicenow", Type: "servicenow",
		API: &connectors.API{URL: srv.URL, Username: outageUser, Password: outagePW, Timeout: 200 * time.Millisecond}},
		connectors.APIHooks{Retry: outageRetry}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return fake, srv, api
}

// waitFor polls cond every 20ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// TestPollerThroughOutage: while ServiceNow hangs and then answers 503,
// the poller keeps polling on its schedule (each poll bounded by the
// client's timeouts, then the open circuit refusing at once), stores
// nothing and does not move its watermark; once ServiceNow heals, the next poll
// after the circuit's pause brings the change in.
func TestPollerThroughOutage(t *testing.T) {
	_, srv, api := outageInstance(t)
	in, db := newTestInbox(t, core.ClockFunc(time.Now), InboxConfig{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := metrics.New()
	const interval = 100 * time.Millisecond
	p := NewPoller("servicenow", api, db, in, interval, "test", core.ClockFunc(time.Now), log, m)

	srv.Set(faultfake.Mode{Fault: faultfake.Hang})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()

	// Hanging: each poll costs 3 attempts of 200ms; three failed polls
	// open the circuit.
	waitFor(t, 5*time.Second, "the circuit opens", func() bool { return api.Circuit() == "open" })
	srv.Set(faultfake.Mode{Fault: faultfake.Status, Status: http.StatusServiceUnavailable})
	time.Sleep(700 * time.Millisecond) // polls refused by the circuit, trials meeting 503
	errs := counterValue(t, m.PollErrors.WithLabelValues("servicenow"))
	if errs < 4 {
		t.Errorf("%v poll errors during the outage, want the poller to keep its schedule", errs)
	}
	if evs, _ := db.ListEvents(ctx, core.EventFilter{Connector: "servicenow"}); len(evs) != 0 {
		t.Fatalf("%d events stored from a failing instance", len(evs))
	}
	// The first poll sets the initial watermark (InitialLookback back);
	// failed polls do not move it.
	if wm, ok, _ := db.Watermark(ctx, "servicenow"); ok && wm.After(time.Now().Add(-InitialLookback+time.Minute)) {
		t.Errorf("the watermark moved to %v during the outage", wm)
	}
	srv.Set(faultfake.Mode{Fault: faultfake.Healthy})
	took := waitFor(t, 3*time.Second, "the change is polled after the heal", func() bool {
		evs, _ := db.ListEvents(ctx, core.EventFilter{Connector: "servicenow"})
		return len(evs) == 1
	})
	t.Logf("%v poll errors in the outage; change polled %v after the heal", errs, took.Round(10*time.Millisecond))
	if api.Circuit() != "closed" {
		t.Errorf("circuit %s after the heal", api.Circuit())
	}
}

// TestWriteBackThroughOutage: a work note queued while ServiceNow
// answers 503 to the write is retried with backoff (the outbox keeps it,
// with the last error) and written once, exactly once, after ServiceNow
// heals.
func TestWriteBackThroughOutage(t *testing.T) {
	fake, srv, api := outageInstance(t)
	_, db := newTestInbox(t, core.ClockFunc(time.Now), InboxConfig{})
	w := NewWriteBack(db, core.ClockFunc(time.Now), slog.New(slog.DiscardHandler))
	w.SetRetryMin(50 * time.Millisecond)
	w.Add(api)
	ctx := context.Background()
	// The write (PATCH …/change_request/<sys_id>) fails; the lookup works.
	srv.Set(faultfake.Mode{Fault: faultfake.Status, Status: http.StatusServiceUnavailable, Match: "/change_request/"})
	if err := db.EnqueueNote(ctx, core.OutboxNote{DedupeKey: "d1:start:CHG0000301", Connector: "servicenow",
		ChangeKey: "CHG0000301", Body: "deployment started"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if n, err := w.Flush(ctx); err != nil || n != 0 {
			t.Fatalf("flush %d during the outage: %d written, %v", i, n, err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	notes, err := db.Notes(ctx, "servicenow")
	if err != nil || len(notes) != 1 || notes[0].Status == "done" || notes[0].Attempts < 2 || notes[0].LastError == "" {
		t.Fatalf("outbox during the outage: %+v %v", notes, err)
	}
	t.Logf("last error: %s", notes[0].LastError)
	srv.Set(faultfake.Mode{Fault: faultfake.Healthy})
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.Run(cctx) }()
	defer func() { cancel(); wg.Wait() }()
	took := waitFor(t, 5*time.Second, "the note is written after the heal", func() bool {
		ns, _ := db.Notes(ctx, "servicenow")
		return len(ns) == 1 && ns[0].Status == "done"
	})
	t.Logf("written %v after the heal", took.Round(10*time.Millisecond))
	time.Sleep(200 * time.Millisecond) // another pass must not write it again
	var journal []any
	for _, r := range fake.SNRecords("change_request") {
		journal, _ = r["work_notes_journal"].([]any)
	}
	if len(journal) != 1 {
		t.Errorf("work notes %v, want the note once", journal)
	}
}

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestWriteBackNoteTakenThenReset: ServiceNow takes the work note and the
// connection is reset before its answer. The client does not repeat the
// PATCH (the outcome is unknown); the outbox's next attempt finds the note
// on the change and writes nothing: the change carries it once.
func TestWriteBackNoteTakenThenReset(t *testing.T) {
	fake, srv, api := outageInstance(t)
	_, db := newTestInbox(t, core.ClockFunc(time.Now), InboxConfig{})
	w := NewWriteBack(db, core.ClockFunc(time.Now), slog.New(slog.DiscardHandler))
	w.SetRetryMin(time.Millisecond)
	w.Add(api)
	ctx := context.Background()
	srv.Set(faultfake.Mode{Fault: faultfake.ActReset, Match: "/change_request/"})
	if err := db.EnqueueNote(ctx, core.OutboxNote{DedupeKey: "d2:start:CHG0000301", Connector: "servicenow",
		ChangeKey: "CHG0000301", Body: "deployment started\nRun: https://ci.example.com/runs/7"}); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Flush(ctx); err != nil || n != 0 {
		t.Fatalf("first flush: %d written, %v", n, err)
	}
	if srv.Requests() != 1 {
		t.Errorf("the PATCH was sent %d times, want once", srv.Requests())
	}
	notes, err := db.Notes(ctx, "servicenow")
	if err != nil || len(notes) != 1 || !strings.Contains(notes[0].LastError, "outcome unknown") {
		t.Fatalf("outbox after the reset: %+v %v", notes, err)
	}
	srv.Set(faultfake.Mode{Fault: faultfake.Healthy})
	waitFor(t, 5*time.Second, "the note is found and settled", func() bool {
		_, _ = w.Flush(ctx)
		ns, _ := db.Notes(ctx, "servicenow")
		return len(ns) == 1 && ns[0].Status == "done"
	})
	var journal []any
	for _, r := range fake.SNRecords("change_request") {
		journal, _ = r["work_notes_journal"].([]any)
	}
	if len(journal) != 1 {
		t.Errorf("work notes %v, want the note once", journal)
	}
}

// TestPollerWatermarkIgnoresFutureStamps: a record stamped far ahead (its
// event stored, for the normalizer to refuse) does not carry the poll
// watermark with it; the watermark stays at the newest stamp the inbox
// takes, so the next polls still read what changes.
func TestPollerWatermarkIgnoresFutureStamps(t *testing.T) {
	fake, _, api := outageInstance(t)
	future := time.Now().AddDate(10, 0, 0)
	fake.PutSN("change_request", map[string]any{
		"number":         map[string]any{"display_value": "CHG0000302", "value": "CHG0000302"},
		"sys_updated_on": map[string]any{"display_value": itsmfake.SNTime(future), "value": itsmfake.SNTime(future)},
		"sys_class_name": map[string]any{"display_value": "Change Request", "value": "change_request"},
	})
	in, db := newTestInbox(t, core.ClockFunc(time.Now), InboxConfig{})
	p := NewPoller("servicenow", api, db, in, time.Minute, "test", core.ClockFunc(time.Now), slog.New(slog.DiscardHandler), metrics.New())
	ctx := context.Background()
	if n, err := p.PollOnce(ctx); err != nil || n != 2 {
		t.Fatalf("poll: %d records, %v; want both", n, err)
	}
	wm, ok, err := db.Watermark(ctx, "servicenow")
	if err != nil || !ok || wm.After(time.Now()) || wm.Before(time.Now().Add(-2*time.Hour)) {
		t.Fatalf("watermark %v (%v %v), want the hour-old change's stamp", wm, ok, err)
	}
}
