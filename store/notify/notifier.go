package notify

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"

	"github.com/tollgate-dev/tollgate/store/pgconn"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// The notifier sends the cross-replica wake-ups (LISTEN/NOTIFY) of
// committed writes after their commit, outside the writing transactions.
//
// Why not pg_notify inside the writing transaction: PostgreSQL commits
// transactions that notified one at a time (a cluster-wide lock on the
// notification queue, held until the commit record is flushed), so those
// writes cannot share a WAL flush; webhook ingest and the normalizer were
// bounded by it (docs/benchmarks.md). Here the writers commit as plain
// transactions and one goroutine per store sends what they announced, a
// burst merged into one short transaction that writes nothing durable.
//
// No wake-up is lost: a topic added while a send is in flight is sent by
// the next one, and a failed send is retried (merged with what arrived
// meanwhile) with backoff. A send never fails a write: the write has
// committed by then; failures are logged and counted (Stats), and the
// normalizer's poll, the gate's re-checks and the fact cache's TTL are the
// backstop.

// Notifier limits.
const (
	// notifyMaxTopics caps the distinct fact topics one send carries; past
	// it the burst is sent as TopicAll (every replica flushes its fact
	// cache and re-checks), which is cheaper than thousands of
	// notifications.
	notifyMaxTopics = 500
	// notifyRetryMin and notifyRetryMax bound the backoff between failed sends.
	notifyRetryMin = 100 * time.Millisecond
	notifyRetryMax = 5 * time.Second
	// notifyCloseTimeout bounds the last send when the store closes.
	notifyCloseTimeout = 2 * time.Second
	// inboxNotifyEvery spaces the sends that carry only an inbox wake-up.
	// Under webhook load a group of deliveries commits every millisecond
	// or so, and a send per group (a transaction here, a notification to
	// read on every listening connection, a wake-up in every replica)
	// cost the database and tollgate as much as the rows themselves. The
	// other replicas' normalizers need to hear that there is work, not
	// of each group: they claim whatever is pending. The writing replica
	// wakes its own at once, and fact topics are never held (waiting gate
	// checks and the fact cache depend on them).
	inboxNotifyEvery = 20 * time.Millisecond
)

// Stats are the notifier's counters: sends (transactions sent),
// notifications they carried, and failed sends.
type Stats struct {
	Sends, Notifications, Failures int64
}

// Notifier coalesces and sends wake-ups on its own connection.
type Notifier struct {
	db  *sql.DB // one connection, apart from the store's pool
	log *slog.Logger
	// stmt is notifyStatement, prepared at the first send (database/sql
	// prepares it again on a new connection after a lost one).
	stmt *sql.Stmt

	mu     sync.Mutex
	facts  map[string]struct{} // fact topics waiting to be sent
	inbox  string              // newest stored delivery's id waiting to be sent ("" none)
	closed bool

	signal chan struct{} // capacity 1: a pending token means "send again"
	// inboxEvery is inboxNotifyEvery (tests change it, under mu).
	inboxEvery time.Duration
	stop       context.CancelFunc
	done       chan struct{}

	sends, notifications, failures atomic.Int64
}

// NewNotifier starts a notifier on the PostgreSQL database at dsn.
func NewNotifier(dsn string, log *slog.Logger) (*Notifier, error) {
	n, err := openNotifier(dsn, log)
	if err != nil {
		return nil, err
	}
	n.start()
	return n, nil
}

// openNotifier makes a notifier that queues but does not send until start.
func openNotifier(dsn string, log *slog.Logger) (*Notifier, error) {
	cfg, err := pgconn.Config(dsn, "tollgate notifier")
	if err != nil {
		return nil, fmt.Errorf("open notifier connection: %w", err)
	}
	// A notification makes its transaction take an xid, so its commit
	// would wait for a WAL flush; nothing here is durable (see send), so
	// this connection never waits, whatever the URL sets.
	cfg.Runtime["synchronous_commit"] = "off"
	db, err := pgconn.Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("open notifier connection: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return &Notifier{db: db, log: log, facts: map[string]struct{}{}, signal: make(chan struct{}, 1),
		inboxEvery: inboxNotifyEvery, done: make(chan struct{})}, nil
}

func (n *Notifier) start() {
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	go n.run(ctx)
}

// AddFacts queues fact topics (committed writes' announcements) for every replica.
func (n *Notifier) AddFacts(topics []string) {
	if len(topics) == 0 {
		return
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	for _, t := range topics {
		n.facts[t] = struct{}{}
	}
	n.mu.Unlock()
	n.wake()
}

// AddInbox queues the wake-up of every replica's normalizer for a stored
// delivery. A burst is one notification carrying its newest id: the
// listeners only wake a worker, which claims whatever is pending.
func (n *Notifier) AddInbox(id string) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.inbox = id
	n.mu.Unlock()
	n.wake()
}

