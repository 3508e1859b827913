package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestDiskFullSQLite fills the SQLite database under a running tollgate:
// the store's connection may not grow the file (PRAGMA max_page_count
// lowered to its size, which SQLite answers with SQLITE_FULL exactly as
// for a full disk). Webhooks get 503 "database disk is full" with
// Retry-After, never a 202 for a delivery not stored; gate checks get 503,
// never an answer without its decision stored; given room again, both
// succeed at once, without a restart.
func TestDiskFullSQLite(t *testing.T) {
	s := bootURL(t, "sqlite:"+filepath.Join(t.TempDir(), "tollgate.db"), e2eConfig)
	db := s.app.DB.SQLX() // SQLite: one connection, which holds the pragma
	pragma := func(n int) {
		t.Helper()
		if _, err := db.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", n)); err != nil {
			t.Fatal(err)
		}
	}
	fullDisk(t, s, diskFiller{
		fill: func() { pragma(1) }, // SQLite keeps the larger of 1 and the file's size: no page more
		free: func() { pragma(1 << 30) },
		count: func(q string, arg any) (int, error) {
			var n int
			err := db.Get(&n, q, arg)
			return n, err
		},
		eventsWith: "SELECT count(*) FROM inbox_events WHERE instr(CAST(body AS TEXT), ?) > 0",
		decision:   "SELECT count(*) FROM gate_decisions WHERE id = ?",
	})
}

// diskFiller fills a running tollgate's store and gives it room again.
type diskFiller struct {
	fill, free func()
	// count runs one of the queries below with its one argument.
	count func(q string, arg any) (int, error)
	// eventsWith counts the inbox events whose body holds the argument;
	// decision counts the gate decisions of the id given.
	eventsWith, decision string
}

// fullDisk runs the full disk's checks against s: with the store full,
// webhooks get 503 "database disk is full" with Retry-After, never a 202
// for a delivery not stored, and gate checks get 503, never an answer
// without its decision stored; given room again, both succeed at once,
// without a restart, every delivery acknowledged is normalized and the
// audit chain verifies.
func fullDisk(t *testing.T, s *server, d diskFiller) {
	ci, _ := s.token(core.RoleCI)
	hook := func(n int) (int, string, http.Header) {
		body, _ := json.Marshal(change(fmt.Sprintf("CHG%d", n), core.ApprovalApproved, time.Now()))
		req, _ := http.NewRequest("POST", s.url+"/webhooks/itsm", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Tollgate-Signature", signed(body))
		resp, err := s.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw), resp.Header
	}
	stored := func(key string) bool {
		n, err := d.count(d.eventsWith, `"`+key+`"`)
		if err != nil {
			t.Logf("count %s: %v", key, err)
		}
		return err == nil && n == 1
	}
	gate := map[string]any{"service": "pay", "environment": "staging", "version": "1", "changes": []string{"CHG1"}}
	if st, _, _ := hook(1); st != http.StatusAccepted {
		t.Fatalf("webhook before: %d", st)
	}
	s.waitFor("CHG1 normalized", func() bool { return s.do("GET", "/api/v1/changes/CHG1", adminSecret, nil, nil) == 200 })

	if !stored("CHG1") {
		t.Fatal("CHG1 not found stored: the check is wrong")
	}
	d.fill()
	var acked []string
	full := 0
	for i := 100; i < 1000 && full < 5; i++ {
		st, body, h := hook(i)
		switch st {
		case http.StatusAccepted: // the room left takes a few
			acked = append(acked, fmt.Sprintf("CHG%d", i))
		case http.StatusServiceUnavailable:
			full++
			if !strings.Contains(body, "database disk is full") || h.Get("Retry-After") == "" {
				t.Errorf("webhook on a full disk: %s (Retry-After %q), want \"database disk is full\" with Retry-After", body, h.Get("Retry-After"))
			}
		default:
			t.Fatalf("webhook on a full disk: %d %s", st, body)
		}
	}
	if full == 0 {
		t.Fatalf("900 webhooks accepted on a full database")
	}
	t.Logf("full disk: %d webhooks accepted into the room left, then 503", len(acked))
	for _, k := range acked {
		if !stored(k) {
			t.Errorf("%s answered 202 but not stored", k)
		}
	}
	gateCodes := map[int]int{}
	// A decision row is small: the checks fill what room the pages have
	// left, each answered only with its decision stored, then get 503.
	for i := 0; i < 2000 && gateCodes[http.StatusServiceUnavailable] < 3; i++ {
		var ans struct {
			Decision   string `json:"decision"`
			DecisionID string `json:"decision_id"`
		}
		st := s.do("POST", "/api/v1/gate/check", ci, gate, &ans)
		gateCodes[st]++
		switch st {
		case http.StatusServiceUnavailable:
		case http.StatusOK:
			if n, err := d.count(d.decision, ans.DecisionID); err != nil || n != 1 {
				t.Errorf("gate check %d answered %s on a full disk, its decision stored %d times (%v)", i, ans.Decision, n, err)
			}
		default:
			t.Errorf("gate check %d on a full disk: %d, want 503", i, st)
		}
	}

	t.Logf("gate checks on a full disk: %v by status", gateCodes)
	if gateCodes[http.StatusServiceUnavailable] == 0 {
		t.Errorf("no gate check refused on a full disk")
	}
	d.free()
	if st, body, _ := hook(9); st != http.StatusAccepted {
		t.Fatalf("webhook once there is room: %d %s", st, body)
	}
	if st := s.do("POST", "/api/v1/gate/check", ci, gate, nil); st != http.StatusOK {
		t.Fatalf("gate check once there is room: %d", st)
	}
	for _, k := range append(acked, "CHG9") {
		s.waitFor(k+" normalized", func() bool { return s.do("GET", "/api/v1/changes/"+k, adminSecret, nil, nil) == 200 })
	}
	var v struct {
		OK bool `json:"ok"`
	}
	if st := s.do("GET", "/api/v1/audit/verify", adminSecret, nil, &v); st != 200 || !v.OK {
		t.Errorf("audit verify after the full disk: %d %+v", st, v)
	}
}
