package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

type pendingPage struct {
	Items []struct {
		Kind, ID, Provider, Connector, State, Service, Environment string
	} `json:"items"`
	Next   string         `json:"next"`
	Counts map[string]int `json:"counts"`
	Error  struct {
		Code, Message, Field string
	} `json:"error"`
}

// names are the page's items, a check as "check", a stored request by its
// version's name (see pendingRows).
func (p pendingPage) names(byID map[string]string) []string {
	var out []string
	for _, it := range p.Items {
		if it.Kind == core.PendingKindCheck {
			out = append(out, "check")
		} else {
			out = append(out, byID[it.ID])
		}
	}
	return out
}

// pendingRows stores CI gate requests in every listed state (and an
// answered one, never listed), oldest first, and returns their names by
// id. None is due for an hour and each links a change nothing updates, so
// the worker leaves them be (a request linking none is due whenever any
// change is updated: tollgate may have opened it).
func pendingRows(t *testing.T, s *server) map[string]string {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	byID := map[string]string{}
	rows := []struct{ name, connector, provider, state, service, env string }{
		{"w0", "github", "github", core.PendingWaiting, "payments-api", "production"},
		{"w1", "github", "github", core.PendingWaiting, "payments-api", "production"},
		{"w2", "github", "github", core.PendingWaiting, "payments-api", "production"},
		{"w3", "github", "github", core.PendingWaiting, "payments-api", "production"},
		{"w4", "github", "github", core.PendingWaiting, "payments-api", "production"},
		{"w5", "github", "github", core.PendingWaiting, "payments-api", "production"},
		{"gl", "gitlab", "gitlab", core.PendingWaiting, "ledger", "staging"},
		{"failed", "github", "github", core.PendingFailed, "ledger", "Production"},
		{"unknown", "github-short", "github", core.PendingUnknown, "ledger", "prod"},
		{"answering", "github", "github", core.PendingAnswering, "payments-api", "production"},
		{"answered", "github", "github", core.PendingAnswered, "ledger", "production"},
	}
	for i, r := range rows {
		at := now.Add(time.Duration(i-60) * time.Minute)
		p, created, err := s.app.DB.InsertPendingGate(ctx, core.PendingGate{Connector: r.connector, Provider: r.provider,
			ExternalID: "listing:" + r.name, State: r.state, RunURL: "https://ci.example/runs/" + r.name,
			Request:   core.GateRequest{Service: r.service, Environment: r.env, Version: r.name, Changes: []string{"CHG0098999"}},
			CreatedAt: at, Deadline: now.Add(time.Hour), NextCheckAt: now.Add(time.Hour)})
		if err != nil || !created {
			t.Fatalf("store %s: %v %v", r.name, created, err)
		}
		byID[p.ID] = r.name
	}
	return byID
}

