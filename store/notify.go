package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/factcache"
)

// notifyChannel is the PostgreSQL LISTEN/NOTIFY channel on which stores
// announce that gate facts changed (a change, incident, PIR or policy).
const notifyChannel = "tollgate_facts"

// inboxChannel is the LISTEN/NOTIFY channel on which a stored webhook
// delivery wakes the normalizers of every replica. It is apart from the
// facts channel: a new event changes no gate fact, and must neither wake
// waiting checks nor touch the fact cache.
const inboxChannel = "tollgate_inbox"

// TopicAll is broadcast when notifications may have been missed (the
// listener reconnected): every waiter should re-check its facts.
const TopicAll = "*"

// Listener reconnect backoff and keep-alive. The backoff is capped low:
// until the listener is back, other replicas' wake-ups do not reach this
// one (a long-poll waits on) and the fact cache is out of use, so after an
// outage it must listen again within seconds of the database's return; a
// connection attempt every 2 s costs a database that is away nothing.
const (
	listenMinReconnect = 500 * time.Millisecond
	listenMaxReconnect = 2 * time.Second
	// listenPing is how often the listener's connection is checked;
	// listenPingTimeout how long a ping may take before the fact cache
	// stops answering (so a silently dead connection makes it stale for
	// at most about their sum).
	listenPing        = 5 * time.Second
	listenPingTimeout = 5 * time.Second
)

// hub fans notifications out to in-process subscribers.
type hub struct {
	mu   sync.Mutex
	subs map[chan string]struct{}
}

func (h *hub) subscribe() (<-chan string, func()) {
	ch := make(chan string, 16)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[chan string]struct{}{}
	}
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

// broadcast delivers topic to every subscriber without blocking: a
// subscriber whose buffer is full already has a wake-up pending.
func (h *hub) broadcast(topic string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- topic:
		default:
		}
	}
}

// announceEnded wakes this process's subscribers for the topics a
// committed transaction announced, once the fact cache has dropped them,
// and queues them for the other replicas. Not earlier: a waiter woken
// inside the transaction would re-read the old state (from the cache, or
// the database's last committed snapshot), go back to waiting, and never
// be woken again.
func (d *DB) announceEnded(topics []string) {
	for _, topic := range topics {
		d.hub.broadcast(topic)
	}
	if d.notify != nil {
		d.notify.addFacts(topics)
	}
}

// Subscribe returns a channel of fact-change topics (e.g. "change:CHG1",
// "policy", or TopicAll) and a function that ends the subscription. The
// channel is buffered and never blocks the sender: a subscriber that falls
// behind misses topics but always has a wake-up pending, so it should
// re-check what it waits for on any receive. This process's own writes
// arrive as they commit; on PostgreSQL other replicas' writes arrive only
// while Listen runs (and this process's own once more, echoed).
func (d *DB) Subscribe() (<-chan string, func()) { return d.hub.subscribe() }

// SubscribeInbox returns a channel that receives a value (the event id, or
// TopicAll after the listener reconnected) whenever a webhook delivery is
// stored, on any replica, and a function that ends the subscription. Like
// Subscribe it never blocks the sender. On PostgreSQL wake-ups from other
// replicas arrive only while Listen runs; on SQLite they are in-process.
func (d *DB) SubscribeInbox() (<-chan string, func()) { return d.inbox.subscribe() }

// Listen forwards PostgreSQL notifications on the facts channel to this
// process's subscribers (and those on the inbox channel to
// SubscribeInbox's) until ctx ends, reconnecting when the connection drops
// (and then broadcasting TopicAll, since notifications sent while
// disconnected are lost). It returns nil when ctx ends. On SQLite it
// returns nil at once: there is no other replica, and this process's
// writes wake its subscribers directly (announceEnded, InsertEvent).
//
// Listen also drives the fact cache (store/factcache): it is live only while
// the listener is connected and answers its pings, and every notification
// invalidates it before subscribers are woken.
func (d *DB) Listen(ctx context.Context) error {
	if d.dialect != Postgres {
		return nil
	}
	var conn connState
	l := pq.NewListener(d.base.DSN(), listenMinReconnect, listenMaxReconnect, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventDisconnected:
			conn.set(d.facts, false)
			d.base.Log().WarnContext(ctx, "notification listener disconnected", "err", err)
		case pq.ListenerEventConnectionAttemptFailed:
			conn.set(d.facts, false)
			d.base.Log().WarnContext(ctx, "notification listener cannot connect", "err", err)
		case pq.ListenerEventReconnected:
			d.base.Log().InfoContext(ctx, "notification listener reconnected")
		}
	})
	defer l.Close()
	defer d.facts.SetLive(false)
	for _, ch := range []string{notifyChannel, inboxChannel} {
		if err := l.Listen(ch); err != nil && !errors.Is(err, pq.ErrChannelAlreadyOpen) {
			return fmt.Errorf("listen on %s: %w", ch, translate(err))
		}
	}
	conn.set(d.facts, true)
	ping := time.NewTicker(listenPing)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case n, ok := <-l.Notify:
			switch {
			case !ok:
				return core.Errorf(core.KindUnavailable, "notification listener closed")
			case n == nil: // reconnected (and listening again): anything sent meanwhile is lost
				conn.set(d.facts, true)
				d.hub.broadcast(TopicAll)
				d.inbox.broadcast(TopicAll)
			case n.Channel == inboxChannel:
				d.inbox.broadcast(n.Extra)
			default:
				d.facts.Invalidate(n.Extra)
				d.hub.broadcast(n.Extra)
			}
		case <-ping.C:
			// A dead connection shows up here and the listener reconnects;
			// a ping that does not come back in time takes the fact cache
			// out of use until one does (a half-open connection would
			// otherwise lose notifications unnoticed).
			go conn.ping(ctx, l, d.facts)
		}
	}
}

// connState tracks the listener's connection for the fact cache: gen
// changes on every connect and disconnect, so a late ping result cannot
// revive the cache across a disconnect.
type connState struct {
	mu        sync.Mutex
	gen       uint64
	connected bool
	pinging   atomic.Bool // a ping is in flight: the next tick skips
}

// set records a connect (true) or disconnect; either empties the cache.
func (c *connState) set(cache *factcache.Cache, connected bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.connected = connected
	cache.SetLive(connected)
}

func (c *connState) ping(ctx context.Context, l *pq.Listener, cache *factcache.Cache) {
	c.mu.Lock()
	gen, up := c.gen, c.connected
	c.mu.Unlock()
	if !up || !c.pinging.CompareAndSwap(false, true) {
		return
	}
	defer c.pinging.Store(false)
	done := make(chan error, 1)
	go func() { done <- l.Ping() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(listenPingTimeout):
		c.mu.Lock()
		if c.gen == gen {
			cache.SetLive(false)
		}
		c.mu.Unlock()
		err = <-done
	case <-ctx.Done():
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return // connected or disconnected meanwhile: that event decided
	}
	if err != nil {
		cache.SetLive(false)
		return
	}
	// Alive: nothing was lost on this connection; a cache a slow ping
	// took out of use comes back (emptied).
	cache.Resume()
}
