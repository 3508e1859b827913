package stmtcache

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite"
)

// TestInTxPreparesInTheBackground: inside a transaction a statement not
// prepared yet is not waited for (nil: run the text this once); it is
// prepared on a connection of its own and served prepared afterwards. Get
// prepares once per text.
func TestInTxPreparesInTheBackground(t *testing.T) {
	db, err := sqlx.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // preparing must wait until the transaction ends
	ctx := context.Background()
	c := New(db)
	const q = "SELECT 1"
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := c.InTx(ctx, tx, q); st != nil {
		t.Fatal("a statement not prepared yet was served")
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		ready := c.m[q] != nil
		c.mu.Unlock()
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never prepared")
		}
	}
	tx, err = db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := c.InTx(ctx, tx, q)
	if st == nil {
		t.Fatal("not served prepared")
	}
	var n int
	if err := st.GetContext(ctx, &n); err != nil || n != 1 {
		t.Fatalf("%d %v", n, err)
	}
	_ = tx.Rollback()
	a, _ := c.Get(ctx, "SELECT 2")
	b, _ := c.Get(ctx, "SELECT 2")
	if a == nil || a != b {
		t.Fatal("Get prepared twice")
	}
}
