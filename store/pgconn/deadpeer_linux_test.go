package pgconn_test

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/tollgate-dev/tollgate/internal/blackhole"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/store/pgconn"
)

// shortTCP are the URL's socket parameters for these tests: a peer that
// stops answering is given up after about a second.
var shortTCP = url.Values{
	"tcp_user_timeout":    {"1000"},
	"keepalives_idle":     {"1"},
	"keepalives_interval": {"1"},
	"keepalives_count":    {"2"},
}

// deadPeerBound is how long a test waits for a connection to a vanished
// database to fail: the user timeout and the kernel's retransmission
// steps, with room for a slow machine.
const deadPeerBound = 15 * time.Second

func drop(t *testing.T, p *blackhole.Proxy) {
	t.Helper()
	if err := p.Drop(); errors.Is(err, blackhole.ErrUnsupported) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
}

// TestDeadPeerFailsTheStatement: a database that vanishes from the
// network without closing its sockets fails a statement under a context
// that never ends (as the audit and inbox writers run theirs) once the
// TCP user timeout passes, and a new connection the same way, instead of
// leaving either waiting for ever; with the network back, the pool
// connects again.
func TestDeadPeerFailsTheStatement(t *testing.T) {
	u, proxy := testpg.Blackholed(t, testpg.NewDatabase(t), shortTCP)
	cfg, err := pgconn.Config(u, "tollgate dead peer test")
	if err != nil {
		t.Fatal(err)
	}
	db, err := pgconn.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "SELECT 1"); err != nil {
		t.Fatalf("before the drop: %v", err)
	}
	drop(t, proxy)

	timed := func(what string, f func() error) {
		t.Helper()
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("%s succeeded with the database gone", what)
			}
			t.Logf("%s failed after %v: %v", what, time.Since(start).Round(time.Millisecond), err)
		case <-time.After(deadPeerBound):
			t.Fatalf("%s still waiting after %v", what, deadPeerBound)
		}
	}
	// The open connection: the statement's bytes are never acknowledged.
	timed("a statement on the open connection", func() error {
		_, err := db.ExecContext(ctx, "SELECT 1")
		return err
	})
	// A new connection: its SYN is never answered.
	timed("a new connection", func() error { return db.PingContext(ctx) })

	if err := proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := db.PingContext(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection within 5 s of the network's return: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := db.ExecContext(ctx, "SELECT 1"); err != nil {
		t.Fatalf("after the network's return: %v", err)
	}
}

// TestDeadPeerEndsAnIdleListener: the LISTEN connection, idle between
// notifications, learns the database vanished from its keepalives (the
// kernel closes it once they go unanswered), so the listener reports the
// loss and, with the network back, reconnects and hears notifications
// again.
func TestDeadPeerEndsAnIdleListener(t *testing.T) {
	dbURL := testpg.NewDatabase(t)
	u, proxy := testpg.Blackholed(t, dbURL, shortTCP)
	events := make(chan pq.ListenerEventType, 16)
	l, err := pgconn.NewListener(u, 50*time.Millisecond, 200*time.Millisecond, func(ev pq.ListenerEventType, err error) {
		events <- ev
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Listen("tollgate_dead_peer"); err != nil {
		t.Fatal(err)
	}
	wait := func(want pq.ListenerEventType, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			select {
			case ev := <-events:
				if ev == want {
					return time.Since(start)
				}
			case <-time.After(within - time.Since(start)):
				t.Fatalf("listener event %d not within %v", want, within)
			}
		}
	}
	drop(t, proxy)
	took := wait(pq.ListenerEventDisconnected, deadPeerBound)
	t.Logf("the idle listener learned of the drop after %v", took.Round(time.Millisecond))

	if err := proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	wait(pq.ListenerEventReconnected, 10*time.Second)
	direct, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := direct.Exec("NOTIFY tollgate_dead_peer, 'back'"); err != nil {
			t.Fatal(err)
		}
		select {
		case n := <-l.Notify:
			if n != nil && n.Extra == "back" {
				return
			}
		case <-tick.C:
		case <-deadline:
			t.Fatal("no notification within 5 s of the reconnect")
		}
	}
}
