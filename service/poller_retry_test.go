package service

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
)

// outageStore is a PollStore whose database is away for the first
// failures lease reads.
type outageStore struct {
	mu       sync.Mutex
	failures int
	wm       time.Time
}

func (s *outageStore) AcquireLease(context.Context, string, string, time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		s.failures--
		return false, core.Errorf(core.KindUnavailable, "database unavailable")
	}
	return true, nil
}
func (s *outageStore) ReleaseLease(context.Context, string, string) error { return nil }
func (s *outageStore) Watermark(context.Context, string) (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wm, !s.wm.IsZero(), nil
}
func (s *outageStore) SetWatermark(_ context.Context, _ string, wm time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wm = wm
	return nil
}

type pollCounter struct{ polls chan struct{} }

func (c pollCounter) Poll(context.Context, time.Time, func(connectors.Record) error) error {
	c.polls <- struct{}{}
	return nil
}

// TestPollerRetriesLeaseSoonAfterOutage: a poller with a long interval
// whose lease cannot be read (the database is away) tries again within a
// second, not an interval later, so it polls soon after the database is
// back.
func TestPollerRetriesLeaseSoonAfterOutage(t *testing.T) {
	store := &outageStore{failures: 2}
	src := pollCounter{polls: make(chan struct{}, 10)}
	p := NewPoller("servicenow", src, store, nil, time.Hour, "test", core.SystemClock, slog.New(slog.DiscardHandler), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	start := time.Now()
	select {
	case <-src.polls:
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("polled %v after start, two failed lease reads before", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no poll within 5 s after two failed lease reads (interval 1h)")
	}
}
