package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestBackupWhileWriting: a backup taken while another writer appends to
// the audit chain is one consistent snapshot — its chain verifies, to its
// own head — and the store's chain, grown past it, reaches that head too.
func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(ctx, "sqlite:"+filepath.Join(dir, "live.db"), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		appended atomic.Int64
	)
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			e := core.AuditEntry{Actor: "alice", Action: "test.append", Subject: fmt.Sprintf("thing:%d", i%7), Data: json.RawMessage(`{}`)}
			if err := db.Append(ctx, e); err != nil {
				t.Errorf("append: %v", err)
				return
			}
			appended.Add(1)
		}
	})
	waitFor := func(n int64) {
		for appended.Load() < n && !t.Failed() {
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(50)
	path := filepath.Join(dir, "backup.db")
	head, err := db.Backup(ctx, path)
	waitFor(appended.Load() + 50)
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	cp, err := Open(ctx, "sqlite:"+path, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	for name, s := range map[string]*DB{"the backup": cp, "the store": db} {
		brk, rows, err := s.VerifyAuditTo(ctx, head)
		if err != nil || brk != nil || rows < head.Seq || head.Seq < 50 {
			t.Errorf("%s against the backup's head %d: %+v, %d rows, %v", name, head.Seq, brk, rows, err)
		}
	}
	if _, err := db.Backup(ctx, path); err == nil {
		t.Error("a backup over an existing file")
	}
}
