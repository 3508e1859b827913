package itsm

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb/sqldbtest"
)

// TestPendingGates: a gate request is stored once per external id, claimed
// by one claimer at a time when due (or, after a fact changed, at once),
// and its outcome saved; answered ones are no longer claimed.
func TestPendingGates(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		now := clock.T
		p := core.PendingGate{
			Connector: "github", Provider: "github", ExternalID: "7100001/production/1",
			Request: core.GateRequest{Service: "payments-api", Environment: "production", Version: "1.0", Commit: "abc", Changes: []string{"CHG1"}},
			Target:  map[string]string{"run_id": "7100001", "note": "bad\x00byte"}, RunURL: "https://github.com/acme/payments/actions/runs/7100001",
			CreatedAt: now, Deadline: now.Add(time.Hour), NextCheckAt: now.Add(10 * time.Minute),
		}
		got, created, err := db.InsertPendingGate(ctx, p)
		if err != nil || !created || got.State != core.PendingWaiting || got.Request.Commit != "abc" || got.Target["run_id"] != "7100001" {
			t.Fatalf("insert: %+v %v %v", got, created, err)
		}
		again, created, err := db.InsertPendingGate(ctx, p)
		if err != nil || created || again.ID != got.ID {
			t.Fatalf("redelivery: %+v %v %v, want the stored request", again, created, err)
		}
		claimed, err := db.ClaimPendingGates(ctx, false, 10, time.Minute)
		if err != nil || len(claimed) != 0 {
			t.Fatalf("not due yet: %v %v", claimed, err)
		}
		claimed, err = db.ClaimPendingGates(ctx, true, 10, time.Minute) // a fact changed
		if err != nil || len(claimed) != 1 || claimed[0].ID != got.ID {
			t.Fatalf("claim all: %v %v", claimed, err)
		}
		if other, _ := db.ClaimPendingGates(ctx, true, 10, time.Minute); len(other) != 0 {
			t.Fatalf("claimed twice: %v", other)
		}
		w := claimed[0]
		w.NextCheckAt = now.Add(time.Hour)
		if err := db.SavePendingGate(ctx, w); err != nil {
			t.Fatal(err)
		}
		if err := db.MarkPendingDue(ctx, []string{w.ID, "unknown"}); err != nil {
			t.Fatal(err)
		}
		if claimed, err = db.ClaimPendingGates(ctx, false, 10, time.Minute); err != nil || len(claimed) != 1 {
			t.Fatalf("marked due: %v %v", claimed, err)
		}
		w = claimed[0]
		w.Reasons = []core.Reason{{Code: core.CodeChangeNotApproved, Message: "awaiting approval"}}
		w.NextCheckAt = now.Add(time.Minute)
		if err := db.SavePendingGate(ctx, w); err != nil {
			t.Fatal(err)
		}
		clock.T = now.Add(2 * time.Minute) // due
		claimed, err = db.ClaimPendingGates(ctx, false, 10, time.Minute)
		if err != nil || len(claimed) != 1 || len(claimed[0].Reasons) != 1 {
			t.Fatalf("due: %v %v", claimed, err)
		}
		at := clock.T
		w = claimed[0]
		w.State, w.Decision, w.DecisionID, w.Comment, w.AnsweredAt = core.PendingAnswered, core.Allow, "dec-1", "allowed", &at
		if err := db.SavePendingGate(ctx, w); err != nil {
			t.Fatal(err)
		}
		clock.T = now.Add(time.Hour)
		if c, _ := db.ClaimPendingGates(ctx, true, 10, time.Minute); len(c) != 0 {
			t.Fatalf("answered request claimed: %v", c)
		}
		open, err := db.ListPendingGates(ctx, []string{core.PendingWaiting, core.PendingAnswering}, 0)
		if err != nil || len(open) != 0 {
			t.Fatalf("open list: %v %v", open, err)
		}
		all, err := db.ListPendingGates(ctx, nil, 0)
		if err != nil || len(all) != 1 || all[0].DecisionID != "dec-1" || all[0].AnsweredAt == nil {
			t.Fatalf("list: %+v %v", all, err)
		}
		byExt, err := db.GateRequestFor(ctx, "github", p.ExternalID)
		if err != nil || byExt.Decision != core.Allow {
			t.Fatalf("by external id: %+v %v", byExt, err)
		}
	})
}

