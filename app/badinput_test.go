package app_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestFindingNumbers: a finding number in a path is a positive number of
// at most 32 bits (the findings table's); past that it names no finding
// (404), in the API and the UI alike, never a 500 from the database.
func TestFindingNumbers(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, e2eConfig)
			cm, _ := s.token(core.RoleChangeManager)
			now := time.Now().UTC()
			var rep struct{ ID string }
			if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": now.Add(-time.Hour), "to": now}, &rep); st != http.StatusCreated {
				t.Fatalf("run report: %d", st)
			}
			ui := s.uiClient()
			ui.signIn(cm)
			tests := []struct {
				fid  string
				want int
			}{
				{"1", http.StatusNotFound}, // the report has no findings
				{"2147483647", http.StatusNotFound},
				{"2147483648", http.StatusNotFound},
				{"3000000000", http.StatusNotFound},
				{"99999999999999999999999", http.StatusNotFound},
				{"0", http.StatusBadRequest},
				{"-3000000000", http.StatusBadRequest},
				{"x", http.StatusBadRequest},
			}
			for _, tt := range tests {
				path := "/reconciliation/" + rep.ID + "/findings/" + tt.fid + "/ack"
				if st := s.do("POST", "/api/v1/reports"+path, cm, map[string]any{"comment": "accepted"}, nil); st != tt.want {
					t.Errorf("API finding %s: %d, want %d", tt.fid, st, tt.want)
				}
				if st, _, _ := ui.post("/ui"+path, url.Values{"comment": {"accepted"}}); st != tt.want {
					t.Errorf("UI finding %s: %d, want %d", tt.fid, st, tt.want)
				}
			}
		})
	}
}

// TestUnknownEnvironmentFilters: the observe report and the what-if
// simulation refuse an environment the policies do not know (400 naming
// the field), as the reconciliation report does, instead of answering an
// empty result; a known name or alias filters in the database.
func TestUnknownEnvironmentFilters(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, e2eConfig)
			ci, _ := s.token(core.RoleCI)
			cm, _ := s.token(core.RoleChangeManager)
			start := time.Now().UTC().Add(-time.Second)
			p := core.DefaultPolicy()
			p.Environments["shadow"] = core.EnvironmentPolicy{Aliases: []string{"shade"}, Preset: core.PresetStrict, Mode: core.ModeObserve}
			p.Environments["mirror"] = core.EnvironmentPolicy{Preset: core.PresetStrict, Mode: core.ModeObserve}
			s.putPolicy(adminSecret, p, http.StatusOK)
			for _, env := range []string{"shadow", "mirror"} {
				if a := s.check(ci, "", map[string]any{"service": "payments-api", "environment": env, "version": "1.0.0"}); a.Decision != "allow" {
					t.Fatalf("%s: %s", env, a.Decision)
				}
			}
			period := "&from=" + start.Format(time.RFC3339) + "&to=" + time.Now().UTC().Add(time.Minute).Format(time.RFC3339)
			tests := []struct {
				env   string
				items int // -1: refused
			}{
				{"", 2}, {"shadow", 1}, {"Shade", 1}, {"mirror", 1}, {"production", 0}, {"shadw", -1}, {"*", -1},
			}
			for _, tt := range tests {
				var out struct {
					Items     []map[string]any
					Truncated bool
					Error     struct{ Field string }
				}
				st := s.do("GET", "/api/v1/reports/observe?environment="+url.QueryEscape(tt.env)+period, cm, nil, &out)
				switch {
				case tt.items < 0 && (st != http.StatusBadRequest || out.Error.Field != "environment"):
					t.Errorf("observe %q: %d field %q, want 400 environment", tt.env, st, out.Error.Field)
				case tt.items >= 0 && (st != http.StatusOK || len(out.Items) != tt.items || out.Truncated):
					t.Errorf("observe %q: %d, %d items (truncated %v), want %d", tt.env, st, len(out.Items), out.Truncated, tt.items)
				}
			}
			var out struct{ Error struct{ Field string } }
			body := map[string]any{"policy": p, "from": start, "to": time.Now().UTC().Add(time.Minute), "environment": "shadw"}
			if st := s.do("POST", "/api/v1/policy/simulate", cm, body, &out); st != http.StatusBadRequest || out.Error.Field != "environment" {
				t.Errorf("simulate an unknown environment: %d field %q, want 400 environment", st, out.Error.Field)
			}
		})
	}
}
