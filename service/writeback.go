package service

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/inert"
)

// NoteWriter writes work notes on one ITSM's changes.
type NoteWriter interface {
	Name() string
	OwnsChange(key string) bool
	AddWorkNote(ctx context.Context, key, text string) error
}

// NoteFinder, when a NoteWriter implements it, tells whether a change
// already carries a note. A failed write may have been taken (no answer
// after it was sent, a 5xx; the outbound client does not repeat it), so a
// note's later attempts look before writing it again.
type NoteFinder interface {
	HasWorkNote(ctx context.Context, key, text string) (bool, error)
}

// NoteStore is the durable outbox of work notes.
type NoteStore interface {
	EnqueueNote(ctx context.Context, n core.OutboxNote) error
	ClaimNotes(ctx context.Context, limit int, lease time.Duration) ([]core.OutboxNote, error)
	FinishNote(ctx context.Context, n core.OutboxNote, errText string, retryAt time.Time) error
	RenewNote(ctx context.Context, n core.OutboxNote, lease time.Duration) error
}

// Write-back timing: a claimed note is retried after noteLease if its
// writer vanished; failed writes back off from noteRetryMin to
// noteRetryMax.
const (
	noteLease    = 2 * time.Minute
	noteRetryMin = 10 * time.Second
	noteRetryMax = time.Hour
)

// WriteBack writes a work note on each change a deployment covers when it
// starts and ends (connectors with write_back: true): queued in a durable
// outbox when the deployment is recorded, written by a background loop
// that retries until the ITSM takes it. Neither the deployment report nor
// the gate ever waits for the ITSM.
type WriteBack struct {
	store   NoteStore
	writers []NoteWriter
	clock   core.Clock
	log     *slog.Logger
	wake    chan struct{}
	// retryMin is the first retry delay in nanoseconds (noteRetryMin
	// unless SetRetryMin changed it).
	retryMin atomic.Int64
	// changes and policies, when set (FlagEmergencies), flag the notes of
	// deployments that cover an emergency change.
	changes  StoredChanges
	policies *Policies
}

// StoredChanges reads a stored change.
type StoredChanges interface {
	GetChange(ctx context.Context, key string) (core.Change, error)
}

// FlagEmergencies makes the notes of a deployment covering an emergency
// change (as stored when the deployment is recorded) say so, with when its
// retrospective review and its validation are due under the policy in
// force (its emergency timers).
func (w *WriteBack) FlagEmergencies(changes StoredChanges, policies *Policies) {
	w.changes, w.policies = changes, policies
}

// SetRetryMin sets the first retry delay of a failed write (tests).
func (w *WriteBack) SetRetryMin(d time.Duration) { w.retryMin.Store(int64(d)) }

// NewWriteBack wires an empty write-back; Add the writers.
func NewWriteBack(store NoteStore, clock core.Clock, log *slog.Logger) *WriteBack {
	w := &WriteBack{store: store, clock: clock, log: log, wake: make(chan struct{}, 1)}
	w.retryMin.Store(int64(noteRetryMin))
	return w
}

// Add registers a writer.
func (w *WriteBack) Add(nw NoteWriter) { w.writers = append(w.writers, nw) }

// Len is the number of writers.
func (w *WriteBack) Len() int { return len(w.writers) }

func (w *WriteBack) writer(name string) NoteWriter {
	for _, nw := range w.writers {
		if nw.Name() == name {
			return nw
		}
	}
	return nil
}