// TestPendingClaimFence: a replica that outran its claim (a batch's last
// request, worked after the lease ended) and found it taken over can
// neither renew it nor save its outcome over the new holder's; the holder
// renews and saves.
func TestPendingClaimFence(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		now := clock.T
		p, _, err := db.InsertPendingGate(ctx, core.PendingGate{Connector: "github", Provider: "github", ExternalID: "7100002/production/1",
			Request:   core.GateRequest{Service: "payments-api", Environment: "production", Version: "1.0"},
			CreatedAt: now, Deadline: now.Add(time.Hour), NextCheckAt: now})
		if err != nil {
			t.Fatal(err)
		}
		a, err := db.ClaimPendingGates(ctx, false, 10, time.Minute)
		if err != nil || len(a) != 1 || a[0].ID != p.ID || !a[0].Claim.Equal(now.Add(time.Minute)) {
			t.Fatalf("claim: %+v %v", a, err)
		}
		if err := db.RenewPendingClaim(ctx, &a[0], time.Minute); err != nil {
			t.Fatalf("renew while held: %v", err)
		}
		clock.T = now.Add(2 * time.Minute) // A stalls past its claim; B takes the request
		b, err := db.ClaimPendingGates(ctx, false, 10, time.Minute)
		if err != nil || len(b) != 1 {
			t.Fatalf("B's claim: %+v %v", b, err)
		}
		stale := a[0]
		if err := db.RenewPendingClaim(ctx, &stale, time.Minute); !core.IsKind(err, core.KindConflict) {
			t.Errorf("A renews a claim B holds: %v, want a conflict", err)
		}
		stale.State, stale.Decision = core.PendingFailed, core.Deny
		if err := db.SavePendingGate(ctx, stale); !core.IsKind(err, core.KindConflict) {
			t.Errorf("A saves over B: %v, want a conflict", err)
		}
		at := clock.T
		won := b[0]
		won.State, won.Decision, won.DecisionID, won.AnsweredAt = core.PendingAnswered, core.Allow, "dec-b", &at
		if err := db.SavePendingGate(ctx, won); err != nil {
			t.Fatalf("B saves: %v", err)
		}
		if got, err := db.GetPendingGate(ctx, p.ID); err != nil || got.State != core.PendingAnswered || got.DecisionID != "dec-b" {
			t.Errorf("stored %+v %v, want B's outcome", got, err)
		}
	})
}

// TestPendingGatesWaitingPages: open requests are counted per provider;
// waiting ones are read a page at a time, and all of them made due in one
// update.
func TestPendingGatesWaitingPages(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		now := clock.T
		insert := func(ext, provider, state string) {
			t.Helper()
			p := core.PendingGate{Connector: provider, Provider: provider, ExternalID: ext, State: state,
				Request:   core.GateRequest{Service: "api", Environment: "production"},
				CreatedAt: now, Deadline: now.Add(time.Hour), NextCheckAt: now.Add(time.Hour)}
			if _, created, err := db.InsertPendingGate(ctx, p); err != nil || !created {
				t.Fatalf("insert %s: %v %v", ext, created, err)
			}
		}
		for i := range 6 {
			insert(fmt.Sprintf("deployment:%d", i), "github", core.PendingWaiting)
		}
		insert("deployment:1", "gitlab", core.PendingWaiting)
		insert("deployment:10", "github", core.PendingAnswering)
		insert("deployment:11", "github", core.PendingAnswered)
		if by, err := db.CountOpenGates(ctx); err != nil || by["github"] != 7 || by["gitlab"] != 1 {
			t.Fatalf("open by provider: %v %v", by, err)
		}
		var seen []string
		for after := ""; ; {
			page, err := db.WaitingGatesAfter(ctx, after, 3)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range page {
				seen = append(seen, p.ID)
			}
			if len(page) < 3 {
				break
			}
			after = page[len(page)-1].ID
		}
		if len(seen) != 7 || !slices.IsSorted(seen) {
			t.Fatalf("waiting pages: %v, want the 7 waiting, by id", seen)
		}
		if err := db.MarkAllPendingDue(ctx); err != nil {
			t.Fatal(err)
		}
		claimed, err := db.ClaimPendingGates(ctx, false, 100, time.Minute)
		if err != nil || len(claimed) != 7 {
			t.Fatalf("due after MarkAllPendingDue: %d %v, want the 7 waiting", len(claimed), err)
		}
	})
}

