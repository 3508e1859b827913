package service

import (
	"cmp"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/anchor"
)

// AnchorReader reads what comparing the chain with an anchor needs: its
// head and one row.
type AnchorReader interface {
	AuditHead(ctx context.Context) (core.AuditHead, error)
	ListAudit(ctx context.Context, f core.AuditFilter) ([]core.AuditEntry, error)
}

// AnchorStore is the anchorer's store: the chain, and the lease that
// makes one replica of a cluster write the anchors.
type AnchorStore interface {
	AnchorReader
	Leaser
}

// AnchorConfig says where anchors go (audit.anchor): a file, an https
// URL, or both, every Interval.
type AnchorConfig struct {
	File     string
	URL      string
	Headers  map[string]string
	Interval time.Duration
	// Client posts to URL (nil: one with a 15 s timeout).
	Client *http.Client
}

// anchorLease makes one replica of a cluster write the anchors: every
// replica writing its own would fill the file with one line per replica
// and interval, and interleave them.
const anchorLease = "audit-anchor"

// anchorPostTimeout bounds one POST of an anchor.
const anchorPostTimeout = 15 * time.Second

// Anchorer keeps the audit chain's head outside the database: every
// Interval the replica holding the "audit-anchor" lease appends it to
// the file and posts it to the URL. Every replica compares the chain with
// the newest anchor it knows — the highest row of the file, read as it
// grows, or of what it wrote itself — at start and every Interval, and
// reports a chain that no longer reaches it. Nothing here touches a gate
// check: a write that fails is logged and counted, and tried again next
// interval.
type Anchorer struct {
	store  AnchorStore
	cfg    AnchorConfig
	holder string
	log    *slog.Logger
	tail   *anchor.Tail // nil without a file
	// OnWrite receives each write's outcome: target "file" or "url",
	// outcome "ok" or "failed".
	OnWrite func(target, outcome string)
	// OnCompare receives each comparison's break (nil: the chain reaches
	// the newest anchor, or there is none yet).
	OnCompare func(brk *core.AuditBreak)

	mu     sync.Mutex
	newest core.AuditHead // the anchor of the highest row known
}

// NewAnchorer wires the anchorer; holder names this replica (its leases).
func NewAnchorer(store AnchorStore, cfg AnchorConfig, holder string, log *slog.Logger) *Anchorer {
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: anchorPostTimeout}
	}
	a := &Anchorer{store: store, cfg: cfg, holder: holder, log: log}
	if cfg.File != "" {
		a.tail = anchor.NewTail(cfg.File)
	}
	return a
}

// Run compares and anchors every Interval until ctx ends, the first time
// at once: a chain behind its anchors is said as the replica starts.
func (a *Anchorer) Run(ctx context.Context) {
	leased{name: anchorLease, holder: a.holder, interval: a.cfg.Interval, store: a.store, log: a.log,
		idle: func(ctx context.Context) { a.Compare(ctx) }}.run(ctx,
		func(ctx context.Context) {
			if head, ok := a.Compare(ctx); ok {
				a.Write(ctx, head)
			}
		},
		func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				a.log.WarnContext(ctx, "audit anchor: the lease cannot be read; no anchor is written meanwhile", "error", err.Error())
			}
		})
}

// Compare reads the anchors appended to the file since the last time,
// then compares the chain with the newest anchor known; it returns the
// chain's head (ok false when the chain could not be read). A chain that
// does not reach the anchor is logged as an error, every time.
func (a *Anchorer) Compare(ctx context.Context) (core.AuditHead, bool) {
	a.readFile(ctx)
	head, err := a.store.AuditHead(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.log.WarnContext(ctx, "audit anchor: cannot read the chain's head", "error", err.Error())
		}
		return head, false
	}
	a.mu.Lock()
	newest := a.newest
	a.mu.Unlock()
	brk, err := CompareWithAnchor(ctx, a.store, newest, head)
	if err != nil {
		if ctx.Err() == nil {
			a.log.WarnContext(ctx, "audit anchor: cannot read the chain", "error", err.Error())
		}
		return head, true
	}
	if brk != nil {
		a.log.ErrorContext(ctx, "AUDIT CHAIN DOES NOT REACH ITS NEWEST ANCHOR: "+brk.Reason+
			"; the decisions and audited actions after the chain's end are gone from the database — find out why before anything else (docs/audit.md#after-a-restore)",
			"anchor_seq", newest.Seq, "anchor_hash", newest.Hash, "chain_head_seq", head.Seq, "chain_head_hash", head.Hash)
	}
	if a.OnCompare != nil {
		a.OnCompare(brk)
	}
	return head, true
}

