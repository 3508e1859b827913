package notify

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/store/factcache"
	"github.com/tollgate-dev/tollgate/store/sqldb/sqldbtest"
)

// listen runs a Listener on dsn into fresh hubs until the test ends, and
// returns once it demonstrably receives notifications (probes sent by
// probe, drained before it returns).
func listen(t *testing.T, dsn string, probe *Notifier) (facts, inbox *Hub) {
	t.Helper()
	facts, inbox = &Hub{}, &Hub{}
	cache := factcache.New(nil, core.SystemClock, -1, 0)
	l := Listener{DSN: dsn, Log: sqldbtest.DiscardLog(), Facts: cache, FactsHub: facts, InboxHub: inbox}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("listen: %v", err)
		}
	})
	sub, unsub := facts.Subscribe()
	defer unsub()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		probe.AddFacts([]string{"probe"})
		select {
		case <-sub:
			time.Sleep(50 * time.Millisecond)
			return facts, inbox
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("listener never received a notification")
	return nil, nil
}

// listening makes a fresh database with a listener on it and returns its
// URL and subscriptions to the fact topics and inbox wake-ups it hears,
// all ended when the test ends.
func listening(t *testing.T) (dsn string, facts, inbox <-chan string) {
	t.Helper()
	dsn = testpg.NewDatabase(t)
	probe, err := NewNotifier(dsn, sqldbtest.DiscardLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(probe.Close)
	factsHub, inboxHub := listen(t, dsn, probe)
	facts, unsubFacts := factsHub.Subscribe()
	t.Cleanup(unsubFacts)
	inbox, unsubInbox := inboxHub.Subscribe()
	t.Cleanup(unsubInbox)
	return dsn, facts, inbox
}

// What arrives while no send can go out is merged: one send carries every
// fact topic once, and one inbox wake-up the newest delivery's id.
func TestNotifierMergesABurstIntoOneSend(t *testing.T) {
	dsn, sub, inbox := listening(t)

	n, err := openNotifier(dsn, sqldbtest.DiscardLog())
	if err != nil {
		t.Fatal(err)
	}
	// A send writes nothing durable: its commit must not wait for a WAL
	// flush.
	var syncCommit string
	if err := n.db.QueryRow("SHOW synchronous_commit").Scan(&syncCommit); err != nil || syncCommit != "off" {
		t.Fatalf("the notifier's synchronous_commit = %q (%v), want off", syncCommit, err)
	}
	want := map[string]bool{}
	for i := range 10 {
		topic := "change:CHG" + strconv.Itoa(i)
		want[topic] = true
		n.AddFacts([]string{topic, topic})
	}
	n.AddInbox("e1")
	n.AddInbox("e2")
	n.start()
	defer n.Close()

	timeout := time.After(5 * time.Second)
	for len(want) > 0 {
		select {
		case got := <-sub:
			delete(want, got)
		case <-timeout:
			t.Fatalf("topics never arrived: %v", want)
		}
	}
	select {
	case got := <-inbox:
		if got != "e2" {
			t.Fatalf("inbox woken with %q, want the newest id e2", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no inbox wake-up")
	}
	// The listener may hear the send before its counters are updated.
	deadline := time.Now().Add(5 * time.Second)
	for n.Stats().Sends == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := n.Stats(); st.Sends != 1 || st.Notifications != 11 || st.Failures != 0 {
		t.Fatalf("stats %+v, want one send of 11 notifications", st)
	}
}

// Inbox wake-ups are spaced: while one went out less than inboxEvery ago,
// the next waits (carrying the newest id when it goes), unless a fact
// topic is queued, which is sent at once and takes the wake-up along.
func TestNotifierSpacesInboxWakeups(t *testing.T) {
	dsn, factSub, inbox := listening(t)
	recv := func(ch <-chan string, within time.Duration) string {
		t.Helper()
		select {
		case got := <-ch:
			return got
		case <-time.After(within):
			return ""
		}
	}

	n, err := openNotifier(dsn, sqldbtest.DiscardLog())
	if err != nil {
		t.Fatal(err)
	}
	n.inboxEvery = time.Hour // held until a fact topic comes
	n.start()
	defer n.Close()

	n.AddInbox("e1") // the first goes at once
	if got := recv(inbox, 5*time.Second); got != "e1" {
		t.Fatalf("first wake-up %q, want e1 at once", got)
	}
	for _, id := range []string{"e2", "e3", "e4"} {
		n.AddInbox(id)
	}
	if got := recv(inbox, 300*time.Millisecond); got != "" {
		t.Fatalf("wake-up %q sent within the spacing", got)
	}
	if st := n.Stats(); st.Sends != 1 {
		t.Fatalf("stats %+v, want the one send", st)
	}
	n.AddFacts([]string{"change:CHG1"})
	if got := recv(factSub, 5*time.Second); got != "change:CHG1" {
		t.Fatalf("fact topic %q, want it sent at once", got)
	}
	if got := recv(inbox, 5*time.Second); got != "e4" {
		t.Fatalf("held wake-up %q, want the newest id e4 with the fact topic", got)
	}
	// Once the spacing has passed, the held wake-up goes by itself.
	n.mu.Lock()
	n.inboxEvery = time.Second
	n.mu.Unlock()
	n.AddInbox("e5")
	n.AddInbox("e6")
	if got := recv(inbox, 5*time.Second); got != "e6" {
		t.Fatalf("wake-up %q, want e6 once the spacing passed", got)
	}
}

// Past notifyMaxTopics distinct topics, a burst is sent as TopicAll (every
// replica flushes its fact cache and re-checks).
func TestNotifierCollapsesAHugeBurstToTopicAll(t *testing.T) {
	n, err := openNotifier(sqldbtest.UnreachableDSN, sqldbtest.DiscardLog())
	if err != nil {
		t.Fatal(err)
	}
	defer n.db.Close()
	for i := range notifyMaxTopics + 1 {
		n.AddFacts([]string{"change:CHG" + strconv.Itoa(i)})
	}
	n.AddInbox("e1")
	channels, payloads := n.take()
	got := fmt.Sprint(channels, payloads)
	if want := fmt.Sprint([]string{FactsChannel, InboxChannel}, []string{TopicAll, "e1"}); got != want {
		t.Fatalf("sent %s, want %s", got, want)
	}
	if channels, _ := n.take(); len(channels) != 0 {
		t.Fatalf("queue not emptied: %v", channels)
	}
}

// A send that fails is counted and retried, and what was not sent stays
// queued (not dropped), through Close. (The store's side, that such a
// failure fails no write, is TestNotifyFailureNeverFailsTheWrite.)
func TestNotifierKeepsWhatItCannotSend(t *testing.T) {
	n, err := NewNotifier(sqldbtest.UnreachableDSN, sqldbtest.DiscardLog())
	if err != nil {
		t.Fatal(err)
	}
	n.AddFacts([]string{"change:CHGNF"})
	n.AddInbox("e1")
	deadline := time.Now().Add(10 * time.Second)
	for n.Stats().Failures < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no retry after a failed send: %+v", n.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.Close()
	if _, ok := n.facts["change:CHGNF"]; !ok || n.inbox != "e1" {
		t.Fatalf("unsent wake-ups dropped: facts %v, inbox %q", n.facts, n.inbox)
	}
}

// TestListenerProbeRoundTrip: a ping is a round trip through the pool. A
// listener that hears its probe back keeps the fact cache live; one whose
// probes never arrive (LISTEN behind a transaction-pooling proxy: pings
// answer, notifications are not delivered) takes the cache out of use.
func TestListenerProbeRoundTrip(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, tc := range []struct {
		name     string
		deliver  bool
		wantLive bool
	}{
		{"heard back", true, true},
		{"never delivered", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := factcache.New(nil, core.SystemClock, time.Minute, 0)
			var probes atomic.Int32
			probe := func(ctx context.Context, payload string) error {
				probes.Add(1)
				if !tc.deliver {
					return nil // the pooler swallowed it
				}
				_, err := db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, ProbeChannel, payload)
				return err
			}
			l := Listener{DSN: dsn, Log: sqldbtest.DiscardLog(), Facts: cache, FactsHub: &Hub{}, InboxHub: &Hub{},
				Probe: probe, PingEvery: 50 * time.Millisecond, PingTimeout: 300 * time.Millisecond}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- l.Run(ctx) }()
			defer func() { cancel(); <-done }()
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) && (cache.Live() != tc.wantLive || probes.Load() < 3) {
				time.Sleep(20 * time.Millisecond)
			}
			if cache.Live() != tc.wantLive {
				t.Fatalf("cache live %v after %d probes, want %v", cache.Live(), probes.Load(), tc.wantLive)
			}
		})
	}
}

// TestListenerStaysDownWhenTheReconnectDropped: pq queues its
// "reconnected" and may lose the new connection before the listener
// reads it; the fact cache must not come back live with no connection.
func TestListenerStaysDownWhenTheReconnectDropped(t *testing.T) {
	cache := factcache.New(nil, core.SystemClock, time.Minute, 0)
	var c connState
	c.reconnected()
	c.up(cache) // the first connect
	if !cache.Live() {
		t.Fatal("not live after the first connect")
	}
	c.set(cache, false) // dropped
	c.reconnected()     // pq reconnects, queues its nil…
	c.set(cache, false) // …and loses the new connection at once
	c.up(cache)         // Run reads the nil
	if cache.Live() {
		t.Fatal("live with no connection: the reconnect it stood for had dropped")
	}
	c.reconnected() // the next reconnect
	c.up(cache)
	if !cache.Live() {
		t.Fatal("not live after a reconnect that held")
	}
}