// TestPendingGatesByRepository: waiting requests are counted per
// connector and repository; a request stored decided (rejected on
// arrival) keeps its repository, decision, reasons and comment.
func TestPendingGatesByRepository(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		now := clock.T
		insert := func(ext, repo, connector, state string) core.PendingGate {
			t.Helper()
			p := core.PendingGate{Connector: connector, Provider: "github", ExternalID: ext, Repository: repo, State: state,
				Request:   core.GateRequest{Service: "api", Environment: "production"},
				CreatedAt: now, Deadline: now.Add(time.Hour), NextCheckAt: now}
			if state == core.PendingAnswering {
				p.Decision, p.Comment = core.Deny, "tollgate: deny\n- TOO_MANY_WAITING"
				p.Reasons = []core.Reason{{Code: core.CodeTooManyWaiting, Result: core.Deny}}
			}
			got, created, err := db.InsertPendingGate(ctx, p)
			if err != nil || !created {
				t.Fatalf("insert %s: %v %v", ext, created, err)
			}
			return got
		}
		for i := range 5 {
			insert(fmt.Sprintf("deployment:%d", i), "acme/matrix", "github", core.PendingWaiting)
		}
		insert("deployment:9", "acme/ledger", "github", core.PendingWaiting)
		insert("deployment:1", "acme/matrix", "github-2", core.PendingWaiting)
		refused := insert("deployment:10", "acme/matrix", "github", core.PendingAnswering)
		if refused.Decision != core.Deny || refused.Repository != "acme/matrix" || !strings.Contains(refused.Comment, "TOO_MANY_WAITING") ||
			len(refused.Reasons) != 1 || refused.Reasons[0].Code != core.CodeTooManyWaiting {
			t.Fatalf("a request stored rejected: %+v", refused)
		}
		if n, err := db.CountWaitingGates(ctx, "github", "acme/matrix"); err != nil || n != 5 {
			t.Fatalf("waiting of acme/matrix: %d %v, want 5 (not the other repository's, connector's or the answering one)", n, err)
		}
		// Claimed, the rejection is delivered like any decided request.
		claimed, err := db.ClaimPendingGates(ctx, false, 100, time.Minute)
		if err != nil || !slices.ContainsFunc(claimed, func(p core.PendingGate) bool { return p.ID == refused.ID && p.Decision == core.Deny }) {
			t.Fatalf("claimed %d: %v, want the rejected one among them, decided", len(claimed), err)
		}
	})
}

