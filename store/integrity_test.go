package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// Bytes PostgreSQL refuses in text (NUL, invalid UTF-8) never reach a text
// column: identifiers are refused or not found, free text is made valid.
// Before, each of these failed on PostgreSQL with `pq: invalid byte
// sequence for encoding "UTF8"` (a 500, or an event that could be neither
// stored nor quarantined).
func TestBadBytesNeverReachTheDatabase(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		for _, key := range []string{"PZQ\x0000040", "\xff\xfe", "CHG\xc3"} {
			_, err := db.UpsertChange(ctx, core.Change{Source: "servicenow", Key: key, Approval: core.ApprovalApproved})
			if !core.IsKind(err, core.KindInvalid) {
				t.Errorf("change key %q: %v, want invalid", key, err)
			}
			if _, err := db.UpsertIncident(ctx, core.Incident{Source: "servicenow", Key: key, State: core.IncidentOpen}); !core.IsKind(err, core.KindInvalid) {
				t.Errorf("incident key %q: %v, want invalid", key, err)
			}
			if _, err := db.GetChange(ctx, key); !core.IsKind(err, core.KindNotFound) {
				t.Errorf("get change %q: %v, want not found", key, err)
			}
			if _, err := db.ChangeHistory(ctx, key); !core.IsKind(err, core.KindNotFound) {
				t.Errorf("change history %q: %v, want not found", key, err)
			}
			if _, err := db.GetIncident(ctx, key); !core.IsKind(err, core.KindNotFound) {
				t.Errorf("get incident %q: %v, want not found", key, err)
			}
			if _, err := db.IncidentHistory(ctx, key); !core.IsKind(err, core.KindNotFound) {
				t.Errorf("incident history %q: %v, want not found", key, err)
			}
			if _, err := db.GetEvent(ctx, key); !core.IsKind(err, core.KindNotFound) {
				t.Errorf("get event %q: %v, want not found", key, err)
			}
		}

		// Free text inside a record is made valid, on both stores alike.
		c := core.Change{Source: "servicenow", Key: "CHG0000001", Title: "bad\x00title\xff", Approval: core.ApprovalApproved,
			Services: []string{"pay\x00ments"}, Approvals: []core.Approval{{Approver: "ana\xfe"}}}
		if _, err := db.UpsertChange(ctx, c); err != nil {
			t.Fatalf("change with bad text: %v", err)
		}
		got, err := db.GetChange(ctx, "CHG0000001")
		if err != nil || got.Title != "bad\uFFFDtitle\uFFFD" || got.Services[0] != "pay\uFFFDments" || got.Approvals[0].Approver != "ana\uFFFD" {
			t.Fatalf("read back %+v %v", got, err)
		}
		if _, err := db.UpsertIncident(ctx, core.Incident{Source: "servicenow", Key: "INC1", Title: "\x00", State: core.IncidentOpen, Services: []string{"a\xff"}}); err != nil {
			t.Fatalf("incident with bad text: %v", err)
		}

		// Inbox: identifiers refused, headers and outcomes made valid.
		for _, e := range []core.Event{
			{Connector: "github", Type: "push", DedupeKey: "d\xff"},
			{Connector: "github", Type: "pu\x00sh", DedupeKey: "d1"},
			{Connector: "git\xffhub", Type: "push", DedupeKey: "d1"},
		} {
			if _, _, err := db.InsertEvent(ctx, e); !core.IsKind(err, core.KindInvalid) {
				t.Errorf("insert %q/%q/%q: %v, want invalid", e.Connector, e.Type, e.DedupeKey, err)
			}
		}
		body := []byte("{\"number\":\"\xff\"}\x00")
		id, _, err := db.InsertEvent(ctx, core.Event{Connector: "servicenow", Type: "change_request", DedupeKey: "sha256:x",
			Headers: map[string]string{"User-Agent": "x\xff"}, Body: body})
		if err != nil {
			t.Fatalf("insert with odd header and body: %v", err)
		}
		if _, err := db.ClaimEvents(ctx, 10, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := db.FinishEvent(ctx, id, core.EventQuarantined, "key \"PZQ\x0000040\" \xff", "change:PZQ\x00"); err != nil {
			t.Fatalf("finish with bad reason: %v", err)
		}
		e, err := db.GetEvent(ctx, id)
		if err != nil || string(e.Body) != string(body) || e.Headers["User-Agent"] != "x\uFFFD" ||
			e.Reason != "key \"PZQ\uFFFD00040\" \uFFFD" || e.Record != "change:PZQ\uFFFD" {
			t.Fatalf("read back %+v %v", e, err)
		}
		if _, err := db.ListEvents(ctx, core.EventFilter{Connector: "\x00"}); !core.IsKind(err, core.KindInvalid) {
			t.Fatalf("list with bad connector: %v", err)
		}
		if _, err := db.ReplayQuarantined(ctx, "\xff", "admin"); !core.IsKind(err, core.KindInvalid) {
			t.Fatalf("replay with bad connector: %v", err)
		}
	})
}

