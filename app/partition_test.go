package app_test

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/blackhole"
	"github.com/tollgate-dev/tollgate/internal/itsmfake"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
)

// TestPollerLeaseAcrossAPartition: the replica holding a connector's poll
// lease is cut off from the database (no reset, every packet dropped:
// internal/blackhole) without giving the lease up. It polls no more —
// every poll starts by reading the watermark — and keeps the other
// replica from polling only until its lease expires; with the network
// back, it does not poll again while the other holds the lease, so no
// interval is polled twice.
func TestPollerLeaseAcrossAPartition(t *testing.T) {
	fake := itsmfake.New(snUser, snPassword)
	defer fake.Close()
	s := bootITSM(t, "postgres", fake, snReadBackConfig)
	// Replica A's store: the same database behind the proxy.
	u, proxy := testpg.Blackholed(t, s.app.Config.DatabaseURL, url.Values{
		"tcp_user_timeout": {"1000"}, "keepalives_idle": {"1"}, "keepalives_interval": {"1"}, "keepalives_count": {"2"},
	})
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	dbA, err := store.Open(ctx, u, store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer dbA.Close()

	const ttl = time.Second
	at := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	a, b := &countingSource{at: at}, &countingSource{at: at}
	pa := service.NewPoller("servicenow", a, dbA, s.app.Inbox, 50*time.Millisecond, "replica-a", core.SystemClock, log, nil)
	pb := service.NewPoller("servicenow", b, s.app.DB, s.app.Inbox, 50*time.Millisecond, "replica-b", core.SystemClock, log, nil)
	pa.SetLeaseTTL(ttl)
	pb.SetLeaseTTL(ttl)
	ctxA, stopA := context.WithCancel(ctx)
	ctxB, stopB := context.WithCancel(ctx)
	doneA, doneB := make(chan struct{}), make(chan struct{})
	defer func() { stopA(); stopB(); <-doneA; <-doneB }()
	go func() { pa.Run(ctxA); close(doneA) }()
	s.waitFor("replica A polling", func() bool { return a.polls() >= 3 })
	go func() { pb.Run(ctxB); close(doneB) }()
	time.Sleep(300 * time.Millisecond)
	if n := b.polls(); n != 0 {
		t.Fatalf("replica B polled %d times while A held the lease", n)
	}

	if err := proxy.Drop(); errors.Is(err, blackhole.ErrUnsupported) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	cut, polledA := time.Now(), a.polls()
	s.waitFor("replica B polling after A's lease expired", func() bool { return b.polls() > 0 })
	took := time.Since(cut)
	t.Logf("replica B took the lease over %v after A was cut off (lease %v)", took.Round(10*time.Millisecond), ttl)
	if took < ttl/2 {
		t.Errorf("B polled %v after the cut, before A's lease (%v, renewed every 50ms) could have expired", took, ttl)
	}
	// A poll under way at the cut may have reached the source; none after.
	if n := a.polls(); n > polledA+1 {
		t.Errorf("replica A polled %d times while cut off", n-polledA)
	}

	if err := proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	s.waitFor("replica A reaching the database again", func() bool { return dbA.Ping(ctx) == nil })
	polledA = a.polls()
	// A asks for the lease every 50 ms again, and B holds it: no poll.
	time.Sleep(2 * time.Second)
	if n := a.polls(); n != polledA {
		t.Errorf("replica A polled %d times after the network came back, while B held the lease", n-polledA)
	}
	if n := b.polls(); n < 10 {
		t.Errorf("replica B polled only %d times", n)
	}
}
