package store

import (
	"context"
	"fmt"
	"sync"

	"github.com/jmoiron/sqlx"
)

// notifyChannel is the PostgreSQL LISTEN/NOTIFY channel on which stores
// announce that gate facts changed (a change, incident, PIR or policy).
const notifyChannel = "tollgate_facts"

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
