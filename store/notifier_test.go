package store

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/notify"
	"github.com/tollgate-dev/tollgate/store/sqldb/sqldbtest"
)

// A wake-up that cannot be sent fails no write: the writes commit and this
// process's subscribers are woken. (That the failure is counted, the send
// retried and what was not sent kept queued is
// TestNotifierKeepsWhatItCannotSend in store/notify.)
func TestNotifyFailureNeverFailsTheWrite(t *testing.T) {
	db := newTestDB(t, Postgres, nil)
	db.notify.Close()
	broken, err := notify.NewNotifier(sqldbtest.UnreachableDSN, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	db.notify = broken
	sub, unsub := db.Subscribe()
	defer unsub()
	inbox, unsubInbox := db.SubscribeInbox()
	defer unsubInbox()
	ctx := context.Background()

	id, _, err := db.InsertEvent(ctx, newEvent("github", "nf1", time.Now()))
	if err != nil {
		t.Fatalf("insert failed with the notifier down: %v", err)
	}
	if err := db.tx(ctx, func(tx *sqlx.Tx) error { db.notifyTx(tx, "change:CHGNF"); return nil }); err != nil {
		t.Fatalf("write failed with the notifier down: %v", err)
	}
	if got := <-inbox; got != id {
		t.Fatalf("local normalizer woken with %q, want %q", got, id)
	}
	waitTopic(t, sub, "change:CHGNF")
	if ev, err := db.GetEvent(ctx, id); err != nil || ev.Status != core.EventPending {
		t.Fatalf("event not stored: %+v %v", ev, err)
	}
	broken.Close()
	if st := db.NotifyStats(); st != broken.Stats() || st.Sends != 0 {
		t.Fatalf("store's notifier stats %+v, notifier's %+v: want the notifier's, no send", st, broken.Stats())
	}
}

// BenchmarkInsertEventNotify measures webhook-delivery inserts from many
// goroutines on PostgreSQL: "after_commit" is InsertEvent (the wake-up
// queued for the notifier after the commit), "in_transaction" the same
// insert with pg_notify in its statement, as the store did before (every
// such commit serialized on the notification queue's lock). The sub-
// benchmarks run in turn; for interleaved rounds run them alternately:
//
//	for i in 1 2 3; do for m in after_commit in_transaction; do
//	  go test -run '^$' -bench "InsertEventNotify/$m" -benchtime 3s ./store/
//	done; done
func BenchmarkInsertEventNotify(b *testing.B) {
	db := newBenchDB(b)
	ctx := context.Background()
	body := `{"payload":"` + strings.Repeat("x", 2000) + `"}`
	var seq atomic.Int64
	event := func() core.Event {
		k := strconv.FormatInt(seq.Add(1), 10) + "-" + newID()
		return core.Event{Connector: "bench", Type: "push", DedupeKey: k, Headers: map[string]string{"X-Delivery": k}, Body: []byte(body)}
	}
	inTx := db.q(`WITH ins AS (INSERT INTO inbox_events (id, connector, type, dedupe_key, headers, body, received_at, status)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (connector, dedupe_key) DO NOTHING
		RETURNING id)
		SELECT ins.id FROM ins, LATERAL (SELECT pg_notify('` + notify.InboxChannel + `', ins.id)) n`)
	for _, bc := range []struct {
		name string
		op   func(core.Event) error
	}{
		{"after_commit", func(e core.Event) error { _, _, err := db.InsertEvent(ctx, e); return err }},
		{"in_transaction", func(e core.Event) error {
			var id string
			return db.db.GetContext(ctx, &id, inTx, newID(), e.Connector, e.Type, e.DedupeKey, mustJSON(e.Headers), []byte(e.Body), time.Now().UTC(), core.EventPending)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetParallelism(16) // 32 writers on 2 cores, like the ingest closed loop
			start, sends := time.Now(), db.NotifyStats().Sends
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := bc.op(event()); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "inserts/s")
			if n := db.NotifyStats().Sends - sends; n > 0 {
				b.ReportMetric(float64(b.N)/float64(n), "inserts/send")
			}
		})
	}
}
