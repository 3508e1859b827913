package service

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
)

// TestDeploymentWithoutStart: a deployment its source reports with no
// start (old Jenkins plugins send no build.timestamp) starts when its
// delivery was received, or at its reported finish when that came first —
// never when the event is processed, which a backlog, a retry or a replay
// a day later puts past the deployment (and the reconciler would judge it
// against the approvals of that later moment).
func TestDeploymentWithoutStart(t *testing.T) {
	received := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	now := received.Add(26 * time.Hour) // replayed the next day
	in := &Inbox{clock: core.ClockFunc(func() time.Time { return now })}
	c := Connector{Config: connectors.Config{Name: "jenkins", Type: "jenkins"}}
	reported := received.Add(-10 * time.Minute)
	finishedBefore, finishedAfter := received.Add(-time.Minute), received.Add(time.Minute)
	for _, tc := range []struct {
		name              string
		started, finished *time.Time
		received, want    time.Time
	}{
		{name: "no start, no finish", received: received, want: received},
		{name: "finished before it was received", finished: &finishedBefore, received: received, want: finishedBefore},
		{name: "finished after (clocks apart)", finished: &finishedAfter, received: received, want: received},
		{name: "a reported start is kept", started: &reported, finished: &finishedBefore, received: received, want: reported},
		{name: "no receive time", received: time.Time{}, want: now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &core.Deployment{Service: "payments-api", Version: "1.4.2", Environment: "production", FinishedAt: tc.finished}
			if tc.started != nil {
				r.StartedAt = *tc.started
			}
			if err := in.prepareDeployment(context.Background(), c, r, tc.received); err != nil {
				t.Fatal(err)
			}
			if !r.StartedAt.Equal(tc.want) {
				t.Errorf("started_at %s, want %s", r.StartedAt, tc.want)
			}
		})
	}
}
