package app

import (
	"context"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

// TestOneVerificationAtATime: while a verification of the audit chain
// runs, another asked for on the same replica is refused as rate limited
// (the API's 429 with Retry-After) without walking the chain; once it has
// ended, the next one runs.
func TestOneVerificationAtATime(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	runs := 0
	o := &oneVerification{run: func(context.Context, core.AuditHead) (*core.AuditBreak, int64, error) {
		runs++
		if runs == 1 {
			close(started)
			<-release
		}
		return nil, 42, nil
	}}
	first := make(chan error)
	go func() {
		_, n, err := o.do(context.Background(), core.AuditHead{})
		if err == nil && n != 42 {
			t.Errorf("the first verification verified %d rows", n)
		}
		first <- err
	}()
	<-started
	if _, _, err := o.do(context.Background(), core.AuditHead{}); !core.IsKind(err, core.KindRateLimited) {
		t.Fatalf("a second verification while one runs: %v, want rate limited", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, n, err := o.do(context.Background(), core.AuditHead{}); err != nil || n != 42 || runs != 2 {
		t.Fatalf("after the first ended: %d rows, %v, %d runs", n, err, runs)
	}
}

// TestEveryVerificationIsGuarded: the API verifies through VerifyAuditTo
// (held to ?expect_head=); it, like VerifyAudit, goes through the guard,
// not the store's own method promoted from the embedded DB.
func TestEveryVerificationIsGuarded(t *testing.T) {
	r := onlineReader{verify: &oneVerification{run: func(context.Context, core.AuditHead) (*core.AuditBreak, int64, error) {
		return nil, 1, nil
	}}}
	r.verify.busy.Store(true) // a verification is running
	if _, _, err := r.VerifyAuditTo(context.Background(), core.AuditHead{Seq: 7}); !core.IsKind(err, core.KindRateLimited) {
		t.Fatalf("VerifyAuditTo while one runs: %v, want rate limited", err)
	}
	if _, _, err := r.VerifyAudit(context.Background()); !core.IsKind(err, core.KindRateLimited) {
		t.Fatalf("VerifyAudit while one runs: %v, want rate limited", err)
	}
}
