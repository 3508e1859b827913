// Package itsm keeps durably what tollgate's ITSM and CI connectors need
// between calls: the ITSM pollers' watermarks, the changes opened for
// releases (one attempt at a time, across replicas), the outbox of work
// notes to write back, and the gate requests a CI waits on at its own
// gate until they are answered.
package itsm

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// ITSM is what the ITSM connectors' API side keeps in one database: the
// pollers' watermarks, the record of changes opened for releases, and the
// outbox of work notes to write back.
type ITSM struct {
	base *sqldb.DB
	db   *sqlx.DB
}

// New returns the ITSM connectors' records in db.
func New(db *sqldb.DB) *ITSM { return &ITSM{base: db, db: db.SQLX()} }

// Watermark returns the connector poller's watermark; ok is false before
// its first poll.
func (s *ITSM) Watermark(ctx context.Context, connector string) (time.Time, bool, error) {
	var t time.Time
	err := s.db.GetContext(ctx, &t, s.base.Q(`SELECT watermark FROM poll_watermarks WHERE connector = ?`), connector)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("load watermark of %s: %w", connector, sqldb.Translate(err))
	}
	return t.UTC(), true, nil
}

// SetWatermark stores the connector poller's watermark. It only moves
// forward: the lease holder is its only writer, but a poll that ran past
// its lease (a stalled replica) may finish after the replica that took
// the lease over polled further.
func (s *ITSM) SetWatermark(ctx context.Context, connector string, wm time.Time) error {
	return s.putWatermark(ctx, connector, wm,
		`CASE WHEN excluded.watermark > poll_watermarks.watermark THEN excluded.watermark ELSE poll_watermarks.watermark END`)
}

// ResetWatermark sets the connector poller's watermark to wm, back in
// time too, so that the next poll reads again from there (a re-sync
// after an ITSM restore; a test's poller started before old fixtures).
func (s *ITSM) ResetWatermark(ctx context.Context, connector string, wm time.Time) error {
	return s.putWatermark(ctx, connector, wm, `excluded.watermark`)
}

// putWatermark stores a watermark, an existing one replaced by newer.
func (s *ITSM) putWatermark(ctx context.Context, connector string, wm time.Time, newer string) error {
	_, err := s.db.ExecContext(ctx, s.base.Q(`INSERT INTO poll_watermarks (connector, watermark, polled_at) VALUES (?, ?, ?)
		ON CONFLICT (connector) DO UPDATE SET polled_at = excluded.polled_at, watermark = `+newer),
		connector, sqldb.TS(wm), s.base.Now())
	if err != nil {
		return fmt.Errorf("store watermark of %s: %w", connector, sqldb.Translate(err))
	}
	return nil
}

type creationRow struct {
	ReleaseID string    `db:"release_id"`
	Connector string    `db:"connector"`
	Status    string    `db:"status"`
	ChangeKey string    `db:"change_key"`
	Error     string    `db:"error"`
	Attempts  int       `db:"attempts"`
	CreatedAt time.Time `db:"created_at"`
	UpdatedAt time.Time `db:"updated_at"`
}

func (r creationRow) core() core.ChangeCreation {
	return core.ChangeCreation{ReleaseID: r.ReleaseID, Connector: r.Connector, Status: r.Status, ChangeKey: r.ChangeKey,
		Error: r.Error, Attempts: r.Attempts, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
}

// ClaimCreation records that connector is opening the change of
// releaseID, unless a record exists. It returns the record and whether
// the caller owns the attempt (and must call the ITSM): it does when it
// inserted the record, or took over a failed attempt, or a pending one not
// updated for staleAfter (its owner crashed: the caller must first look
// for the change that owner may have opened). The database's primary key
// decides between concurrent callers, never a check-then-insert.
func (s *ITSM) ClaimCreation(ctx context.Context, releaseID, connector string, staleAfter time.Duration) (core.ChangeCreation, bool, error) {
	if strings.TrimSpace(releaseID) == "" {
		return core.ChangeCreation{}, false, core.Invalid("release_id", "is required")
	}
	var (
		row   creationRow
		owner bool
	)
	err := s.base.Tx(ctx, func(tx *sqlx.Tx) error {
		now := s.base.Now()
		res, err := tx.ExecContext(ctx, s.base.Q(`INSERT INTO change_creations (release_id, connector, status, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (release_id) DO NOTHING`), releaseID, connector, core.CreationPending, now, now)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			owner = true
		} else {
			res, err = tx.ExecContext(ctx, s.base.Q(`UPDATE change_creations SET status = ?, connector = ?, attempts = attempts + 1, error = '', updated_at = ?
				WHERE release_id = ? AND (status = ? OR (status = ? AND updated_at < ?))`),
				core.CreationPending, connector, now, releaseID, core.CreationFailed, core.CreationPending, now.Add(-staleAfter))
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			owner = n == 1
		}
		return tx.GetContext(ctx, &row, s.base.Q(`SELECT release_id, connector, status, change_key, error, attempts, created_at, updated_at
			FROM change_creations WHERE release_id = ?`), releaseID)
	})
	if err != nil {
		return core.ChangeCreation{}, false, fmt.Errorf("claim change creation for %s: %w", releaseID, sqldb.Translate(err))
	}
	return row.core(), owner, nil
}

