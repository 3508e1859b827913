package app_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestHistoryOfDroppedEnvironments (both stores): once the policy drops an
// environment (qa-old) or renames one keeping its old name as an alias
// (emea, now europe), the listings and reads of history still reach their
// records, by any case of the name, in the API and the UI: a rename lists
// the records of both names. A name neither the policy nor the history
// knows is refused naming both; writes and gate checks refuse the dropped
// name as before.
func TestHistoryOfDroppedEnvironments(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			s := boot(t, dialect, e2eConfig)
			ci, _ := s.token(core.RoleCI)
			aud, _ := s.token(core.RoleAuditor)
			cm, _ := s.token(core.RoleChangeManager)
			start := time.Now().UTC().Add(-time.Minute)
			deploy := func(env, version string, want int) errBody {
				t.Helper()
				var e errBody
				body := map[string]any{"service": "payments-api", "environment": env, "version": version, "status": "succeeded",
					"started_at": time.Now().UTC().Add(-time.Second), "provider": "api", "run_id": env + "-" + version}
				if st := s.do("POST", "/api/v1/deployments", ci, body, &e); st != want {
					t.Fatalf("deploy %s to %s: %d %+v, want %d", version, env, st, e, want)
				}
				return e
			}
			p := core.DefaultPolicy()
			p.Environments["emea"] = core.EnvironmentPolicy{Preset: core.PresetOpen}
			p.Environments["qa-old"] = core.EnvironmentPolicy{Preset: core.PresetOpen}
			s.putPolicy(adminSecret, p, http.StatusOK)
			deploy("emea", "1.0", http.StatusCreated)
			deploy("qa-old", "1.0", http.StatusCreated)
			delete(p.Environments, "emea")
			delete(p.Environments, "qa-old")
			p.Environments["europe"] = core.EnvironmentPolicy{Aliases: []string{"emea"}, Preset: core.PresetOpen}
			s.putPolicy(adminSecret, p, http.StatusOK)
			deploy("europe", "2.0", http.StatusCreated)

			for _, tc := range []struct {
				path  string
				items int
			}{
				{"/api/v1/deployments?environment=qa-old", 1},
				{"/api/v1/deployments?environment=QA-Old", 1},
				{"/api/v1/releases?environment=qa-old", 1},
				{"/api/v1/deployments?environment=europe", 2},
				{"/api/v1/releases?environment=EMEA", 2},
				{"/api/v1/deployments?environment=production", 0},
			} {
				var page struct{ Items []map[string]any }
				if st := s.do("GET", tc.path, aud, nil, &page); st != http.StatusOK || len(page.Items) != tc.items {
					t.Errorf("%s: %d, %d items, want %d", tc.path, st, len(page.Items), tc.items)
				}
			}
			var typo errBody
			if st := s.do("GET", "/api/v1/deployments?environment=qa-olde", aud, nil, &typo); st != http.StatusBadRequest ||
				typo.Error.Field != "environment" || !strings.Contains(typo.Error.Message, "europe") || !strings.Contains(typo.Error.Message, "the history also holds qa-old") {
				t.Errorf("a typo: %d %+v, want 400 naming the policy's and the history's environments", st, typo)
			}

			var rep struct{ Summary core.ReconcileSummary }
			body := map[string]any{"from": start, "to": time.Now().UTC().Add(time.Minute), "environment": "qa-old"}
			if st := s.do("POST", "/api/v1/reports/reconciliation", cm, body, &rep); st != http.StatusCreated || rep.Summary.DeploymentsChecked != 1 {
				t.Errorf("a report of qa-old: %d, %d deployments checked, want 201 and 1", st, rep.Summary.DeploymentsChecked)
			}
			period := fmt.Sprintf("&from=%s&to=%s", url.QueryEscape(start.Format(time.RFC3339)), url.QueryEscape(time.Now().UTC().Add(time.Minute).Format(time.RFC3339)))
			if st := s.do("GET", "/api/v1/reports/observe?environment=qa-old"+period, aud, nil, nil); st != http.StatusOK {
				t.Errorf("observe qa-old: %d", st)
			}
			sim := map[string]any{"policy": p, "from": start, "to": time.Now().UTC().Add(time.Minute), "environment": "qa-old"}
			if st := s.do("POST", "/api/v1/policy/simulate", cm, sim, nil); st != http.StatusOK {
				t.Errorf("simulate over qa-old: %d", st)
			}

			// Writes and the gate still refuse it: there it is a typo.
			if e := deploy("qa-old", "1.1", http.StatusBadRequest); e.Error.Field != "environment" {
				t.Errorf("a deployment to qa-old: %+v, want refused on environment", e)
			}
			var e errBody
			if st := s.do("POST", "/api/v1/gate/check", ci, map[string]any{"service": "payments-api", "environment": "qa-old", "version": "1.1"}, &e); st != http.StatusBadRequest || e.Error.Field != "environment" {
				t.Errorf("a gate check for qa-old: %d %+v, want 400 on environment", st, e)
			}

			ui := s.uiClient()
			if st, _ := ui.signIn(aud); st != http.StatusSeeOther {
				t.Fatalf("sign in: %d", st)
			}
			if st, _, page := ui.get("/ui/deployments?environment=qa-old"); st != http.StatusOK || !strings.Contains(page, "qa-old") {
				t.Errorf("UI deployments of qa-old: %d", st)
			}
			if st, _, page := ui.get("/ui/releases?environment=qa-olde"); st != http.StatusBadRequest || !strings.Contains(page, "the history also holds qa-old") {
				t.Errorf("UI releases of a typo: %d, want 400 naming qa-old", st)
			}
		})
	}
}
