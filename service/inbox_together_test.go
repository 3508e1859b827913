package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// On PostgreSQL a batch's change records are stored in one transaction:
// one commit for the batch, every event processed with its own outcome.
// When one of those writes fails, nothing of the batch's transaction
// stays, and each event is processed alone as before: the failure is that
// event's (retried), the others are stored.
func TestInboxStoresABatchTogether(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	clock := &stepClock{t: at}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Run("one commit", func(t *testing.T) {
		in, fs := newTestInboxOn(t, testpg.NewMigratedDatabase(t), clock, InboxConfig{BatchSize: 10, Lease: time.Minute, MaxAttempts: 3}, log)
		var ids []string
		for _, key := range []string{"CHG6", "CHG5", "CHG4", "CHG3", "CHG2", "CHG1"} {
			ids = append(ids, snVersion(t, fs.DB, key, key, at))
		}
		if n, err := in.ProcessBatch(ctx); err != nil || n != 6 {
			t.Fatalf("batch: %d %v", n, err)
		}
		for _, id := range ids {
			if e, err := fs.GetEvent(ctx, id); err != nil || e.Status != core.EventProcessed || e.Reason != "created" || !strings.HasPrefix(e.Record, "change:CHG") {
				t.Fatalf("event %s: %+v %v", id, e, err)
			}
		}
		if n := testpg.Transactions(t, fs.DB.SQLX(), "changes"); n != 1 {
			t.Errorf("the batch's changes were stored by %d transactions, want 1", n)
		}
	})
	t.Run("a failed write", func(t *testing.T) {
		in, fs := newTestInboxOn(t, testpg.NewMigratedDatabase(t), clock, InboxConfig{BatchSize: 10, Lease: time.Minute, MaxAttempts: 3}, log)
		ids := map[string]string{}
		for _, key := range []string{"CHG1", "CHG2", "CHG3", "CHG4"} {
			ids[key] = snVersion(t, fs.DB, key, key, at)
		}
		fs.upsert["CHG3"] = func() error {
			return core.Wrap(core.KindConflict, errors.New(`pq: could not serialize access`), "contention")
		}
		if n, err := in.ProcessBatch(ctx); err != nil || n != 4 {
			t.Fatalf("batch: %d %v", n, err)
		}
		for key, id := range ids {
			e, err := fs.GetEvent(ctx, id)
			switch {
			case err != nil:
				t.Fatal(err)
			case key == "CHG3" && (e.Status != core.EventPending || e.Attempts != 1 || !strings.Contains(e.LastError, "contention")):
				t.Errorf("the failing event: %+v, want pending with its error", e)
			case key != "CHG3" && (e.Status != core.EventProcessed || e.Reason != "created"):
				t.Errorf("event of %s: %s %q, want processed, created", key, e.Status, e.Reason)
			}
		}
		if n := testpg.Transactions(t, fs.DB.SQLX(), "changes"); n != 3 {
			t.Errorf("changes stored by %d transactions, want 3 (one each, after the batch's was rolled back)", n)
		}
	})
}

// A write that panics (a bug met by one record) inside the batch's
// transaction rolls it back; processed alone, that event is quarantined
// with the panic and the others are stored.
func TestInboxBatchTogetherPanic(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	in, fs := newTestInboxOn(t, testpg.NewMigratedDatabase(t), &stepClock{t: at}, InboxConfig{BatchSize: 10, Lease: time.Minute, MaxAttempts: 3},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	ids := map[string]string{}
	for _, key := range []string{"CHG1", "CHG2", "CHG3"} {
		ids[key] = snVersion(t, fs.DB, key, key, at)
	}
	fs.upsert["CHG2"] = func() error { panic("index out of range") }
	if n, err := in.ProcessBatch(ctx); err != nil || n != 3 {
		t.Fatalf("batch: %d %v", n, err)
	}
	for key, id := range ids {
		e, err := fs.GetEvent(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want := core.EventProcessed
		if key == "CHG2" {
			want = core.EventQuarantined
		}
		if e.Status != want || (key == "CHG2" && !strings.Contains(e.Reason, "index out of range")) {
			t.Errorf("event of %s: %s %q, want %s", key, e.Status, e.Reason, want)
		}
	}
}

// Two replicas' normalizers, two workers each, take batches of deliveries
// over the same few changes in whatever order they arrived: the records
// are locked in key order, so no batch waits on another in a cycle
// (PostgreSQL would break it by failing one after deadlock_timeout, and
// that batch would be stored again one event at a time). Every event is
// processed and no batch falls back.
func TestInboxBatchesTogetherNeverDeadlock(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	url := testpg.NewMigratedDatabase(t)
	var fallbacks atomic.Int64
	log := slog.New(countingHandler{msg: "storing a batch's records together failed", n: &fallbacks})
	cfg := InboxConfig{Workers: 2, BatchSize: 12, Lease: time.Minute, MaxAttempts: 3, PollInterval: 10 * time.Millisecond}
	a, fs := newTestInboxOn(t, url, core.SystemClock, cfg, log)
	b, _ := newTestInboxOn(t, url, core.SystemClock, cfg, log)
	const events, keys = 240, 6
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range events {
		key := fmt.Sprintf("CHG%d", rnd.IntN(keys)) // each batch meets the keys in an order of its own
		snVersion(t, fs.DB, key, fmt.Sprintf("d%d", i), at.Add(time.Duration(i)*time.Second))
	}
	processed := runUntilDrained(t, fs.DB, a, b)
	if processed != events {
		t.Errorf("%d events processed, want %d", processed, events)
	}
	if n := fallbacks.Load(); n != 0 {
		t.Errorf("%d batches fell back to one event at a time", n)
	}
}

// countingHandler counts the records whose message begins with msg.
type countingHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.msg) {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }
