package app_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// TestDatabaseOutage stops a private PostgreSQL under a running tollgate —
// a fast shutdown, and a crash (immediate shutdown: what the server's WAL
// buffers held unwritten is lost, as the normalizer's commits that do not
// wait for their flush may be) — with webhook and gate-check load across
// it: /readyz turns 503 within a second, webhooks get 503 with Retry-After
// (the senders retry), gate checks get 503 (the CLI's exit 3, never an
// allow); the database back, full service returns within 5 s without a
// restart, every delivery acknowledged before, during and after is kept
// and normalized, and every gate decision answered is in the audit chain.
func TestDatabaseOutage(t *testing.T) {
	for _, tt := range []struct {
		name string
		stop func(*testpg.Private)
	}{
		{"stopped", (*testpg.Private).Stop},
		{"crashed", (*testpg.Private).Crash},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each on a PostgreSQL of its own
			databaseOutage(t, tt.stop)
		})
	}
}

func databaseOutage(t *testing.T, stop func(*testpg.Private)) {
	pg := testpg.NewPrivate(t)
	// An event being normalized when the database went away keeps its
	// claim (recording the retry failed too) until the claim's lease ends:
	// a short lease lets the test see it settled.
	s := bootURL(t, pg.URL, e2eConfig+"  lease: 2s\n")
	ci, _ := s.token(core.RoleCI)
	gate := map[string]any{"service": "pay", "environment": "staging", "version": "1", "changes": []string{"CHG1"}}
	hook := itsmHook(s)
	gateStatus := func() int {
		return s.do("POST", "/api/v1/gate/check", ci, gate, nil)
	}
	status := func(path string) int { return s.do("GET", path, "", nil, nil) }
	if st, _ := hook(1); st != 202 {
		t.Fatalf("webhook before the outage: %d", st)
	}
	if st := gateStatus(); st != 200 {
		t.Fatalf("gate before the outage: %d", st)
	}
	db, err := sql.Open("postgres", pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	load := startDeliveries(hook) // across the outage
	checks := startChecks(s, ci, gate)
	time.Sleep(300 * time.Millisecond)
	var processed []string // outcomes recorded just before the outage
	if err := db.QueryRow(`SELECT coalesce(array_agg(id), '{}') FROM inbox_events WHERE status = 'processed'`).Scan(pq.Array(&processed)); err != nil {
		t.Fatal(err)
	}
	stop(pg)
	d := within(t, "/readyz 503 after the database stopped", time.Second, func() bool { return status("/readyz") == 503 })
	t.Logf("/readyz 503 %v after the stop", d.Round(time.Millisecond))
	st, h := hook(2)
	if st != 503 || h.Get("Retry-After") == "" {
		t.Errorf("webhook during the outage: %d Retry-After %q, want 503 with Retry-After", st, h.Get("Retry-After"))
	}
	if st := gateStatus(); st != 503 {
		t.Errorf("gate check during the outage: %d, want 503", st)
	}
	if st := status("/healthz"); st != 200 {
		t.Errorf("/healthz during the outage: %d (the process is alive)", st)
	}

	pg.Start()
	var undone int // outcomes the outage took back (the crash's lost commits): normalized again below
	if err := db.QueryRow(`SELECT count(*) FROM inbox_events WHERE id = ANY($1) AND status <> 'processed'`, pq.Array(processed)).Scan(&undone); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d of the %d outcomes recorded just before the outage were not there after it", undone, len(processed))
	d = within(t, "full service after the database came back", 5*time.Second, func() bool {
		return status("/readyz") == 200 && gateStatus() == 200
	})
	t.Logf("full service %v after the database answered again", d.Round(time.Millisecond))
	load.finish(t, s, hook, "CHG1")
	checks.finish(t, db)
}

// checks is gate-check load across a fault: one loop checking a release,
// keeping the decision ids answered 200.
type checks struct {
	mu        sync.Mutex
	decisions []string
	codes     map[int]int
	stop      chan struct{}
	done      chan struct{}
}

func startChecks(s *server, token string, req map[string]any) *checks {
	c := &checks{codes: map[int]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			var d struct {
				DecisionID string `json:"decision_id"`
			}
			st := s.do("POST", "/api/v1/gate/check", token, req, &d)
			c.mu.Lock()
			c.codes[st]++
			if st == 200 {
				c.decisions = append(c.decisions, d.DecisionID)
			}
			c.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return c
}

// finish stops the checks and fails t unless they were answered only 200
// or 503 and every decision answered is in db's audit chain, once.
func (c *checks) finish(t *testing.T, db *sql.DB) {
	t.Helper()
	close(c.stop)
	<-c.done
	t.Logf("gate checks under load: %v by status", c.codes)
	if len(c.codes) > 2 || c.codes[200] == 0 || (len(c.codes) == 2 && c.codes[503] == 0) {
		t.Errorf("gate checks under load %v: want only 200 and 503", c.codes)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM audit_log WHERE action = 'gate.decision' AND data::jsonb->>'decision_id' = ANY($1)`,
		pq.Array(c.decisions)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(c.decisions) {
		t.Errorf("%d gate decisions answered, %d of them in the audit chain", len(c.decisions), n)
	}
}

// itsmHook returns a sender of signed generic change records to s's
// /webhooks/itsm: hook(n) posts CHG<n>, approved, and returns the status
// and headers (0 when the request itself failed, which fails the test).
func itsmHook(s *server) func(n int) (int, http.Header) {
	return func(n int) (int, http.Header) {
		body, _ := json.Marshal(change(fmt.Sprintf("CHG%d", n), core.ApprovalApproved, time.Now()))
		req, _ := http.NewRequest("POST", s.url+"/webhooks/itsm", bytes.NewReader(body))
		req.Header.Set("X-Tollgate-Signature", signed(body))
		resp, err := s.http.Do(req)
		if err != nil {
			s.t.Error(err)
			return 0, nil
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
}

// within polls cond every 25 ms and fails t unless it holds within limit;
// it returns how long that took.
func within(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return time.Since(start)
}

// deliveries is webhook load across a fault: three senders, each posting
// the next change record every 10 ms, counting the statuses and keeping
// the numbers answered 202.
type deliveries struct {
	mu    sync.Mutex
	acked []int
	codes map[int]int
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startDeliveries(hook func(n int) (int, http.Header)) *deliveries {
	l := &deliveries{codes: map[int]int{}, stop: make(chan struct{})}
	for w := range 3 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 100 + w; ; i += 3 {
				select {
				case <-l.stop:
					return
				default:
				}
				st, _ := hook(i)
				l.mu.Lock()
				l.codes[st]++
				if st == 202 {
					l.acked = append(l.acked, i)
				}
				l.mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	return l
}

// finish stops the load 200 ms after service returned and checks what a
// fault must leave: only 202 and 503 answered (some 503), a delivery after
// it accepted, every delivery answered 202 (and those named in before)
// normalized, and the audit chain verifying.
func (l *deliveries) finish(t *testing.T, s *server, hook func(n int) (int, http.Header), before ...string) {
	t.Helper()
	time.Sleep(200 * time.Millisecond)
	close(l.stop)
	l.wg.Wait()
	t.Logf("deliveries under load: %v by status", l.codes)
	if l.codes[503] == 0 || len(l.codes) != 2 {
		t.Errorf("statuses under load %v: want only 202 and 503", l.codes)
	}
	if st, _ := hook(3); st != 202 {
		t.Errorf("webhook after the fault: %d", st)
	}
	keys := append(before, "CHG3")
	for _, n := range l.acked {
		keys = append(keys, fmt.Sprintf("CHG%d", n))
	}
	for _, key := range keys {
		k := key
		s.waitFor(k+" normalized", func() bool { return s.do("GET", "/api/v1/changes/"+k, adminSecret, nil, nil) == 200 })
	}
	var v struct {
		OK bool `json:"ok"`
	}
	if st := s.do("GET", "/api/v1/audit/verify", adminSecret, nil, &v); st != 200 || !v.OK {
		t.Errorf("audit verify after the fault: %d %+v", st, v)
	}
}

// TestReadOnlyDatabase turns a private PostgreSQL read-only under a
// running tollgate (default_transaction_read_only for every new session,
// the held sessions cut): webhooks get 503 with Retry-After, never a 500
// and never a 202 for a delivery not stored; a gate check is answered only
// with its decision stored; made writable again, both succeed within 5 s.
func TestReadOnlyDatabase(t *testing.T) {
	pg := testpg.NewPrivate(t)
	s := bootURL(t, pg.URL, e2eConfig)
	ci, _ := s.token(core.RoleCI)
	admin, err := sql.Open("postgres", pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	admin.SetMaxOpenConns(1)
	exec := func(q string) {
		t.Helper()
		if _, err := admin.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	body, _ := json.Marshal(change("CHG7001", core.ApprovalApproved, time.Now()))
	hook := func() (int, http.Header) {
		req, _ := http.NewRequest("POST", s.url+"/webhooks/itsm", bytes.NewReader(body))
		req.Header.Set("X-Tollgate-Signature", signed(body))
		resp, err := s.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	gate := map[string]any{"service": "pay", "environment": "staging", "version": "7", "changes": []string{"CHG7001"}}

	// Read-only for every new session; the sessions tollgate holds are
	// cut, as a failover to a standby would.
	exec("ALTER DATABASE postgres SET default_transaction_read_only = on")
	terminate := func() {
		exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = 'postgres'")
	}
	terminate()
	for i := range 5 { // the first requests may meet a cut connection: 503 too
		if st, h := hook(); st != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Errorf("webhook %d on a read-only database: %d (Retry-After %q), want 503 with Retry-After", i, st, h.Get("Retry-After"))
		}
		// lib/pq opens explicit transactions READ WRITE, which overrides
		// the default, so the gate's group commit may still write: then
		// the decision must be stored before it is answered.
		var ans struct {
			DecisionID string `json:"decision_id"`
		}
		switch st := s.do("POST", "/api/v1/gate/check", ci, gate, &ans); st {
		case http.StatusServiceUnavailable:
		case http.StatusOK:
			var k int
			if err := admin.QueryRow("SELECT count(*) FROM gate_decisions WHERE id = $1", ans.DecisionID).Scan(&k); err != nil || k != 1 {
				t.Errorf("gate check %d answered, but its decision is stored %d times (%v)", i, k, err)
			}
		default:
			t.Errorf("gate check %d on a read-only database: %d, want 503 (or 200 with the decision stored)", i, st)
		}
	}
	var n int
	if err := admin.QueryRow("SELECT count(*) FROM inbox_events").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d events stored while read-only (%v)", n, err)
	}

	exec("ALTER DATABASE postgres RESET default_transaction_read_only")
	terminate()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := hook()
		if st == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook still %d 5 s after the database became writable", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for st := 0; st != http.StatusOK; { // the first may meet the cut committer connection
		if st = s.do("POST", "/api/v1/gate/check", ci, gate, nil); st != http.StatusOK && st != http.StatusServiceUnavailable {
			t.Fatalf("gate check once writable again: %d", st)
		}
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatalf("gate check still %d after the database became writable", st)
		}
	}
}