// TestPendingGatesListing: the listing pages through every listed request
// (past a thousand), oldest first with ties by id, never an answered one;
// its filters select by state, kind, provider, connector, service and
// environment (any case), and its counts cover every state whatever the
// page.
func TestPendingGatesListing(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *testDB, clock *sqldbtest.Clock) {
		ctx := context.Background()
		now := clock.T
		n := 0
		insert := func(connector, provider, state, service, env string, at time.Time) core.PendingGate {
			t.Helper()
			n++
			p := core.PendingGate{Connector: connector, Provider: provider, ExternalID: fmt.Sprintf("d:%d", n), State: state,
				Request:   core.GateRequest{Service: service, Environment: env, Version: "1"},
				CreatedAt: at, Deadline: at.Add(time.Hour), NextCheckAt: at.Add(time.Hour)}
			got, created, err := db.InsertPendingGate(ctx, p)
			if err != nil || !created {
				t.Fatalf("insert %d: %v %v", n, created, err)
			}
			return got
		}
		const waiting = 1050
		for i := range waiting { // three at each instant: ties ordered by id
			insert("github", "github", core.PendingWaiting, "payments-api", "production", now.Add(time.Duration(i/3)*time.Millisecond))
		}
		late := now.Add(time.Hour)
		failed := insert("github", "github", core.PendingFailed, "ledger", "Production", late)
		unknown := insert("github-2", "github", core.PendingUnknown, "Ledger", "prod", late.Add(time.Second))
		approval := insert("gitlab", "gitlab", core.PendingWaiting, "ledger", "staging", late.Add(2*time.Second))
		insert("github", "github", core.PendingAnswering, "payments-api", "staging", late.Add(3*time.Second))
		insert("github", "github", core.PendingAnswered, "ledger", "production", late.Add(4*time.Second))

		var all []core.PendingGate
		for f := (core.PendingFilter{Limit: 1000}); ; {
			page, err := db.PendingGatesPage(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, page...)
			if len(page) < f.Limit {
				break
			}
			last := page[len(page)-1]
			f.After = core.PendingPosition{Since: last.CreatedAt, ID: last.ID}
		}
		if len(all) != waiting+4 {
			t.Fatalf("listed %d, want %d (every listed request, no answered one)", len(all), waiting+4)
		}
		seen := map[string]bool{}
		for i, p := range all {
			if seen[p.ID] {
				t.Fatalf("%s listed twice", p.ID)
			}
			seen[p.ID] = true
			if i > 0 && (p.CreatedAt.Before(all[i-1].CreatedAt) || p.CreatedAt.Equal(all[i-1].CreatedAt) && p.ID < all[i-1].ID) {
				t.Fatalf("item %d out of order: %v %s after %v %s", i, p.CreatedAt, p.ID, all[i-1].CreatedAt, all[i-1].ID)
			}
		}

		ids := func(ps []core.PendingGate) []string {
			var out []string
			for _, p := range ps {
				out = append(out, p.ID)
			}
			return out
		}
		for _, tc := range []struct {
			name string
			f    core.PendingFilter
			want []string
		}{
			{"failed only", core.PendingFilter{States: []string{core.PendingFailed}}, []string{failed.ID}},
			{"undelivered", core.PendingFilter{States: []string{core.PendingUnknown, core.PendingFailed}}, []string{failed.ID, unknown.ID}},
			{"approvals", core.PendingFilter{Kind: core.PendingKindApproval}, []string{approval.ID}},
			{"provider in any case", core.PendingFilter{Provider: "GitLab"}, []string{approval.ID}},
			{"connector", core.PendingFilter{Connector: "github-2"}, []string{unknown.ID}},
			{"service in any case, waiting", core.PendingFilter{Service: "LEDGER", States: []string{core.PendingWaiting}}, []string{approval.ID}},
			{"environment names", core.PendingFilter{Service: "ledger", Environments: []string{"production", "prod"}}, []string{failed.ID, unknown.ID}},
			{"protection rules after a check", core.PendingFilter{Kind: core.PendingKindProtectionRule,
				After: core.PendingPosition{Since: late, Check: true, ID: "7"}}, []string{unknown.ID, all[len(all)-1].ID}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tc.f.Limit = 100
				got, err := db.PendingGatesPage(ctx, tc.f)
				if err != nil || !slices.Equal(ids(got), tc.want) {
					t.Fatalf("%v %v, want %v", ids(got), err, tc.want)
				}
			})
		}

		counts, err := db.CountPendingGates(ctx, core.PendingFilter{Service: "ledger", States: []string{core.PendingWaiting}, Limit: 1})
		want := map[string]int{core.PendingWaiting: 1, core.PendingAnswering: 0, core.PendingFailed: 1, core.PendingUnknown: 1}
		if err != nil || !maps.Equal(counts, want) {
			t.Fatalf("counts of ledger: %v %v, want %v whatever the state asked", counts, err, want)
		}
		for _, f := range []core.PendingFilter{
			{States: []string{core.PendingAnswered}, Limit: 10}, {Kind: core.PendingKindCheck, Limit: 10}, {Limit: 0},
		} {
			if _, err := db.PendingGatesPage(ctx, f); !core.IsKind(err, core.KindInvalid) {
				t.Errorf("%+v: %v, want invalid", f, err)
			}
		}
	})
}
