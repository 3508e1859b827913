// Package inbox is the store of webhook deliveries: each one is stored
// durably, once per connector and delivery id, before it is acknowledged
// (the writers group concurrent deliveries into one statement, batch.go),
// and the normalizers claim, retry and settle them from here; operators
// list and replay them.
package inbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Inbox is the inbox of one database.
type Inbox struct {
	base   *sqldb.DB
	db     *sqlx.DB
	events *eventBatcher
}

// New starts the inbox's writers on db. wake is called after each group
// of deliveries that stored new ones commits, with the newest one's id;
// it wakes the normalizers (store/notify) and must not block.
func New(db *sqldb.DB, wake func(id string)) (*Inbox, error) {
	b, err := newEventBatcher(db, wake)
	if err != nil {
		return nil, err
	}
	return &Inbox{base: db, db: db.SQLX(), events: b}, nil
}

// CountQuarantined counts the deliveries of connectors received in
// [from, to) that the normalizer quarantined: what a reconciliation
// report over the period cannot judge (service.Reconciler).
func (in *Inbox) CountQuarantined(ctx context.Context, connectors []string, from, to time.Time) (int, error) {
	if len(connectors) == 0 {
		return 0, nil
	}
	query, args, err := sqlx.In(`SELECT COUNT(*) FROM inbox_events WHERE status = ? AND connector IN (?) AND received_at >= ? AND received_at < ?`,
		core.EventQuarantined, connectors, sqldb.TS(from), sqldb.TS(to))
	if err != nil {
		return 0, fmt.Errorf("count quarantined events: %w", err)
	}
	var n int
	if err := in.db.GetContext(ctx, &n, in.base.Q(query), args...); err != nil {
		return 0, fmt.Errorf("count quarantined events: %w", sqldb.Translate(err))
	}
	return n, nil
}

// Close stores the deliveries already queued and stops the writers;
// deliveries after Close fail with KindUnavailable.
func (in *Inbox) Close() { in.events.close() }

// Inbox limits.
const (
	maxClaim          = 1000
	defaultEventLimit = 100
	maxEventLimit     = 1000
	// maxReplayIDs caps the event ids listed in a bulk replay's audit entry.
	maxReplayIDs = 100
)

type eventRow struct {
	ID           string       `db:"id"`
	Connector    string       `db:"connector"`
	Type         string       `db:"type"`
	DedupeKey    string       `db:"dedupe_key"`
	Headers      string       `db:"headers"`
	Body         []byte       `db:"body"`
	ReceivedAt   time.Time    `db:"received_at"`
	Status       string       `db:"status"`
	Reason       string       `db:"reason"`
	Attempts     int          `db:"attempts"`
	LastError    string       `db:"last_error"`
	ClaimedUntil sql.NullTime `db:"claimed_until"`
	Record       string       `db:"record"`
	ProcessedAt  sql.NullTime `db:"processed_at"`
}

func (r eventRow) event() core.Event {
	e := core.Event{ID: r.ID, Connector: r.Connector, Type: r.Type, DedupeKey: r.DedupeKey, Body: json.RawMessage(r.Body),
		ReceivedAt: r.ReceivedAt.UTC(), Status: r.Status, Reason: r.Reason, Attempts: r.Attempts, LastError: r.LastError,
		Record: r.Record, ProcessedAt: sqldb.TimePtr(r.ProcessedAt)}
	if e.Status == core.EventPending {
		e.ClaimedUntil = sqldb.TimePtr(r.ClaimedUntil)
	}
	if r.Headers != "" && r.Headers != "{}" {
		// The headers are informational: an event whose stored headers do
		// not decode is still returned (and processed), without them, so
		// one odd row can never stall a claim.
		if err := json.Unmarshal([]byte(r.Headers), &e.Headers); err != nil {
			e.Headers = nil
		}
	}
	return e
}

func eventsOf(rows []eventRow) []core.Event {
	out := make([]core.Event, len(rows))
	for i, r := range rows {
		out[i] = r.event()
	}
	return out
}

const eventColumns = "id, connector, type, dedupe_key, headers, body, received_at, status, reason, attempts, last_error, claimed_until, record, processed_at"

