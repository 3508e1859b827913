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
	o := &oneVerification{run: func(context.Context) (*core.AuditBreak, int64, error) {
		runs++
		if runs == 1 {
			close(started)
			<-release
		}
		return nil, 42, nil
	}}
	first := make(chan error)
	go func() {
		_, n, err := o.do(context.Background())
		if err == nil && n != 42 {
			t.Errorf("the first verification verified %d rows", n)
		}
		first <- err
	}()
	<-started
	if _, _, err := o.do(context.Background()); !core.IsKind(err, core.KindRateLimited) {
		t.Fatalf("a second verification while one runs: %v, want rate limited", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, n, err := o.do(context.Background()); err != nil || n != 42 || runs != 2 {
		t.Fatalf("after the first ended: %d rows, %v, %d runs", n, err, runs)
	}
}
