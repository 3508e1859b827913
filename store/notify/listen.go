// Package notify carries the store's wake-ups. A committed write's topics
// (a change, an incident, a hold, a stored webhook delivery) wake this
// process's subscribers through a Hub; on PostgreSQL a Notifier sends
// them to the other replicas after the commit (LISTEN/NOTIFY), and a
// Listener receives the other replicas' and keeps the gate's fact cache
// (store/factcache) live only while no notification can be missed.
package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
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

// ProbeChannel carries the listeners' round-trip probes (Listener.Probe):
// a channel of its own, so replicas of a build that does not know probes
// never hear them (on the facts channel they would flush their caches).
const ProbeChannel = "tollgate_probe"

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
	// Probe, when set, makes each ping a round trip: it sends payload on
	// ProbeChannel through the pool (pg_notify), and the fact cache
	// stays live only while the listener hears it back. A connection
	// that answers pings but never delivers notifications (LISTEN through
	// a transaction-pooling proxy) would otherwise keep other replicas'
	// writes out of this cache until entries expire.
	Probe func(ctx context.Context, payload string) error
	// PingEvery is how often the connection is checked, PingTimeout how
	// long a check may take (defaults listenPing, listenPingTimeout).
	PingEvery, PingTimeout time.Duration
}

// probePrefix starts a probe's payload (on ProbeChannel).
const probePrefix = "probe:"

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
	conn := connState{probe: l.Probe, probeID: probeID(), wake: make(chan struct{}, 1), timeout: l.PingTimeout}
	if conn.timeout <= 0 {
		conn.timeout = listenPingTimeout
	}
	pl, err := pgconn.NewListener(l.DSN, listenMinReconnect, listenMaxReconnect, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventDisconnected:
			conn.set(l.Facts, false)
			l.Log.WarnContext(ctx, "notification listener disconnected", "err", err)
		case pq.ListenerEventConnectionAttemptFailed:
			conn.set(l.Facts, false)
			l.Log.WarnContext(ctx, "notification listener cannot connect", "err", err)
		case pq.ListenerEventReconnected:
			conn.reconnected()
			l.Log.InfoContext(ctx, "notification listener reconnected")
		}
	})
	if err != nil {
		return core.Errorf(core.KindInvalid, "notification listener: %v", err)
	}
	defer pl.Close()
	defer l.Facts.SetLive(false)
	conn.reconnected() // the connection as of now: a drop from here on wins
	channels := []string{FactsChannel, InboxChannel}
	if l.Probe != nil {
		channels = append(channels, ProbeChannel)
	}
	for _, ch := range channels {
		if err := pl.Listen(ch); err != nil && !errors.Is(err, pq.ErrChannelAlreadyOpen) {
			return fmt.Errorf("listen on %s: %w", ch, sqldb.Translate(err))
		}
	}
	conn.up(l.Facts)
	every := l.PingEvery
	if every <= 0 {
		every = listenPing
	}
	ping := time.NewTicker(every)
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
				conn.up(l.Facts)
				l.FactsHub.Broadcast(TopicAll)
				l.InboxHub.Broadcast(TopicAll)
			case n.Channel == InboxChannel:
				l.InboxHub.Broadcast(n.Extra)
			case n.Channel == ProbeChannel:
				conn.heard(n.Extra) // this replica's or another's: no fact changed
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
	upGen     uint64 // gen when the connection up stands for was made
	connected bool
	pinging   atomic.Bool // a ping is in flight: the next tick skips

	// The round trip (Listener.Probe): probes sent carry probeID and a
	// number; seen is the newest number heard back, wake is signalled
	// when one is.
	probe   func(ctx context.Context, payload string) error
	probeID string
	sent    atomic.Uint64
	seen    atomic.Uint64
	wake    chan struct{}
	timeout time.Duration // how long a ping may take
}

// probeID names this listener's probes among every replica's.
func probeID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// heard records a probe payload the listener received, when it is one of
// this listener's.
func (c *connState) heard(payload string) {
	id, num, ok := strings.Cut(strings.TrimPrefix(payload, probePrefix), ":")
	if !ok || id != c.probeID {
		return
	}
	if n, err := strconv.ParseUint(num, 10, 64); err == nil && n > c.seen.Load() {
		c.seen.Store(n)
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// roundTrip sends a probe and waits up to timeout for the listener to
// hear it back.
func (c *connState) roundTrip(ctx context.Context, timeout time.Duration) error {
	n := c.sent.Add(1)
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.probe(pctx, fmt.Sprintf("%s%s:%d", probePrefix, c.probeID, n)); err != nil {
		return fmt.Errorf("send a probe notification: %w", err)
	}
	for c.seen.Load() < n {
		select {
		case <-c.wake:
		case <-pctx.Done():
			return errors.New("a probe notification sent through the pool did not come back to the listener: notifications are not delivered")
		}
	}
	return nil
}

// reconnected records the connection generation a connect began in (pq
// reports it on its own goroutine, ordered with the disconnects), so that
// up can tell whether the connection dropped again since.
func (c *connState) reconnected() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.upGen = c.gen
}

// up marks the listener connected unless it disconnected since the
// connect it stands for: pq queues its "reconnected" (a nil notification)
// and may lose the new connection before Run reads it, and the cache must
// not come back live with no connection.
func (c *connState) up(cache *factcache.Cache) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != c.upGen {
		return // dropped since: the next reconnect brings it back
	}
	c.gen++
	c.upGen = c.gen
	c.connected = true
	cache.SetLive(true)
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
	go func() {
		err := l.Ping()
		if err == nil && c.probe != nil {
			err = c.roundTrip(ctx, c.timeout)
		}
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(c.timeout):
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
