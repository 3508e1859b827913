package store

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
)

// openReplica opens a second store on db's database, as another replica
// would.
func openReplica(t *testing.T, db *DB) *DB {
	t.Helper()
	r, err := Open(context.Background(), db.base.DSN(), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// listen runs db.Listen until the returned stop is called; on PostgreSQL
// it returns once the listener demonstrably receives notifications.
func listen(t *testing.T, db *DB) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- db.Listen(ctx) }()
	stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("listen: %v", err)
		}
	}
	if db.Dialect() != Postgres {
		return stop
	}
	sub, unsub := db.Subscribe()
	defer unsub()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Straight to the notifier: this process's subscribers are woken
		// by its own commits without the listener.
		db.notify.AddFacts([]string{"probe"})
		select {
		case <-sub:
			// Drain probes still in flight so tests see only their topics.
			time.Sleep(50 * time.Millisecond)
			return stop
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatal("listener never received a notification")
		}
	}
}

// waitTopic waits for topic on sub, skipping others.
func waitTopic(t *testing.T, sub <-chan string, topic string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case got := <-sub:
			if got == topic {
				return
			}
		case <-timeout:
			t.Fatalf("no %q notification", topic)
		}
	}
}

func TestNotifyReachesSubscribersOnlyAfterCommit(t *testing.T) {
	db := newTestDB(t, Postgres, nil)
	other := openReplica(t, db) // the writer is another replica
	stop := listen(t, db)
	defer stop()
	sub, unsub := db.Subscribe()
	defer unsub()
	for len(sub) > 0 {
		<-sub
	}
	ctx := context.Background()
	// announce runs a transaction on the other replica that announces
	// topic, holds it open until release is closed, then ends it with fn's
	// result (nil commits).
	announce := func(topic string, result error) (release chan struct{}, done chan error) {
		release, done = make(chan struct{}), make(chan error, 1)
		go func() {
			done <- other.tx(ctx, func(tx *sqlx.Tx) error {
				if _, err := tx.ExecContext(ctx, "SELECT 1"); err != nil {
					return err
				}
				other.notifyTx(tx, topic)
				<-release
				return result
			})
		}()
		return release, done
	}
	release, done := announce("change:CHG1", nil)
	select {
	case got := <-sub:
		t.Fatalf("got %q before commit", got)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitTopic(t, sub, "change:CHG1")

	// A rolled-back transaction notifies nobody.
	release, done = announce("change:CHG2", errors.New("roll back"))
	close(release)
	if err := <-done; err == nil {
		t.Fatal("the transaction committed")
	}
	select {
	case got := <-sub:
		t.Fatalf("got %q from a rolled-back transaction", got)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestListenOnSQLiteReturnsAtOnce(t *testing.T) {
	db := newTestDB(t, SQLite, nil)
	sub, unsub := db.Subscribe()
	defer unsub()
	if err := db.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := db.tx(ctx, func(tx *sqlx.Tx) error { db.notifyTx(tx, "policy"); return nil }); err != nil {
		t.Fatal(err)
	}
	waitTopic(t, sub, "policy")
}