// InsertEvent stores e as pending, or, when the connector already has an
// event with e's dedupe key, returns that event's id and duplicate=true.
// The unique index decides (INSERT … ON CONFLICT DO NOTHING), so two
// replicas receiving the same delivery at once store it once. An empty ID
// gets a new one; a zero ReceivedAt becomes now. The connector, type and
// dedupe key must be valid UTF-8 without NUL (KindInvalid otherwise: the
// delivery is refused, not stored half-readable); header values are made
// valid; the body is kept as bytes. A new event wakes the normalizers of
// every replica (SubscribeInbox).
func (in *Inbox) InsertEvent(ctx context.Context, e core.Event) (string, bool, error) {
	switch {
	case strings.TrimSpace(e.Connector) == "":
		return "", false, core.Invalid("connector", "is required")
	case strings.TrimSpace(e.DedupeKey) == "":
		return "", false, core.Invalid("dedupe_key", "is required")
	case !sqldb.TextOK(e.Connector):
		return "", false, core.Invalid("connector", "contains a NUL byte or invalid UTF-8")
	case !sqldb.TextOK(e.Type):
		return "", false, core.Invalid("type", "the event type %q contains a NUL byte or invalid UTF-8", e.Type)
	case !sqldb.TextOK(e.DedupeKey):
		return "", false, core.Invalid("dedupe_key", "the delivery id %q contains a NUL byte or invalid UTF-8", e.DedupeKey)
	}
	if e.ID == "" {
		e.ID = sqldb.NewID()
	}
	if e.ReceivedAt.IsZero() {
		e.ReceivedAt = in.base.Now()
	}
	if y := e.ReceivedAt.UTC().Year(); y < 1 || y > 9999 {
		return "", false, core.Invalid("received_at", "year %d is out of range", y)
	}
	headers := "{}"
	if len(e.Headers) > 0 {
		h := make(map[string]string, len(e.Headers))
		for k, v := range e.Headers {
			h[sqldb.CleanText(k)] = sqldb.CleanText(v)
		}
		headers = sqldb.MustJSON(h)
	}
	body := []byte(e.Body)
	if body == nil {
		body = []byte{}
	}
	// Stored with the deliveries waiting at the moment, in one statement
	// (batch.go); answered after the commit.
	return in.events.submit(ctx, pendingEvent{id: e.ID, connector: e.Connector, typ: e.Type, dedupeKey: e.DedupeKey,
		headers: headers, body: body, receivedAt: sqldb.TS(e.ReceivedAt)})
}

// write runs fn on the pool, or, for writes under
// core.WithReplayableWrites on PostgreSQL, in a transaction that commits
// without waiting for its flush (sqldb.DB.Tx): a claim or an outcome
// lost with such a commit leaves its events pending, to be processed
// again.
func (in *Inbox) write(ctx context.Context, fn func(q sqlx.ExtContext) error) error {
	if in.base.Dialect() == sqldb.Postgres && core.ReplayableWrites(ctx) {
		return in.base.Tx(ctx, func(tx *sqlx.Tx) error { return fn(tx) })
	}
	return fn(in.db)
}