// GetCreation returns the creation record of releaseID (KindNotFound when
// none).
func (s *ITSM) GetCreation(ctx context.Context, releaseID string) (core.ChangeCreation, error) {
	var row creationRow
	err := s.db.GetContext(ctx, &row, s.base.Q(`SELECT release_id, connector, status, change_key, error, attempts, created_at, updated_at
		FROM change_creations WHERE release_id = ?`), releaseID)
	if errors.Is(err, sql.ErrNoRows) {
		return core.ChangeCreation{}, core.NotFound("change creation", releaseID)
	}
	if err != nil {
		return core.ChangeCreation{}, fmt.Errorf("load change creation for %s: %w", releaseID, sqldb.Translate(err))
	}
	return row.core(), nil
}

// FinishCreation records the outcome of the owner's attempt: the change's
// key (created), or the ITSM's error text (failed), with an audit entry.
func (s *ITSM) FinishCreation(ctx context.Context, releaseID, key, errText string) error {
	status, action := core.CreationCreated, "change.created"
	if key == "" {
		status, action = core.CreationFailed, "change.creation_failed"
	}
	var connector string
	if err := s.db.GetContext(ctx, &connector, s.base.Q(`SELECT connector FROM change_creations WHERE release_id = ?`), releaseID); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return core.NotFound("change creation", releaseID)
		}
		return fmt.Errorf("finish change creation for %s: %w", releaseID, sqldb.Translate(err))
	}
	entry := core.AuditEntry{
		Actor: "connector:" + connector, Action: action, Subject: "release:" + releaseID,
		Data: []byte(sqldb.MustJSON(map[string]string{"change": key, "error": errText, "connector": connector})),
	}
	err := s.base.AppendWith(ctx, []core.AuditEntry{entry}, func(ctx context.Context, tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, s.base.Q(`UPDATE change_creations SET status = ?, change_key = ?, error = ?, updated_at = ? WHERE release_id = ?`),
			status, key, errText, s.base.Now(), releaseID)
		return err
	})
	if err != nil {
		return fmt.Errorf("finish change creation for %s: %w", releaseID, sqldb.Translate(err))
	}
	return nil
}

type noteRow struct {
	ID        string    `db:"id"`
	DedupeKey string    `db:"dedupe_key"`
	Connector string    `db:"connector"`
	ChangeKey string    `db:"change_key"`
	Body      string    `db:"body"`
	Status    string    `db:"status"`
	Attempts  int       `db:"attempts"`
	LastError string    `db:"last_error"`
	NextAt    time.Time `db:"next_at"`
}

// EnqueueNote adds a work note to the outbox unless one with its dedupe
// key is there (a repeated deployment event writes one note).
func (s *ITSM) EnqueueNote(ctx context.Context, n core.OutboxNote) error {
	now := s.base.Now()
	_, err := s.db.ExecContext(ctx, s.base.Q(`INSERT INTO itsm_outbox (id, dedupe_key, connector, change_key, body, status, next_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING`),
		uuid.Must(uuid.NewV7()).String(), n.DedupeKey, n.Connector, n.ChangeKey, n.Body, now, now, now)
	if err != nil {
		return fmt.Errorf("enqueue work note for %s: %w", n.ChangeKey, sqldb.Translate(err))
	}
	return nil
}

