package service

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// reviewProfile maps a ServiceNow record of class u_pir to a review
// sign-off, without the source's sign-off time.
const reviewProfile = `name: sn-review
kind: pir
match:
  connector_type: servicenow
  event_types: [u_pir]
unwrap: result
fields:
  release_id: {path: u_release, required: true}
  status: {path: u_status, required: true}
  signed_off_by: {path: u_signed_off_by}
`

// TestInboxReviewSignOffDatedWhenReceived: a sign-off whose profile maps no
// signed_off_at is dated when its delivery was received, not when it was
// processed. Replayed after other code shipped under the same version (a
// quarantine, a fixed mapping), it signs off the review it was sent for,
// not the one that code required after it.
func TestInboxReviewSignOffDatedWhenReceived(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	clock := &stepClock{t: t0}
	in, fs := newTestInbox(t, clock, InboxConfig{BatchSize: 10, Lease: time.Minute, MaxAttempts: 3})
	if _, err := in.mappings.Put(ctx, "sn-review", []byte(reviewProfile), "token:admin"); err != nil {
		t.Fatal(err)
	}
	rel, err := fs.UpsertRelease(ctx, core.Release{Service: "payments", Version: "2.0.0", Environment: "production", Team: "core"})
	if err != nil {
		t.Fatal(err)
	}
	aaa, bbb := "aaaaaaa1111111111111111111111111111111111", "bbbbbbb2222222222222222222222222222222222"
	if err := fs.RequirePIR(ctx, core.PIR{ReleaseID: rel.ID, Commit: aaa}); err != nil {
		t.Fatal(err)
	}
	clock.add(time.Hour) // the ITSM signs off commit aaa's review
	body := `{"result":{"sys_class_name":"u_pir","u_release":"` + rel.ID + `","u_status":"signed_off","u_signed_off_by":"carol"}}`
	id, _, err := fs.InsertEvent(ctx, core.Event{Connector: "servicenow", Type: "u_pir", DedupeKey: "pir-1", Body: []byte(body), ReceivedAt: clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	clock.add(time.Hour) // before it is processed, commit bbb ships as 2.0.0
	if err := fs.RequirePIR(ctx, core.PIR{ReleaseID: rel.ID, Commit: bbb}); err != nil {
		t.Fatal(err)
	}
	clock.add(time.Hour)
	if n, err := in.ProcessBatch(ctx); err != nil || n != 1 {
		t.Fatalf("batch: %d %v", n, err)
	}
	if e, err := fs.GetEvent(ctx, id); err != nil || e.Status != core.EventProcessed {
		t.Fatalf("the sign-off's event: %+v, %v", e, err)
	}
	p, err := fs.GetPIR(ctx, rel.ID)
	if err != nil || p.Status != core.PIRPending || p.Commit != bbb {
		t.Fatalf("the review commit bbb required: %+v, %v; want still pending", p, err)
	}
}