// ClaimEvents leases up to limit pending events, oldest first, to the
// caller until now+lease and counts an attempt on each. Events claimed by
// another worker whose lease has not ended are skipped; on PostgreSQL
// concurrent claimers skip each other's locked rows (SKIP LOCKED), so no
// event goes to two workers at once.
func (in *Inbox) ClaimEvents(ctx context.Context, limit int, lease time.Duration) ([]core.Event, error) {
	switch {
	case limit <= 0:
		return nil, core.Invalid("limit", "must be positive")
	case lease <= 0:
		return nil, core.Invalid("lease", "must be positive")
	}
	limit = min(limit, maxClaim)
	now := in.base.Now()
	// The claim reads the first rows of inbox_events_claim, fitted to it.
	// SQLite without statistics would rather find the pending rows by the
	// status index and sort them all (21 ms at 10k pending, against a few
	// µs), so it is told which index to use.
	skipLocked, from := "", "inbox_events INDEXED BY inbox_events_claim"
	if in.base.Dialect() == sqldb.Postgres {
		skipLocked, from = " FOR UPDATE SKIP LOCKED", "inbox_events"
	}
	var rows []eventRow
	err := in.write(ctx, func(q sqlx.ExtContext) error {
		return sqlx.SelectContext(ctx, q, &rows, in.base.Q(`UPDATE inbox_events SET claimed_until = ?, attempts = attempts + 1
		WHERE id IN (SELECT id FROM `+from+`
			WHERE status = 'pending' AND (claimed_until IS NULL OR claimed_until < ?)
			ORDER BY received_at, id LIMIT ?`+skipLocked+`)
		RETURNING `+eventColumns), sqldb.TS(now.Add(lease)), now, limit)
	})
	if err != nil {
		return nil, fmt.Errorf("claim events: %w", sqldb.Translate(err))
	}
	slices.SortFunc(rows, func(a, b eventRow) int {
		if c := a.ReceivedAt.Compare(b.ReceivedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return eventsOf(rows), nil
}

// ExtendClaims moves the end of a claim still held to newUntil: of the
// events ids, those still pending whose claim ends at until (the caller's
// claim: not ended and taken by another worker, postponed, handed back or
// settled since). It returns how many it extended.
func (in *Inbox) ExtendClaims(ctx context.Context, ids []string, until, newUntil time.Time) (int, error) {
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if sqldb.TextOK(id) {
			valid = append(valid, id)
		}
	}
	if len(valid) == 0 {
		return 0, nil
	}
	query, args, err := sqlx.In(`UPDATE inbox_events SET claimed_until = ? WHERE id IN (?) AND status = 'pending' AND claimed_until = ?`,
		sqldb.TS(newUntil), valid, sqldb.TS(until))
	if err != nil {
		return 0, fmt.Errorf("extend claims: %w", err)
	}
	res, err := in.db.ExecContext(ctx, in.base.Q(query), args...)
	if err != nil {
		return 0, fmt.Errorf("extend claims: %w", sqldb.Translate(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("extend claims: %w", sqldb.Translate(err))
	}
	return int(n), nil
}

// FinishEvent records the outcome of processing a pending event:
// processed, quarantined or ignored, with a reason and the record it
// became. KindNotFound for an unknown id; KindConflict when the event is no
// longer pending (another worker finished it after this one's lease ended).
// The reason and record are made valid text (they may quote what the
// event carried), so recording an outcome never fails on their bytes.
func (in *Inbox) FinishEvent(ctx context.Context, id, status, reason, record string) error {
	switch status {
	case core.EventProcessed, core.EventQuarantined, core.EventIgnored:
	default:
		return core.Invalid("status", "must be processed, quarantined or ignored, not %q", status)
	}
	if !sqldb.TextOK(id) {
		return core.NotFound("event", id)
	}
	res, err := in.db.ExecContext(ctx, in.base.Q(`UPDATE inbox_events SET status = ?, reason = ?, record = ?, processed_at = ?, claimed_until = NULL, last_error = ''
		WHERE id = ? AND status = 'pending'`), status, sqldb.CleanText(reason), sqldb.CleanText(record), in.base.Now(), id)
	if err != nil {
		return fmt.Errorf("finish event %s: %w", id, sqldb.Translate(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("finish event %s: %w", id, sqldb.Translate(err))
	} else if n == 1 {
		return nil
	}
	cur, err := in.GetEvent(ctx, id)
	if err != nil {
		return err
	}
	return core.Errorf(core.KindConflict, "event %s is already %s", id, cur.Status)
}

// FinishEvents records the outcomes of a claimed batch in one
// transaction (one statement on PostgreSQL), so a batch costs one commit
// instead of one per event. settled[i] reports whether outcomes[i] was
// recorded; false means the event was no longer pending (another worker
// finished it after this one's lease ended) or does not exist. On an
// error nothing is recorded, and the caller settles the events one by one
// (FinishEvent), so one bad outcome cannot hold back the others. Reasons
// and records are made valid text, as in FinishEvent.
func (in *Inbox) FinishEvents(ctx context.Context, outcomes []core.EventOutcome) (settled []bool, err error) {
	ids := make([]string, len(outcomes))
	statuses := make([]string, len(outcomes))
	reasons := make([]string, len(outcomes))
	records := make([]string, len(outcomes))
	for i, o := range outcomes {
		switch o.Status {
		case core.EventProcessed, core.EventQuarantined, core.EventIgnored:
		default:
			return nil, core.Invalid("status", "must be processed, quarantined or ignored, not %q", o.Status)
		}
		if !sqldb.TextOK(o.ID) {
			return nil, core.NotFound("event", o.ID)
		}
		ids[i], statuses[i], reasons[i], records[i] = o.ID, o.Status, sqldb.CleanText(o.Reason), sqldb.CleanText(o.Record)
	}
	if len(outcomes) == 0 {
		return nil, nil
	}
	now := in.base.Now()
	done := make(map[string]bool, len(outcomes))
	if in.base.Dialect() == sqldb.Postgres {
		var got []string
		err = in.write(ctx, func(q sqlx.ExtContext) error {
			return sqlx.SelectContext(ctx, q, &got, `UPDATE inbox_events e SET status = o.status, reason = o.reason, record = o.record,
				processed_at = $5, claimed_until = NULL, last_error = ''
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS o(id, status, reason, record)
			WHERE e.id = o.id AND e.status = 'pending'
			RETURNING e.id`, pq.Array(ids), pq.Array(statuses), pq.Array(reasons), pq.Array(records), now)
		})
		for _, id := range got {
			done[id] = true
		}
	} else {
		err = in.base.Tx(ctx, func(tx *sqlx.Tx) error {
			st, err := tx.PreparexContext(ctx, `UPDATE inbox_events SET status = ?, reason = ?, record = ?, processed_at = ?, claimed_until = NULL, last_error = ''
				WHERE id = ? AND status = 'pending'`)
			if err != nil {
				return err
			}
			defer st.Close()
			for i := range outcomes {
				res, err := st.ExecContext(ctx, statuses[i], reasons[i], records[i], now, ids[i])
				if err != nil {
					return err
				}
				n, err := res.RowsAffected()
				if err != nil {
					return err
				}
				done[ids[i]] = n == 1
			}
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("finish %d events: %w", len(outcomes), sqldb.Translate(err))
	}
	settled = make([]bool, len(outcomes))
	for i, id := range ids {
		settled[i] = done[id]
	}
	return settled, nil
}

// RetryEvent records a transient failure of a pending event: lastError
// (made valid text) is kept for the listing, and the event's claim is
// moved to retryAt, when any worker may claim it again. KindNotFound for
// an unknown id; KindConflict when it is no longer pending.
func (in *Inbox) RetryEvent(ctx context.Context, id, lastError string, retryAt time.Time) error {
	return in.retryEvent(ctx, id, lastError, retryAt, "")
}

// PostponeEvent is RetryEvent for a failure that is not the event's (the
// database was unavailable, the process is stopping): the attempt its
// claim counted is given back, so an outage never spends an event's
// attempts and quarantines it. An empty lastError keeps the last one.
func (in *Inbox) PostponeEvent(ctx context.Context, id, lastError string, retryAt time.Time) error {
	return in.retryEvent(ctx, id, lastError, retryAt, ", attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END")
}

func (in *Inbox) retryEvent(ctx context.Context, id, lastError string, retryAt time.Time, set string) error {
	if !sqldb.TextOK(id) {
		return core.NotFound("event", id)
	}
	query, args := `UPDATE inbox_events SET claimed_until = ?`+set+` WHERE id = ? AND status = 'pending'`, []any{sqldb.TS(retryAt), id}
	if lastError != "" || set == "" {
		query, args = `UPDATE inbox_events SET last_error = ?, claimed_until = ?`+set+` WHERE id = ? AND status = 'pending'`, []any{sqldb.CleanText(lastError), sqldb.TS(retryAt), id}
	}
	res, err := in.db.ExecContext(ctx, in.base.Q(query), args...)
	if err != nil {
		return fmt.Errorf("retry event %s: %w", id, sqldb.Translate(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("retry event %s: %w", id, sqldb.Translate(err))
	} else if n == 1 {
		return nil
	}
	cur, err := in.GetEvent(ctx, id)
	if err != nil {
		return err
	}
	return core.Errorf(core.KindConflict, "event %s is already %s", id, cur.Status)
}

// StoredKeys returns which of keys (delivery ids: dedupe keys) the inbox
// holds for connector, whatever became of them.
func (in *Inbox) StoredKeys(ctx context.Context, connector string, keys []string) (map[string]bool, error) {
	out := make(map[string]bool, len(keys))
	valid := make([]string, 0, len(keys))
	for _, k := range keys {
		if sqldb.TextOK(k) { // one that is not valid text was never stored
			valid = append(valid, k)
		}
	}
	const chunk = 500
	for len(valid) > 0 {
		n := min(len(valid), chunk)
		query, args, err := sqlx.In("SELECT dedupe_key FROM inbox_events WHERE connector = ? AND dedupe_key IN (?)", connector, valid[:n])
		if err != nil {
			return nil, fmt.Errorf("look up stored %s deliveries: %w", connector, err)
		}
		var found []string
		// Rebind, not Q: a list of each length is its own text, not one to cache.
		if err := in.db.SelectContext(ctx, &found, in.db.Rebind(query), args...); err != nil {
			return nil, fmt.Errorf("look up stored %s deliveries: %w", connector, sqldb.Translate(err))
		}
		for _, k := range found {
			out[k] = true
		}
		valid = valid[n:]
	}
	return out, nil
}

// GetEvent returns the event with id. An id that is not valid text cannot
// exist: KindNotFound without asking the database.
func (in *Inbox) GetEvent(ctx context.Context, id string) (core.Event, error) {
	if !sqldb.TextOK(id) {
		return core.Event{}, core.NotFound("event", id)
	}
	var r eventRow
	if err := in.db.GetContext(ctx, &r, in.base.Q("SELECT "+eventColumns+" FROM inbox_events WHERE id = ?"), id); err != nil {
		return core.Event{}, sqldb.NotFound(err, "event", id)
	}
	return r.event(), nil
}

// ListEvents returns events by id (oldest first), optionally of one status
// and/or connector, after the cursor f.After, at most f.Limit (default
// 100, at most 1000).
func (in *Inbox) ListEvents(ctx context.Context, f core.EventFilter) ([]core.Event, error) {
	switch f.Status {
	case "", core.EventPending, core.EventProcessed, core.EventQuarantined, core.EventIgnored:
	default:
		return nil, core.Invalid("status", "must be pending, processed, quarantined or ignored, not %q", f.Status)
	}
	switch {
	case f.Limit < 0:
		return nil, core.Invalid("limit", "must not be negative")
	case f.Limit == 0:
		f.Limit = defaultEventLimit
	case f.Limit > maxEventLimit:
		f.Limit = maxEventLimit
	}
	if !sqldb.TextOK(f.Connector) {
		return nil, core.Invalid("connector", "contains a NUL byte or invalid UTF-8")
	}
	if !sqldb.TextOK(f.After) {
		return nil, core.Invalid("after", "contains a NUL byte or invalid UTF-8")
	}
	query := "SELECT " + eventColumns + " FROM inbox_events WHERE 1 = 1"
	var args []any
	if f.Status != "" {
		query += " AND status = ?"
		args = append(args, f.Status)
	}
	if f.Connector != "" {
		query += " AND connector = ?"
		args = append(args, f.Connector)
	}
	if f.After != "" {
		query += " AND id > ?"
		args = append(args, f.After)
	}
	query += " ORDER BY id LIMIT ?"
	args = append(args, f.Limit)
	var rows []eventRow
	if err := in.db.SelectContext(ctx, &rows, in.base.Q(query), args...); err != nil {
		return nil, fmt.Errorf("list events: %w", sqldb.Translate(err))
	}
	return eventsOf(rows), nil
}

// requeue is the SET clause that puts an event back to pending, claimable
// at once, with its attempts counted afresh.
const requeue = "status = 'pending', claimed_until = NULL, reason = '', processed_at = NULL, attempts = 0, last_error = ''"

// ReplayEvent puts an event back to pending, claimable at once and with
// its attempts counted afresh, with an "event.replay" audit entry: a
// finished event (after a mapping fix), or a pending one the normalizer
// keeps failing on (its claim and attempts reset). KindNotFound for an
// unknown id.
func (in *Inbox) ReplayEvent(ctx context.Context, id, actor string) error {
	if !sqldb.TextOK(id) {
		return core.NotFound("event", id)
	}
	entries := []core.AuditEntry{{Actor: actor, Action: "event.replay", Subject: "event:" + id}}
	err := in.base.AppendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) error {
		var cur struct {
			Connector string `db:"connector"`
			Status    string `db:"status"`
		}
		if err := tx.GetContext(ctx, &cur, in.base.Q("SELECT connector, status FROM inbox_events WHERE id = ?"), id); err != nil {
			return sqldb.NotFound(err, "event", id)
		}
		res, err := tx.ExecContext(ctx, in.base.Q("UPDATE inbox_events SET "+requeue+" WHERE id = ? AND status = ?"), id, cur.Status)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return core.Errorf(core.KindConflict, "event %s changed meanwhile, retry", id)
		}
		entries[0].Data = json.RawMessage(sqldb.MustJSON(map[string]string{"connector": cur.Connector, "previous_status": cur.Status}))
		return nil
	})
	if err != nil {
		return fmt.Errorf("replay event %s: %w", id, err)
	}
	return nil
}

// ReplayQuarantined puts every quarantined event of connector back to
// pending with one "event.replay" audit entry (count and up to 100 ids),
// and returns how many.
func (in *Inbox) ReplayQuarantined(ctx context.Context, connector, actor string) (int, error) {
	if strings.TrimSpace(connector) == "" {
		return 0, core.Invalid("connector", "is required")
	}
	if !sqldb.TextOK(connector) {
		return 0, core.Invalid("connector", "contains a NUL byte or invalid UTF-8")
	}
	var n int
	entries := []core.AuditEntry{{Actor: actor, Action: "event.replay", Subject: "inbox:" + connector}}
	err := in.base.AppendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) error {
		var ids []string
		if err := tx.SelectContext(ctx, &ids, in.base.Q("UPDATE inbox_events SET "+requeue+" WHERE connector = ? AND status = 'quarantined' RETURNING id"), connector); err != nil {
			return err
		}
		n = len(ids)
		slices.Sort(ids)
		data := map[string]any{"connector": connector, "previous_status": core.EventQuarantined, "count": n}
		if len(ids) > maxReplayIDs {
			ids, data["ids_truncated"] = ids[:maxReplayIDs], true
		}
		data["ids"] = ids
		entries[0].Data = json.RawMessage(sqldb.MustJSON(data))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("replay quarantined %s events: %w", connector, err)
	}
	return n, nil
}

// InboxLag returns when the oldest pending event arrived (zero when none)
// and how many are pending.
func (in *Inbox) InboxLag(ctx context.Context) (time.Time, int, error) {
	var pending int
	if err := in.db.GetContext(ctx, &pending, "SELECT count(*) FROM inbox_events WHERE status = 'pending'"); err != nil {
		return time.Time{}, 0, fmt.Errorf("inbox lag: %w", sqldb.Translate(err))
	}
	if pending == 0 {
		return time.Time{}, 0, nil
	}
	// A plain column read, not MIN(): SQLite keeps the column's TIMESTAMP
	// type only for a column, not for an aggregate.
	// On SQLite through the claim index, as in ClaimEvents: not a sort of
	// every pending row.
	from := "inbox_events"
	if in.base.Dialect() == sqldb.SQLite {
		from = "inbox_events INDEXED BY inbox_events_claim"
	}
	var oldest time.Time
	err := in.db.GetContext(ctx, &oldest, "SELECT received_at FROM "+from+" WHERE status = 'pending' ORDER BY received_at LIMIT 1")
	if errors.Is(err, sql.ErrNoRows) { // processed meanwhile
		return time.Time{}, 0, nil
	}
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("inbox lag: %w", sqldb.Translate(err))
	}
	return oldest.UTC(), pending, nil
}

// deleteBatch is how many settled events one DELETE of DeleteSettledBefore
// removes: short statements, so the inbox's writers never wait long on it.
const deleteBatch = 5000

// DeleteSettledBefore deletes the events settled as processed or ignored
// that were received before t, at most max (in statements of deleteBatch),
// and returns how many it deleted. Pending events (not yet settled) and
// quarantined ones (waiting for a person) are never deleted.
func (in *Inbox) DeleteSettledBefore(ctx context.Context, t time.Time, max int) (int, error) {
	q := in.base.Q(`DELETE FROM inbox_events WHERE id IN (SELECT id FROM inbox_events
		WHERE status IN ('` + core.EventProcessed + `', '` + core.EventIgnored + `') AND received_at < ? LIMIT ?)`)
	total := 0
	for total < max {
		n := min(deleteBatch, max-total)
		res, err := in.db.ExecContext(ctx, q, sqldb.TS(t), n)
		if err != nil {
			return total, fmt.Errorf("delete settled events: %w", sqldb.Translate(err))
		}
		done, _ := res.RowsAffected()
		total += int(done)
		if int(done) < n {
			break
		}
	}
	return total, nil
}