func (n *Notifier) wake() {
	select {
	case n.signal <- struct{}{}:
	default: // a send is already due; it will take what was just added
	}
}

// take empties the queue into the channels and payloads of one send.
func (n *Notifier) take() (channels, payloads []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.facts) > notifyMaxTopics {
		n.facts = map[string]struct{}{TopicAll: {}}
	}
	for t := range n.facts {
		channels, payloads = append(channels, FactsChannel), append(payloads, t)
	}
	clear(n.facts)
	if n.inbox != "" {
		channels, payloads = append(channels, InboxChannel), append(payloads, n.inbox)
		n.inbox = ""
	}
	return channels, payloads
}

// putBack requeues a failed send's notifications, under what arrived
// meanwhile (a newer inbox id wins).
func (n *Notifier) putBack(channels, payloads []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, ch := range channels {
		switch {
		case ch == FactsChannel:
			n.facts[payloads[i]] = struct{}{}
		case n.inbox == "":
			n.inbox = payloads[i]
		}
	}
}

func (n *Notifier) run(ctx context.Context) {
	defer close(n.done)
	retry := time.Duration(0)
	var lastInbox time.Time // the last send that carried an inbox wake-up
	for {
		select {
		case <-ctx.Done():
			// The store is closing: one last try for what is queued.
			if ch, p := n.take(); len(ch) > 0 {
				sctx, cancel := context.WithTimeout(context.Background(), notifyCloseTimeout)
				if err := n.send(sctx, ch, p); err != nil {
					n.failures.Add(1)
					n.putBack(ch, p) // unsent: left queued, for the record
					n.log.Warn("notify other replicas at close", "notifications", len(ch), "err", err)
				}
				cancel()
			}
			return
		case <-n.signal:
		}
		if !n.holdInbox(ctx, lastInbox) {
			continue // closing: the top of the loop sends what is queued
		}
		ch, p := n.take()
		if len(ch) == 0 {
			continue
		}
		err := n.send(ctx, ch, p)
		if err == nil {
			retry = 0
			if slices.Contains(ch, InboxChannel) {
				lastInbox = time.Now()
			}
			continue
		}
		n.failures.Add(1)
		n.putBack(ch, p)
		retry = min(max(2*retry, notifyRetryMin), notifyRetryMax)
		n.log.Warn("notify other replicas; retrying (the writes are committed)", "notifications", len(ch), "retry_in", retry, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
		n.wake()
	}
}

// holdInbox waits while only an inbox wake-up is queued and the last one
// went out less than n.inboxEvery ago; a fact topic queued meanwhile ends
// the wait (the wake-up goes with it). It returns false if ctx ended.
func (n *Notifier) holdInbox(ctx context.Context, lastInbox time.Time) bool {
	for {
		n.mu.Lock()
		onlyInbox := len(n.facts) == 0 && n.inbox != ""
		every := n.inboxEvery
		n.mu.Unlock()
		wait := time.Until(lastInbox.Add(every))
		if !onlyInbox || wait <= 0 {
			return true
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		case <-n.signal:
			t.Stop()
		}
	}
}

// notifyStatement sends a burst: one statement, so one round trip and its
// own (implicit) transaction; the notifications are delivered when it
// commits.
const notifyStatement = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)"

// send delivers one burst in one transaction. It writes nothing durable,
// so the connection commits without waiting for a WAL flush
// (synchronous_commit off): it holds the notification queue's lock for
// the length of a commit without I/O.
func (n *Notifier) send(ctx context.Context, channels, payloads []string) error {
	if n.stmt == nil {
		stmt, err := n.db.PrepareContext(ctx, notifyStatement)
		if err != nil {
			return fmt.Errorf("prepare notify: %w", sqldb.Translate(err))
		}
		n.stmt = stmt
	}
	if _, err := n.stmt.ExecContext(ctx, pq.Array(channels), pq.Array(payloads)); err != nil {
		return fmt.Errorf("notify: %w", sqldb.Translate(err))
	}
	n.sends.Add(1)
	n.notifications.Add(int64(len(channels)))
	return nil
}

// Close sends what is queued (bounded by notifyCloseTimeout), stops the
// goroutine and closes the connection; later additions are dropped.
func (n *Notifier) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	n.mu.Unlock()
	n.stop()
	<-n.done
	if n.stmt != nil {
		n.stmt.Close()
	}
	n.db.Close()
}

// Stats returns the notifier's counters.
func (n *Notifier) Stats() Stats {
	return Stats{Sends: n.sends.Load(), Notifications: n.notifications.Load(), Failures: n.failures.Load()}
}
