package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/tollgate-dev/tollgate/core"
)

// notifyChannel is the PostgreSQL LISTEN/NOTIFY channel on which stores
// announce that gate facts changed (a change, incident, PIR or policy).
const notifyChannel = "tollgate_facts"

// TopicAll is broadcast when notifications may have been missed (the
// listener reconnected): every waiter should re-check its facts.
const TopicAll = "*"

// Listener reconnect backoff and keep-alive.
const (
	listenMinReconnect = 500 * time.Millisecond
	listenMaxReconnect = 30 * time.Second
	listenPing         = 90 * time.Second
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

// notifyTx announces inside tx that the facts named by topic (e.g.
// "change:CHG0000024") changed. On PostgreSQL it is a NOTIFY, delivered to
// every replica when tx commits; on SQLite (one process, one connection) it
// is an in-process broadcast.
func (d *DB) notifyTx(ctx context.Context, tx *sqlx.Tx, topic string) error {
	if d.dialect == Postgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", notifyChannel, topic); err != nil {
			return fmt.Errorf("notify %s: %w", topic, err)
		}
		return nil
	}
	d.hub.broadcast(topic)
	return nil
}

// Subscribe returns a channel of fact-change topics (e.g. "change:CHG1",
// "policy", or TopicAll) and a function that ends the subscription. The
// channel is buffered and never blocks the sender: a subscriber that falls
// behind misses topics but always has a wake-up pending, so it should
// re-check what it waits for on any receive. On PostgreSQL topics arrive
// only while Listen runs.
func (d *DB) Subscribe() (<-chan string, func()) { return d.hub.subscribe() }

// Listen forwards PostgreSQL notifications on the facts channel to this
// process's subscribers until ctx ends, reconnecting when the connection
// drops (and then broadcasting TopicAll, since notifications sent while
// disconnected are lost). It returns nil when ctx ends. On SQLite it
// returns nil at once: notifyTx broadcasts in-process there.
func (d *DB) Listen(ctx context.Context) error {
	if d.dialect != Postgres {
		return nil
	}
	l := pq.NewListener(d.dsn, listenMinReconnect, listenMaxReconnect, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventDisconnected:
			d.log.WarnContext(ctx, "notification listener disconnected", "err", err)
		case pq.ListenerEventConnectionAttemptFailed:
			d.log.WarnContext(ctx, "notification listener cannot connect", "err", err)
		case pq.ListenerEventReconnected:
			d.log.InfoContext(ctx, "notification listener reconnected")
		}
	})
	defer l.Close()
	if err := l.Listen(notifyChannel); err != nil && !errors.Is(err, pq.ErrChannelAlreadyOpen) {
		return fmt.Errorf("listen on %s: %w", notifyChannel, translate(err))
	}
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
			case n == nil: // reconnected: anything sent meanwhile is lost
				d.hub.broadcast(TopicAll)
			default:
				d.hub.broadcast(n.Extra)
			}
		case <-ping.C:
			// A dead connection shows up here and the listener reconnects.
			go func() { _ = l.Ping() }()
		}
	}
}
