// Package notify carries the store's wake-ups. A committed write's topics
// (a change, an incident, a hold, a stored webhook delivery) wake this
// process's subscribers through a Hub; on PostgreSQL a Notifier sends
// them to the other replicas after the commit (LISTEN/NOTIFY), and a
// Listener receives the other replicas' and keeps the gate's fact cache
// (store/factcache) live only while no notification can be missed.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/factcache"
	"github.com/tollgate-dev/tollgate/store/pgconn"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// FactsChannel is the PostgreSQL LISTEN/NOTIFY channel on which stores
// announce that gate facts changed (a change, incident, PIR or policy).
const FactsChannel = "tollgate_facts"

// InboxChannel is the LISTEN/NOTIFY channel on which a stored webhook
// delivery wakes the normalizers of every replica. It is apart from the
// facts channel: a new event changes no gate fact, and must neither wake
// waiting checks nor touch the fact cache.
const InboxChannel = "tollgate_inbox"

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

// Hub fans notifications out to in-process subscribers. Its zero value is
// ready to use.
type Hub struct {
	mu   sync.Mutex
	subs map[chan string]struct{}
}

// Subscribe returns a channel of topics and a function that ends the
// subscription. The channel is buffered and never blocks the sender: a
// subscriber that falls behind misses topics but always has a wake-up
// pending, so it should re-check what it waits for on any receive.
func (h *Hub) Subscribe() (<-chan string, func()) {
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

// Broadcast delivers topic to every subscriber without blocking: a
// subscriber whose buffer is full already has a wake-up pending.
func (h *Hub) Broadcast(topic string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- topic:
		default:
		}
	}
}

// Listener forwards PostgreSQL notifications to this process's
// subscribers and drives the fact cache.
type Listener struct {
	DSN   string // the PostgreSQL database's URL
	Log   *slog.Logger
	Facts *factcache.Cache // live only while the listener is connected
	// FactsHub receives the facts channel's topics, InboxHub the inbox
	// channel's; both receive TopicAll after a reconnect.
	FactsHub, InboxHub *Hub
}

// Run forwards notifications on the facts channel to l.FactsHub (and
// those on the inbox channel to l.InboxHub) until ctx ends, reconnecting
// when the connection drops (and then broadcasting TopicAll, since
// notifications sent while disconnected are lost). It returns nil when
// ctx ends.
//
// Run also drives the fact cache (store/factcache): it is live only while
// the listener is connected and answers its pings, and every notification
// invalidates it before subscribers are woken.
func (l *Listener) Run(ctx context.Context) error {
	var conn connState
	pl, err := pgconn.NewListener(l.DSN, listenMinReconnect, listenMaxReconnect, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventDisconnected:
			conn.set(l.Facts, false)
			l.Log.WarnContext(ctx, "notification listener disconnected", "err", err)
		case pq.ListenerEventConnectionAttemptFailed:
			conn.set(l.Facts, false)
			l.Log.WarnContext(ctx, "notification listener cannot connect", "err", err)
		case pq.ListenerEventReconnected:
			l.Log.InfoContext(ctx, "notification listener reconnected")
		}
	})
	if err != nil {
		return core.Errorf(core.KindInvalid, "notification listener: %v", err)
	}
	defer pl.Close()
	defer l.Facts.SetLive(false)
	for _, ch := range []string{FactsChannel, InboxChannel} {
		if err := pl.Listen(ch); err != nil && !errors.Is(err, pq.ErrChannelAlreadyOpen) {
			return fmt.Errorf("listen on %s: %w", ch, sqldb.Translate(err))
		}
	}
	conn.set(l.Facts, true)
	ping := time.NewTicker(listenPing)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case n, ok := <-pl.Notify:
			switch {
			case !ok:
				return core.Errorf(core.KindUnavailable, "notification listener closed")
			case n == nil: // reconnected (and listening again): anything sent meanwhile is lost
				conn.set(l.Facts, true)
				l.FactsHub.Broadcast(TopicAll)
				l.InboxHub.Broadcast(TopicAll)
			case n.Channel == InboxChannel:
				l.InboxHub.Broadcast(n.Extra)
			default:
				l.Facts.Invalidate(n.Extra)
				l.FactsHub.Broadcast(n.Extra)
			}
		case <-ping.C:
			// A dead connection shows up here and the listener reconnects;
			// a ping that does not come back in time takes the fact cache
			// out of use until one does (a half-open connection would
			// otherwise lose notifications unnoticed).
			go conn.ping(ctx, pl, l.Facts)
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