// readFile takes the anchors appended to the file into the newest known.
func (a *Anchorer) readFile(ctx context.Context) {
	if a.tail == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var fromFile core.AuditHead
	bad, replaced, err := a.tail.Read(func(h core.AuditHead) {
		if h.Seq > fromFile.Seq || fromFile.Hash == "" {
			fromFile = h
		}
	})
	if replaced {
		a.log.InfoContext(ctx, "audit anchor: the anchors file was replaced; comparing with its anchors from now on", "file", a.cfg.File)
		a.newest = core.AuditHead{}
	}
	if fromFile.Hash != "" {
		a.noteLocked(fromFile)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist) && a.newest.Hash == "":
		// none written yet: the first write creates it
	case err != nil:
		a.log.WarnContext(ctx, "audit anchor: cannot read the anchors file; comparing with the newest anchor read before", "file", a.cfg.File, "error", err.Error())
	case bad > 0:
		a.log.WarnContext(ctx, "audit anchor: lines of the anchors file that are not anchors (a write torn by a crash, or edited)", "file", a.cfg.File, "lines", bad)
	}
}

// noteLocked makes h the newest anchor when it anchors a higher row. An
// anchor of a lower row (written after a restore) leaves the newest as it
// is: the chain must still reach that one.
func (a *Anchorer) noteLocked(h core.AuditHead) {
	if h.Seq > a.newest.Seq || a.newest.Hash == "" {
		a.newest = h
	}
}

// Write appends head to the file and posts it to the URL, each failure
// logged and counted apart.
func (a *Anchorer) Write(ctx context.Context, head core.AuditHead) {
	written := false
	outcome := func(target string, err error) {
		result := "ok"
		if err != nil {
			result = "failed"
			a.log.ErrorContext(ctx, "audit anchor not written; tried again next interval", "target", target, "seq", head.Seq, "error", err.Error())
		}
		written = written || err == nil
		if a.OnWrite != nil {
			a.OnWrite(target, result)
		}
	}
	if a.cfg.File != "" {
		outcome("file", anchor.Append(a.cfg.File, head))
	}
	if a.cfg.URL != "" {
		pctx, cancel := context.WithTimeout(ctx, cmp.Or(a.cfg.Client.Timeout, anchorPostTimeout))
		outcome("url", anchor.Post(pctx, a.cfg.Client, a.cfg.URL, a.cfg.Headers, head))
		cancel()
	}
	if written && a.tail == nil {
		// Without a file nothing reads it back: what was posted is the
		// newest anchor this replica knows.
		a.mu.Lock()
		a.noteLocked(head)
		a.mu.Unlock()
	}
}

// CompareWithAnchor holds the chain, whose newest row is head, to one
// anchor without walking it (core.CheckAnchor): it reads the chain's row
// at the anchor's seq. An empty anchor is no anchor.
func CompareWithAnchor(ctx context.Context, r AnchorReader, a, head core.AuditHead) (*core.AuditBreak, error) {
	if a.Hash == "" || a.Seq <= 0 {
		return nil, nil
	}
	var row *core.AuditEntry
	if head.Seq >= a.Seq {
		rows, err := r.ListAudit(ctx, core.AuditFilter{AfterSeq: a.Seq - 1, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(rows) > 0 {
			row = &rows[0]
		}
	}
	return core.CheckAnchor(a, head, row), nil
}