// A record belongs to the source that created it: another source's write
// is refused (KindForbidden) and changes nothing, whatever its stamp.
// Before, a newer write from any connector replaced the record and its
// source.
func TestRecordBelongsToItsSource(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		at := clock.t.Add(-time.Hour)
		if _, err := db.UpsertChange(ctx, core.Change{Source: "servicenow", Key: "CHG1", Approval: core.ApprovalRequested, SourceUpdatedAt: at}); err != nil {
			t.Fatal(err)
		}
		_, err := db.UpsertChange(ctx, core.Change{Source: "pipelines", Key: "CHG1", Approval: core.ApprovalApproved, SourceUpdatedAt: at.Add(time.Minute)})
		if !core.IsKind(err, core.KindForbidden) || !strings.Contains(err.Error(), `belongs to source "servicenow"`) {
			t.Fatalf("foreign write: %v, want forbidden naming the owner", err)
		}
		got, err := db.GetChange(ctx, "CHG1")
		if err != nil || got.Source != "servicenow" || got.Approval != core.ApprovalRequested {
			t.Fatalf("after foreign write: %+v %v", got, err)
		}
		if h, err := db.ChangeHistory(ctx, "CHG1"); err != nil || len(h) != 1 {
			t.Fatalf("history: %d versions, %v", len(h), err)
		}
		// The owner still updates it.
		if res, err := db.UpsertChange(ctx, core.Change{Source: "servicenow", Key: "CHG1", Approval: core.ApprovalApproved, SourceUpdatedAt: at.Add(time.Minute)}); err != nil || res != core.UpsertUpdated {
			t.Fatalf("owner update: %v %v", res, err)
		}

		if _, err := db.UpsertIncident(ctx, core.Incident{Source: "jira", Key: "INC1", State: core.IncidentOpen, Major: true, SourceUpdatedAt: at}); err != nil {
			t.Fatal(err)
		}
		_, err = db.UpsertIncident(ctx, core.Incident{Source: "pipelines", Key: "INC1", State: core.IncidentResolved, SourceUpdatedAt: at.Add(time.Minute)})
		if !core.IsKind(err, core.KindForbidden) {
			t.Fatalf("foreign incident write: %v, want forbidden", err)
		}
		if i, err := db.GetIncident(ctx, "INC1"); err != nil || i.Source != "jira" || !i.Active() {
			t.Fatalf("after foreign write: %+v %v", i, err)
		}

		// Two sources racing to create one key: one owns it, the other is
		// refused (the database decides, not a read before the write).
		errs := make(chan error, 2)
		for _, src := range []string{"servicenow", "pipelines"} {
			go func() {
				_, err := db.UpsertChange(ctx, core.Change{Source: src, Key: "CHG-RACE", Approval: core.ApprovalApproved, SourceUpdatedAt: at})
				errs <- err
			}()
		}
		var ok, refused int
		for range 2 {
			switch err := <-errs; {
			case err == nil:
				ok++
			case core.IsKind(err, core.KindForbidden):
				refused++
			default:
				t.Fatalf("racing first writes: %v", err)
			}
		}
		if ok != 1 || refused != 1 {
			t.Fatalf("racing first writes: %d stored, %d refused; want one each", ok, refused)
		}
	})
}

// A stored delivery wakes the normalizers of every replica: in-process on
// SQLite, through LISTEN/NOTIFY on PostgreSQL (a second store on the same
// database stands for another replica); a duplicate wakes nobody.
func TestInsertEventWakesEveryReplica(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		other := db
		if db.Dialect() == Postgres {
			other = openReplica(t, db)
			stop := listen(t, other)
			defer stop()
		}
		wake, cancel := other.SubscribeInbox()
		defer cancel()
		id, _, err := db.InsertEvent(ctx, newEvent("github", "w1", clock.t))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-wake:
			if got != id {
				t.Fatalf("woken with %q, want the event id %q", got, id)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no wake-up within 5s")
		}
		if _, dup, err := db.InsertEvent(ctx, newEvent("github", "w1", clock.t)); err != nil || !dup {
			t.Fatalf("duplicate: %v %v", dup, err)
		}
		select {
		case got := <-wake:
			t.Fatalf("a duplicate woke the normalizer (%q)", got)
		case <-time.After(200 * time.Millisecond):
		}
	})
}

// A subscriber woken by a change sees the change: the wake-up comes after
// the commit and after the fact cache dropped the old state. Before, on
// SQLite the broadcast went out inside the transaction, so a waiting gate
// check re-read the old (cached) change, went back to waiting and was
// never woken again.
func TestWokenSubscriberSeesTheChange(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		if db.Dialect() == Postgres {
			stop := listen(t, db)
			defer stop()
		}
		c := core.Change{Source: "servicenow", Key: "CHG7", Approval: core.ApprovalRequested, SourceUpdatedAt: clock.t.Add(-time.Hour)}
		if _, err := db.UpsertChange(ctx, c); err != nil {
			t.Fatal(err)
		}
		q := core.FactsQuery{Service: "svc", Environment: "production", Version: "1", ChangeKeys: []string{"CHG7"}}
		if f, err := db.GateFacts(ctx, q); err != nil || f.Changes["CHG7"].Approval != core.ApprovalRequested {
			t.Fatalf("facts before: %+v %v", f.Changes, err)
		}
		wake, cancel := db.Subscribe()
		defer cancel()
		// As a waiting check does: re-read on every wake-up (the first
		// write's notification may still be on its way), until approved.
		seen := make(chan struct{})
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case topic := <-wake:
					if topic != "change:CHG7" {
						continue
					}
					f, err := db.GateFacts(ctx, q)
					if err != nil {
						t.Error(err)
						return
					}
					if f.Changes["CHG7"].Approval == core.ApprovalApproved {
						close(seen)
						return
					}
				}
			}
		}()
		c.Approval, c.SourceUpdatedAt = core.ApprovalApproved, clock.t.Add(-time.Minute)
		if _, err := db.UpsertChange(ctx, c); err != nil {
			t.Fatal(err)
		}
		select {
		case <-seen:
		case <-time.After(5 * time.Second):
			t.Fatal("no wake-up read the approval within 5s")
		}
	})
}
