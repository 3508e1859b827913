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
