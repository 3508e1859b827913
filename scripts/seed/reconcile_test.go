package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
)

// TestReconcileProfileCountMatchesReport: the count of unauthorized
// deployments the seed prints equals the findings of a reconciliation
// report over the whole seeded history, exactly (small scale).
func TestReconcileProfileCountMatchesReport(t *testing.T) {
	url := testpg.NewDatabase(t)
	ctx := context.Background()
	sz := sizes{Changes: 600, Incidents: 400, Releases: 500, Deployments: 5000, Services: 60, Teams: 12, Profile: "reconcile", Unauthorized: 0.03}
	var out bytes.Buffer
	if err := run(ctx, url, sz, &out); err != nil {
		t.Fatalf("seed: %v\n%s", err, out.String())
	}
	m := regexp.MustCompile(`unauthorized deployments: (\d+) of 5000`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("seed printed no count:\n%s", out.String())
	}
	want, _ := strconv.Atoi(m[1])
	if want < 100 || want > 200 {
		t.Fatalf("3%% of 5000 should be about 150, got %d", want)
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := store.Open(ctx, url, store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pols := service.NewPolicies(db, log)
	if err := pols.Load(ctx, nil); err != nil {
		t.Fatal(err)
	}
	rec := service.NewReconciler(db, pols, core.SystemClock, log, core.ReconcileOptions{})
	rec.PageSize = 700 // several pages
	now := time.Now().UTC()
	rep, err := rec.Run(ctx, core.ReconcileQuery{From: now.Add(-400 * 24 * time.Hour), To: now.Add(time.Minute)}, "test", "")
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Summary
	if s.DeploymentsChecked != sz.Deployments || s.Findings != want || s.DeploymentsChecked-s.Compliant != want {
		t.Fatalf("report %+v; the seed printed %d unauthorized", s, want)
	}
	if s.ByCode[core.CodeNoChange]+s.ByCode[core.CodeGateBypassed] != want {
		t.Errorf("unexpected codes: %v", s.ByCode)
	}
	// The next report reuses every stored verdict and says the same.
	again, err := rec.Run(ctx, core.ReconcileQuery{From: now.Add(-400 * 24 * time.Hour), To: now.Add(time.Minute)}, "test", "")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := fmt.Sprint(again.Summary), fmt.Sprint(s); a != b {
		t.Fatalf("the report reusing stored verdicts says %s; the first said %s", a, b)
	}
}