// DeploymentRecorded queues the notes of one deployment event: one per
// change key a writer owns, once per status (repeats are deduplicated).
func (w *WriteBack) DeploymentRecorded(ctx context.Context, d core.Deployment) {
	if d.Status == core.DeployQueued {
		return // nothing touched the environment yet: its start is the news
	}
	queued := false
	body := noteText(d)
	if emergency := w.emergencyChanges(ctx, d); len(emergency) > 0 {
		body = emergencyNoteText(d, emergency, w.policies.Current())
	}
	for _, key := range d.Changes {
		for _, nw := range w.writers {
			if !nw.OwnsChange(key) {
				continue
			}
			err := w.store.EnqueueNote(ctx, core.OutboxNote{
				DedupeKey: d.ID + ":" + d.Status + ":" + key, Connector: nw.Name(), ChangeKey: key, Body: body,
			})
			if err != nil {
				w.log.WarnContext(ctx, "work note not queued", "connector", nw.Name(), "change", key, "error", err.Error())
				continue
			}
			queued = true
			break
		}
	}
	if queued {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// emergencyChanges returns the keys of d's changes that are stored as
// emergency changes (none unless FlagEmergencies was called). A change
// that cannot be read is not flagged; the note is still written.
func (w *WriteBack) emergencyChanges(ctx context.Context, d core.Deployment) []string {
	if w.changes == nil || w.policies == nil {
		return nil
	}
	var out []string
	for _, key := range d.Changes {
		c, err := w.changes.GetChange(ctx, key)
		if err != nil {
			if !core.IsKind(err, core.KindNotFound) {
				w.log.WarnContext(ctx, "work note: change type not read", "change", key, "error", err.Error())
			}
			continue
		}
		if c.Type == core.ChangeEmergency {
			out = append(out, c.Key)
		}
	}
	return out
}

// emergencyNoteText is the work note of an emergency deployment event:
// flagged, naming the emergency changes and when the follow-ups the
// reconciler checks are due.
func emergencyNoteText(d core.Deployment, emergency []string, cp *core.CompiledPolicy) string {
	opts := cp.ReconcileOptions()
	start := d.StartedAt.UTC()
	s := "[EMERGENCY] " + noteText(d)
	s += "\nEmergency change: " + strings.Join(emergency, ", ")
	s += fmt.Sprintf("\nRetrospective review due by %s (%g business hours after the start)",
		cp.AddBusinessHours(start, opts.ReviewWithin).Format(time.RFC3339), opts.ReviewWithin.Hours())
	s += fmt.Sprintf("\nPost-deployment validation due by %s (%s after the start)",
		start.Add(opts.ValidationWithin).Format(time.RFC3339), opts.ValidationWithin)
	return s
}

// noteText is the work note of one deployment event. Each value is one
// line (inert.Line): a pipeline-given actor or run URL must not forge
// lines ("Approved by …") under tollgate's name.
func noteText(d core.Deployment) string {
	verb := map[string]string{core.DeployStarted: "started", core.DeploySucceeded: "succeeded",
		core.DeployFailed: "failed", core.DeployRolledBack: "was rolled back"}[d.Status]
	l := inert.Line
	s := fmt.Sprintf("tollgate: deployment of %s %s to %s %s", l(d.Service), l(d.Version), l(d.Environment), verb)
	if d.URL != "" {
		s += "\nRun: " + l(d.URL)
	}
	if d.DecisionID != "" {
		s += "\nGate decision: " + l(d.DecisionID)
	}
	if d.Actor != "" {
		s += "\nActor: " + l(d.Actor)
	}
	return s
}

// write writes n, unless an earlier attempt (this is not the first: one
// failed or its writer vanished) is found to have written it already.
func (w *WriteBack) write(ctx context.Context, nw NoteWriter, n core.OutboxNote) error {
	if nf, ok := nw.(NoteFinder); ok && n.Attempts > 1 {
		found, err := nf.HasWorkNote(ctx, n.ChangeKey, n.Body)
		if err != nil {
			return fmt.Errorf("look for the note an earlier attempt may have written: %w", err)
		}
		if found {
			w.log.InfoContext(ctx, "work note already written by an earlier attempt", "connector", n.Connector, "change", n.ChangeKey, "attempt", n.Attempts)
			return nil
		}
	}
	return nw.AddWorkNote(ctx, n.ChangeKey, n.Body)
}

// Run writes queued notes until ctx ends.
func (w *WriteBack) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if _, err := w.Flush(ctx); err != nil && ctx.Err() == nil {
			w.log.WarnContext(ctx, "work-note outbox", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.wake:
		}
	}
}

// Flush writes the notes due now; it returns how many were written.
func (w *WriteBack) Flush(ctx context.Context) (int, error) {
	notes, err := w.store.ClaimNotes(ctx, 50, noteLease)
	if err != nil {
		return 0, err
	}
	written := 0
	for _, n := range notes {
		// The claim is renewed before each write: the batch's last notes
		// are written long after it was taken (a minute each at worst),
		// and one whose claim ran out and was taken over is left to the
		// replica that holds it, never written twice.
		if err := w.store.RenewNote(ctx, n, noteLease); err != nil {
			if core.IsKind(err, core.KindConflict) {
				continue
			}
			return written, err
		}
		nw := w.writer(n.Connector)
		var werr error
		if nw == nil {
			werr = fmt.Errorf("connector %q no longer writes back", n.Connector)
		} else {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			werr = w.write(cctx, nw, n)
			cancel()
		}
		if werr == nil {
			written++
			if err := w.store.FinishNote(ctx, n, "", time.Time{}); err != nil && !core.IsKind(err, core.KindConflict) {
				return written, err
			}
			continue
		}
		wait := time.Duration(w.retryMin.Load()) << min(n.Attempts-1, 10)
		if wait > noteRetryMax || wait <= 0 {
			wait = noteRetryMax
		}
		w.log.WarnContext(ctx, "work note not written; will retry", "connector", n.Connector, "change", n.ChangeKey,
			"attempt", n.Attempts, "retry_in", wait, "error", werr.Error())
		if err := w.store.FinishNote(ctx, n, werr.Error(), w.clock.Now().Add(wait)); err != nil && !core.IsKind(err, core.KindConflict) {
			return written, err
		}
	}
	return written, nil
}
