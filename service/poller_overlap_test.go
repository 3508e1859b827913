package service

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/metrics"
)

// lagSource records the time it was polled from; its search lags lag
// behind writes.
type lagSource struct {
	since time.Time
	lag   time.Duration
}

func (s *lagSource) Poll(_ context.Context, since time.Time, _ func(connectors.Record) error) error {
	s.since = since
	return nil
}

func (s *lagSource) PollOverlap() time.Duration { return s.lag }

// TestPollerOverlap: a poll reads again a minute before its watermark, or
// as far as the source says its search lags behind writes (Jira Cloud:
// an issue updated before the newest one read may show only later), so
// an issue found late is still read.
func TestPollerOverlap(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		lag, want time.Duration
	}{{0, time.Minute}, {30 * time.Second, time.Minute}, {15 * time.Minute, 15 * time.Minute}} {
		in, db := newTestInbox(t, core.ClockFunc(time.Now), InboxConfig{})
		wm := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
		if err := db.SetWatermark(ctx, "servicenow", wm); err != nil {
			t.Fatal(err)
		}
		src := &lagSource{lag: tc.lag}
		p := NewPoller("servicenow", src, db, in, time.Minute, "test", core.ClockFunc(time.Now), slog.New(slog.DiscardHandler), metrics.New())
		if _, err := p.PollOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if got := wm.Sub(src.since); got != tc.want {
			t.Errorf("lag %v: polled from %v before the watermark, want %v", tc.lag, got, tc.want)
		}
	}
}
