package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/anchor"
	"github.com/tollgate-dev/tollgate/store"
)

// anchorProbe records what an anchorer reported.
type anchorProbe struct {
	mu     sync.Mutex
	writes map[string]int // "file ok", "url failed", …
	last   *core.AuditBreak
	logs   bytes.Buffer
}

func (p *anchorProbe) wire(a *Anchorer) *Anchorer {
	p.writes = map[string]int{}
	a.OnWrite = func(target, outcome string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.writes[target+" "+outcome]++
	}
	a.OnCompare = func(brk *core.AuditBreak) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.last = brk
	}
	return a
}

func (p *anchorProbe) count(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.writes[key]
}

func appendAudit(t *testing.T, db *store.DB, n int) {
	t.Helper()
	for i := range n {
		if err := db.Append(context.Background(), core.AuditEntry{Actor: "test", Action: "test.anchor", Subject: fmt.Sprintf("thing:%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// anchorOnce is one tick of the lease holder: compare, then write.
func anchorOnce(t *testing.T, a *Anchorer) {
	t.Helper()
	head, ok := a.Compare(context.Background())
	if !ok {
		t.Fatal("the chain's head could not be read")
	}
	a.Write(context.Background(), head)
}

// TestAnchorerFindsAChainBehindItsAnchor: the anchors written are the
// chain's heads, and every replica — this one after a restart, another
// that only reads the file — reports a chain cut short or rewritten
// below the newest anchor, until the anchors file is replaced.
func TestAnchorerFindsAChainBehindItsAnchor(t *testing.T) {
	for _, dialect := range []string{store.SQLite, store.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			db, _ := openVerdictStore(t, dialect, core.SystemClock)
			ctx := context.Background()
			file := filepath.Join(t.TempDir(), "heads.jsonl")
			var probe anchorProbe
			newAnchorer := func(p *anchorProbe) *Anchorer {
				return p.wire(NewAnchorer(db, AnchorConfig{File: file, Interval: time.Minute}, "replica-a", slog.New(slog.NewTextHandler(&p.logs, nil))))
			}
			a := newAnchorer(&probe)
			anchorOnce(t, a) // the empty chain: seq 0
			appendAudit(t, db, 4)
			anchorOnce(t, a)
			appendAudit(t, db, 2) // grown past the anchor
			anchorOnce(t, a)
			heads, bad, err := anchor.ReadFile(file)
			if err != nil || bad != 0 || len(heads) != 3 || heads[1].Seq != 4 || heads[2].Seq != 6 || probe.count("file ok") != 3 {
				t.Fatalf("anchors %+v bad %d err %v writes %v", heads, bad, err, probe.writes)
			}
			head, _ := db.AuditHead(ctx)
			if heads[2].Hash != head.Hash || !heads[2].At.Equal(head.At) {
				t.Fatalf("anchor %+v, head %+v", heads[2], head)
			}
			if probe.last != nil {
				t.Fatalf("intact chain reported: %+v", probe.last)
			}

			// A restore from a backup taken at row 4: rows 5 and 6 gone.
			if _, err := db.SQLX().ExecContext(ctx, "DELETE FROM audit_log WHERE seq > 4"); err != nil {
				t.Fatal(err)
			}
			var restarted, other anchorProbe
			for _, p := range []*anchorProbe{&restarted, &other} {
				newAnchorer(p).Compare(ctx)
				if p.last == nil || !strings.Contains(p.last.Reason, "the chain ends at row 4, before the anchored row 6") {
					t.Fatalf("restored chain: %+v", p.last)
				}
				if !strings.Contains(p.logs.String(), "AUDIT CHAIN DOES NOT REACH ITS NEWEST ANCHOR") || !strings.Contains(p.logs.String(), "level=ERROR") {
					t.Fatalf("not logged as an error: %s", p.logs.String())
				}
			}
			// The holder goes on writing (the lower head is evidence too),
			// and the chain growing again past row 6 does not heal it.
			anchorOnce(t, a)
			appendAudit(t, db, 3)
			anchorOnce(t, a)
			if probe.last == nil || !strings.Contains(probe.last.Reason, "row 6 has hash") {
				t.Fatalf("restored chain grown past the anchor: %+v", probe.last)
			}
			// The operator, having accounted for the restore, starts a new
			// anchors file.
			if err := os.Rename(file, file+".before-restore"); err != nil {
				t.Fatal(err)
			}
			anchorOnce(t, a)
			anchorOnce(t, a)
			if probe.last != nil {
				t.Fatalf("with a new anchors file: %+v", probe.last)
			}
		})
	}
}

// TestAnchorerFindsARewrittenChain: a chain recomputed from an edited row
// onwards has another hash at the anchored row.
func TestAnchorerFindsARewrittenChain(t *testing.T) {
	db, _ := openVerdictStore(t, store.SQLite, core.SystemClock)
	ctx := context.Background()
	var probe anchorProbe
	a := probe.wire(NewAnchorer(db, AnchorConfig{File: filepath.Join(t.TempDir(), "heads.jsonl"), Interval: time.Minute}, "r", slog.New(slog.DiscardHandler)))
	appendAudit(t, db, 3)
	anchorOnce(t, a)
	rows, _ := db.ListAudit(ctx, core.AuditFilter{})
	prev := rows[0].Hash
	for _, e := range rows[1:] {
		e.Subject += "-forged"
		e.PrevHash, e.Hash = prev, core.HashAuditEntry(prev, e)
		prev = e.Hash
		if _, err := db.SQLX().ExecContext(ctx, "UPDATE audit_log SET subject = ?, prev_hash = ?, hash = ? WHERE seq = ?", e.Subject, e.PrevHash, e.Hash, e.Seq); err != nil {
			t.Fatal(err)
		}
	}
	a.Compare(ctx)
	if probe.last == nil || probe.last.Seq != 3 || !strings.Contains(probe.last.Reason, "as anchored: the chain was rewritten") {
		t.Fatalf("rewritten chain: %+v", probe.last)
	}
}

// TestAnchorWriteFailures: a file that cannot be written and a URL that
// refuses are each logged and counted, the other target still written;
// without a file, what was posted is the anchor compared with.
func TestAnchorWriteFailures(t *testing.T) {
	db, _ := openVerdictStore(t, store.SQLite, core.SystemClock)
	ctx := context.Background()
	var mu sync.Mutex
	var posted []core.AuditHead
	status := http.StatusOK
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h core.AuditHead
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &h)
		mu.Lock()
		defer mu.Unlock()
		posted = append(posted, h)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	appendAudit(t, db, 2)

	var probe anchorProbe
	bad := filepath.Join(t.TempDir(), "missing-dir", "heads.jsonl")
	a := probe.wire(NewAnchorer(db, AnchorConfig{File: bad, URL: srv.URL + "/anchors", Interval: time.Minute, Client: srv.Client()}, "r",
		slog.New(slog.NewTextHandler(&probe.logs, nil))))
	anchorOnce(t, a)
	if probe.count("file failed") != 1 || probe.count("url ok") != 1 || len(posted) != 1 || posted[0].Seq != 2 {
		t.Fatalf("writes %v, posted %+v", probe.writes, posted)
	}
	if !strings.Contains(probe.logs.String(), "audit anchor not written") {
		t.Errorf("the failed write is not logged: %s", probe.logs.String())
	}
	status = http.StatusServiceUnavailable
	anchorOnce(t, a)
	if probe.count("url failed") != 1 {
		t.Fatalf("writes %v", probe.writes)
	}

	// URL only: the posted head is the newest anchor known.
	status = http.StatusOK
	var urlOnly anchorProbe
	u := urlOnly.wire(NewAnchorer(db, AnchorConfig{URL: srv.URL, Interval: time.Minute, Client: srv.Client()}, "r", slog.New(slog.DiscardHandler)))
	anchorOnce(t, u)
	if _, err := db.SQLX().ExecContext(ctx, "DELETE FROM audit_log WHERE seq = 2"); err != nil {
		t.Fatal(err)
	}
	u.Compare(ctx)
	if urlOnly.last == nil || !strings.Contains(urlOnly.last.Reason, "before the anchored row 2") {
		t.Fatalf("URL only, chain cut: %+v", urlOnly.last)
	}
}

// TestAnchorsWrittenOncePerCluster: replicas sharing a database and an
// anchors file take turns by the lease: one writes, the others compare.
func TestAnchorsWrittenOncePerCluster(t *testing.T) {
	for _, dialect := range []string{store.SQLite, store.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			db, _ := openVerdictStore(t, dialect, core.SystemClock)
			appendAudit(t, db, 1)
			file := filepath.Join(t.TempDir(), "heads.jsonl")
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			probes := make([]*anchorProbe, 3)
			for i := range probes {
				probes[i] = &anchorProbe{}
				a := probes[i].wire(NewAnchorer(db, AnchorConfig{File: file, Interval: 20 * time.Millisecond}, fmt.Sprintf("replica-%d", i), slog.New(slog.DiscardHandler)))
				wg.Go(func() { a.Run(ctx) })
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				heads, _, _ := anchor.ReadFile(file)
				if len(heads) > 0 {
					break // repeats of one head are read as one
				}
				if time.Now().After(deadline) {
					t.Fatal("no anchor written")
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			cancel()
			wg.Wait()
			writers := 0
			for _, p := range probes {
				if p.count("file ok") > 0 {
					writers++
				}
				if p.count("file failed") > 0 || p.last != nil {
					t.Errorf("writes %v, break %+v", p.writes, p.last)
				}
			}
			raw, _ := os.ReadFile(file)
			if writers != 1 || strings.Count(string(raw), "\n") < 2 {
				t.Fatalf("%d replicas wrote anchors (want 1); file:\n%s", writers, raw)
			}
		})
	}
}