// TestPendingListing (both stores): GET /api/v1/gate/pending pages through
// the stored requests and this replica's long-polled checks in one order,
// whatever the page size, each once; its filters select by state (the
// undelivered answers alone), kind, provider, connector, service and
// environment (a policy alias matching the names CIs send); counts cover
// every page; a parameter it cannot read is refused (400) naming it.
func TestPendingListing(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			f := newFakeCI(t)
			s := boot(t, dialect, ciGatesConfig(f))
			aud, _ := s.token(core.RoleAuditor)
			ci, _ := s.token(core.RoleCI)
			// The worker's first pass takes every waiting request; after it,
			// only those due (none here for an hour).
			s.waitFor("the CI gate worker's first pass", func() bool {
				return strings.Contains(s.metricsText(), `tollgate_gate_pending{provider="github"}`)
			})
			byID := pendingRows(t, s)
			s.snSettled(snChange("CHG0098001", "payments-api", "requested", time.Now().UTC().Add(-time.Minute)))
			checked := make(chan struct{})
			go func() {
				defer close(checked)
				s.do("POST", "/api/v1/gate/check?wait=30s", ci, gateReq("payments-api", "9.9.9", "CHG0098001"), nil)
			}()
			get := func(query string) (int, pendingPage) {
				var p pendingPage
				st := s.do("GET", "/api/v1/gate/pending"+query, aud, nil, &p)
				return st, p
			}
			s.waitFor("the long-polled check listed", func() bool {
				_, p := get("?kind=check")
				return len(p.Items) == 1
			})
			all := []string{"w0", "w1", "w2", "w3", "w4", "w5", "gl", "failed", "unknown", "answering", "check"}

			st, first := get("")
			wantCounts := map[string]int{"pending": 8, "answering": 1, "failed": 1, "unknown": 1}
			if st != http.StatusOK || !slices.Equal(first.names(byID), all) || first.Next != "" || !mapsEqual(first.Counts, wantCounts) {
				t.Fatalf("all: %d %v next %q counts %v, want %v counts %v", st, first.names(byID), first.Next, first.Counts, all, wantCounts)
			}
			for _, size := range []int{1, 4, 10} {
				var got []string
				for after, pages := "", 0; ; pages++ {
					q := url.Values{"limit": {fmt.Sprint(size)}}
					if after != "" {
						q.Set("after", after)
					}
					st, p := get("?" + q.Encode())
					if st != http.StatusOK || len(p.Items) > size || pages > len(all) {
						t.Fatalf("limit %d page %d: %d %v", size, pages, st, p.Error)
					}
					got = append(got, p.names(byID)...)
					if after = p.Next; after == "" {
						break
					}
				}
				if !slices.Equal(got, all) {
					t.Errorf("limit %d: pages gave %v, want %v", size, got, all)
				}
			}

			for _, tc := range []struct{ query, want string }{
				{"?state=failed,unknown", "failed unknown"},
				{"?state=unknown&state=failed", "failed unknown"},
				{"?state=failed&limit=1", "failed"},
				{"?state=waiting&kind=check", "check"},
				{"?state=pending&service=LEDGER", "gl"},
				{"?kind=approval", "gl"},
				{"?kind=protection_rule&state=answering", "answering"},
				{"?provider=GitLab", "gl"},
				{"?connector=github-short", "unknown"},
				{"?service=ledger&environment=prod", "failed unknown"},
				{"?environment=Staging", "gl"},
				{"?environment=production&service=payments-api&limit=3", "w0 w1 w2"},
			} {
				st, p := get(tc.query)
				if got := strings.Join(p.names(byID), " "); st != http.StatusOK || got != tc.want {
					t.Errorf("%s: %d %q (%s), want %q", tc.query, st, got, p.Error.Message, tc.want)
				}
			}
			if _, p := get("?state=failed&service=ledger"); !mapsEqual(p.Counts, map[string]int{"pending": 1, "answering": 0, "failed": 1, "unknown": 1}) {
				t.Errorf("counts of ledger asked for failed: %v, want every state's", p.Counts)
			}

			for _, tc := range []struct{ query, field, msg string }{
				{"?limit=0", "limit", "from 1 to 1000"},
				{"?limit=1001", "limit", "from 1 to 1000"},
				{"?limit=ten", "limit", "from 1 to 1000"},
				{"?state=answered", "state", "answered requests are not listed"},
				{"?state=", "state", `"" is not one of`},
				{"?state=failed,bogus", "state", `"bogus" is not one of`},
				{"?kind=rule", "kind", "protection_rule, approval, check"},
				{"?after=01a2378a-0e0c-7a40-9c2e-3b8a9d3f1c21", "after", "not a cursor of this listing"},
				{"?service=pay%07", "service", "control characters"},
			} {
				st, p := get(tc.query)
				if st != http.StatusBadRequest || p.Error.Field != tc.field || !strings.Contains(p.Error.Message, tc.msg) {
					t.Errorf("%s: %d %+v, want 400 on %s saying %q", tc.query, st, p.Error, tc.field, tc.msg)
				}
			}

			s.snSettled(snChange("CHG0098001", "payments-api", "approved", time.Now().UTC().Add(-time.Second)))
			select {
			case <-checked:
			case <-time.After(20 * time.Second):
				t.Fatal("the long-polled check was not answered after the approval")
			}
		})
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
