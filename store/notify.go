package store

import (
	"context"

	"github.com/tollgate-dev/tollgate/store/notify"
)

// TopicAll is broadcast when notifications may have been missed (the
// listener reconnected): every waiter should re-check its facts.
const TopicAll = notify.TopicAll

// NotifyStats are the cross-replica notifier's counters (notify.Stats).
type NotifyStats = notify.Stats

// announceEnded wakes this process's subscribers for the topics a
// committed transaction announced, once the fact cache has dropped them,
// and queues them for the other replicas. Not earlier: a waiter woken
// inside the transaction would re-read the old state (from the cache, or
// the database's last committed snapshot), go back to waiting, and never
// be woken again.
func (d *DB) announceEnded(topics []string) {
	for _, topic := range topics {
		d.hub.Broadcast(topic)
	}
	if d.notify != nil {
		d.notify.AddFacts(topics)
	}
}

// wakeInbox wakes the normalizers for a committed group of new webhook
// deliveries (id is the newest): this process's at once, the other
// replicas' through the notifier.
func (d *DB) wakeInbox(id string) {
	d.inboxHub.Broadcast(id)
	if d.notify != nil {
		d.notify.AddInbox(id)
	}
}

// Subscribe returns a channel of fact-change topics (e.g. "change:CHG1",
// "policy", or TopicAll) and a function that ends the subscription. The
// channel is buffered and never blocks the sender: a subscriber that falls
// behind misses topics but always has a wake-up pending, so it should
// re-check what it waits for on any receive. This process's own writes
// arrive as they commit; on PostgreSQL other replicas' writes arrive only
// while Listen runs (and this process's own once more, echoed).
func (d *DB) Subscribe() (<-chan string, func()) { return d.hub.Subscribe() }

// SubscribeInbox returns a channel that receives a value (the event id, or
// TopicAll after the listener reconnected) whenever a webhook delivery is
// stored, on any replica, and a function that ends the subscription. Like
// Subscribe it never blocks the sender. On PostgreSQL wake-ups from other
// replicas arrive only while Listen runs; on SQLite they are in-process.
func (d *DB) SubscribeInbox() (<-chan string, func()) { return d.inboxHub.Subscribe() }

// Listen forwards PostgreSQL notifications on the facts channel to this
// process's subscribers (and those on the inbox channel to
// SubscribeInbox's) until ctx ends, reconnecting when the connection drops
// (and then broadcasting TopicAll, since notifications sent while
// disconnected are lost). It returns nil when ctx ends. On SQLite it
// returns nil at once: there is no other replica, and this process's
// writes wake its subscribers directly (announceEnded, wakeInbox).
//
// Listen also drives the fact cache (store/factcache): it is live only while
// the listener is connected and answers its pings, and every notification
// invalidates it before subscribers are woken.
func (d *DB) Listen(ctx context.Context) error {
	if d.dialect != Postgres {
		return nil
	}
	l := notify.Listener{DSN: d.base.DSN(), Log: d.base.Log(), Facts: d.facts, FactsHub: &d.hub, InboxHub: &d.inboxHub,
		// Pings are a round trip through the pool: a listener that answers
		// but hears nothing (behind a transaction-pooling proxy) takes the
		// fact cache out of use.
		Probe: func(ctx context.Context, payload string) error {
			_, err := d.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, notify.ProbeChannel, payload)
			return err
		}}
	return l.Run(ctx)
}

// AnnounceStart tells every replica that this process has started
// (TopicAll): each flushes its fact cache, re-checks its waiting checks and
// rereads the policy. The notifier sends a write's notification after its
// commit, so a replica killed between the two leaves the others trusting
// what they cached for up to gate.facts_cache_ttl; when it starts again —
// a supervisor restarts it within seconds — that ends. Nothing on SQLite
// (one process).
func (d *DB) AnnounceStart() {
	if d.notify != nil {
		d.notify.AddFacts([]string{notify.TopicAll})
	}
}

// NotifyStats returns the cross-replica notifier's counters (zero on
// SQLite, which has no other replicas).
func (d *DB) NotifyStats() NotifyStats {
	if d.notify == nil {
		return NotifyStats{}
	}
	return d.notify.Stats()
}