// ClaimNotes leases up to limit due notes for lease: a crashed writer's
// notes are due again when the lease ends.
func (s *ITSM) ClaimNotes(ctx context.Context, limit int, lease time.Duration) ([]core.OutboxNote, error) {
	var rows []noteRow
	lock := ""
	if s.base.Dialect() == sqldb.Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	err := s.base.Tx(ctx, func(tx *sqlx.Tx) error {
		now := s.base.Now()
		if err := tx.SelectContext(ctx, &rows, s.base.Q(`SELECT id, dedupe_key, connector, change_key, body, status, attempts, last_error, next_at
			FROM itsm_outbox WHERE status = 'pending' AND next_at <= ? ORDER BY next_at LIMIT ?`+lock), now, limit); err != nil {
			return err
		}
		for _, r := range rows {
			if _, err := tx.ExecContext(ctx, s.base.Q(`UPDATE itsm_outbox SET next_at = ?, attempts = attempts + 1, updated_at = ? WHERE id = ?`),
				now.Add(lease), now, r.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim work notes: %w", sqldb.Translate(err))
	}
	out := make([]core.OutboxNote, len(rows))
	for i, r := range rows {
		out[i] = core.OutboxNote{ID: r.ID, DedupeKey: r.DedupeKey, Connector: r.Connector, ChangeKey: r.ChangeKey, Body: r.Body,
			Status: r.Status, Attempts: r.Attempts + 1, LastError: r.LastError, NextAt: r.NextAt.UTC()}
	}
	return out, nil
}

// FinishNote marks a note written, or, with errText, due again at retryAt.
func (s *ITSM) FinishNote(ctx context.Context, n core.OutboxNote, errText string, retryAt time.Time) error {
	var (
		res sql.Result
		err error
	)
	// The claim is the note's attempt count (each claim adds one): a
	// replica whose claim ran out and was taken over finishes nothing.
	if errText == "" {
		res, err = s.db.ExecContext(ctx, s.base.Q(`UPDATE itsm_outbox SET status = 'done', last_error = '', updated_at = ?
			WHERE id = ? AND attempts = ?`), s.base.Now(), n.ID, n.Attempts)
	} else {
		res, err = s.db.ExecContext(ctx, s.base.Q(`UPDATE itsm_outbox SET last_error = ?, next_at = ?, updated_at = ?
			WHERE id = ? AND attempts = ?`), errText, sqldb.TS(retryAt), s.base.Now(), n.ID, n.Attempts)
	}
	if err != nil {
		return fmt.Errorf("finish work note %s: %w", n.ID, sqldb.Translate(err))
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return fmt.Errorf("finish work note %s: %w", n.ID, ErrNoteClaimLost)
	}
	return nil
}

// ErrNoteClaimLost is FinishNote's and RenewNote's answer for a note
// whose claim ran out and was taken over meanwhile.
var ErrNoteClaimLost = core.Errorf(core.KindConflict, "the work note's claim was taken over")

// RenewNote extends a claimed note's claim to now+lease while it holds
// (ErrNoteClaimLost otherwise): the writer renews before each write, so
// a note whose claim ran out while earlier notes were written is not
// written by two replicas.
func (s *ITSM) RenewNote(ctx context.Context, n core.OutboxNote, lease time.Duration) error {
	res, err := s.db.ExecContext(ctx, s.base.Q(`UPDATE itsm_outbox SET next_at = ? WHERE id = ? AND attempts = ? AND status = 'pending'`),
		sqldb.TS(s.base.Now().Add(lease)), n.ID, n.Attempts)
	if err != nil {
		return fmt.Errorf("renew the claim of work note %s: %w", n.ID, sqldb.Translate(err))
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return fmt.Errorf("renew the claim of work note %s: %w", n.ID, ErrNoteClaimLost)
	}
	return nil
}

// Notes lists the outbox (newest first), for tests and operators.
func (s *ITSM) Notes(ctx context.Context, connector string) ([]core.OutboxNote, error) {
	var rows []noteRow
	if err := s.db.SelectContext(ctx, &rows, s.base.Q(`SELECT id, dedupe_key, connector, change_key, body, status, attempts, last_error, next_at
		FROM itsm_outbox WHERE connector = ? ORDER BY created_at DESC`), connector); err != nil {
		return nil, fmt.Errorf("list work notes: %w", sqldb.Translate(err))
	}
	out := make([]core.OutboxNote, len(rows))
	for i, r := range rows {
		out[i] = core.OutboxNote{ID: r.ID, DedupeKey: r.DedupeKey, Connector: r.Connector, ChangeKey: r.ChangeKey, Body: r.Body,
			Status: r.Status, Attempts: r.Attempts, LastError: r.LastError, NextAt: r.NextAt.UTC()}
	}
	return out, nil
}
