package app_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// TestTwoReplicasOneDatabase runs two replicas on one PostgreSQL (the
// long-poll across replicas is TestLongPollAcrossReplicas):
//   - the same deliveries, each sent 5 times concurrently across both,
//     are stored once each, and one audit chain verifies on both;
//   - events claimed by a replica that then dies (its claim left in the
//     table) are taken over by the other once the claim's lease expires.
func TestTwoReplicasOneDatabase(t *testing.T) {
	dbURL := testpg.NewDatabase(t)
	cfg := e2eConfig + "  lease: 1s\n"
	a := bootURL(t, dbURL, cfg)
	b := bootURL(t, dbURL, cfg)
	replicas := []*server{a, b}

	const records, copies = 20, 5
	type ack struct {
		EventID   string `json:"event_id"`
		Duplicate bool   `json:"duplicate"`
	}
	var (
		mu   sync.Mutex
		acks = map[string]map[string]int{} // key → event id → 202s
		wg   sync.WaitGroup
	)
	t0 := time.Now().UTC().Add(-time.Hour)
	for i := range records {
		key := fmt.Sprintf("CHG5%03d", i)
		body, _ := json.Marshal(change(key, core.ApprovalApproved, t0))
		acks[key] = map[string]int{}
		for c := range copies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, raw := replicas[(i+c)%2].sendRaw(body)
				var r ack
				if st != http.StatusAccepted || json.Unmarshal([]byte(raw), &r) != nil {
					t.Errorf("%s copy %d: %d %s", key, c, st, raw)
					return
				}
				mu.Lock()
				acks[key][r.EventID]++
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	for key, ids := range acks {
		if len(ids) != 1 {
			t.Errorf("%s: %d different event ids for one delivery sent %d times: %v", key, len(ids), copies, ids)
		}
	}
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(context.Background(), q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("SELECT count(*) FROM inbox_events"); n != records {
		t.Errorf("%d inbox events for %d distinct deliveries", n, records)
	}
	a.waitFor("every change normalized", func() bool {
		return count("SELECT count(*) FROM inbox_events WHERE status = 'processed'") == records
	})
	if n := count("SELECT count(*) FROM changes WHERE key LIKE 'CHG5%'"); n != records {
		t.Errorf("%d change records, want %d", n, records)
	}

	verify := func(s *server) {
		var v struct {
			OK   bool  `json:"ok"`
			Rows int64 `json:"rows"`
		}
		if st := s.do("GET", "/api/v1/audit/verify", adminSecret, nil, &v); st != 200 || !v.OK || v.Rows == 0 {
			t.Errorf("audit verify: %d %+v", st, v)
		}
	}
	verify(a)
	verify(b)

	// A replica dies holding claims: its claimed_until stays in the table.
	// The other takes the events over when the lease runs out.
	for i := range 5 {
		body, _ := json.Marshal(change(fmt.Sprintf("CHG6%03d", i), core.ApprovalApproved, t0))
		a.sendRaw(body)
	}
	// The concurrent sends may have left a dialled connection that never
	// carried a request: graceful shutdown counts it as active for 5 s.
	a.http.CloseIdleConnections()
	b.http.CloseIdleConnections()
	a.stop()
	if _, err := db.Exec(`UPDATE inbox_events SET status = 'pending', processed_at = NULL, claimed_until = now() + interval '1 second'
		WHERE convert_from(body, 'UTF8') LIKE '%CHG6%'`); err != nil {
		t.Fatal(err)
	}
	taken := time.Now()
	b.waitFor("replica B took the dead replica's claims over", func() bool {
		return count("SELECT count(*) FROM inbox_events WHERE status = 'pending'") == 0
	})
	if d := time.Since(taken); d < 900*time.Millisecond {
		t.Errorf("claims taken after %v, before their 1 s lease ran out", d)
	} else {
		t.Logf("claims of the dead replica taken over %v after they were made (lease 1s)", d.Round(10*time.Millisecond))
	}
	verify(b)
}

// Deployments of a new release reported at once by different pipelines
// and normalized by workers of both replicas (a batch of one event each,
// so they run side by side) all become deployments of one release: none
// is quarantined for losing the race to create the release.
func TestConcurrentDeploymentsOfNewReleasesAcrossReplicas(t *testing.T) {
	dbURL := testpg.NewDatabase(t)
	cfg := `
connectors:
  - name: itsm
    type: generic
    webhook_secret: ` + webhookSecret + `
    records: [deployments]
inbox:
  poll_interval: 50ms
  batch_size: 1
`
	a := bootURL(t, dbURL, cfg)
	b := bootURL(t, dbURL, cfg)
	replicas := []*server{a, b}
	const releases, pipelines = 12, 6
	started := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)
	var wg sync.WaitGroup
	for r := range releases {
		for p := range pipelines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf(`{"service":"race-svc","environment":"production","version":"3.%d.0","status":"succeeded",`+
					`"provider":"github","run_id":"run-%d-%d","started_at":%q}`, r, r, p, started)
				if st, raw := replicas[p%2].sendRaw([]byte(body)); st != http.StatusAccepted {
					t.Errorf("release %d pipeline %d: %d %s", r, p, st, raw)
				}
			}()
		}
	}
	wg.Wait()
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string) int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(context.Background(), q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	a.waitFor("every deployment event settled", func() bool {
		return count("SELECT count(*) FROM inbox_events WHERE status = 'pending'") == 0
	})
	var reasons []string
	rows, err := db.Query("SELECT reason FROM inbox_events WHERE status <> 'processed'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		reasons = append(reasons, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(reasons) > 0 {
		t.Fatalf("%d of %d events not processed: %q", len(reasons), releases*pipelines, reasons[0])
	}
	if n := count("SELECT count(*) FROM releases WHERE service = 'race-svc'"); n != releases {
		t.Errorf("%d releases, want %d", n, releases)
	}
	if n := count("SELECT count(*) FROM deployments WHERE service = 'race-svc'"); n != releases*pipelines {
		t.Errorf("%d deployments, want %d", n, releases*pipelines)
	}
}

// TestStoreOnlyReplica: a replica with inbox.normalize: false acknowledges
// and stores deliveries but leaves them pending (its lag gauge shows
// them); a normalizing replica on the same database normalizes them.
func TestStoreOnlyReplica(t *testing.T) {
	dbURL := testpg.NewDatabase(t)
	receiver := bootURL(t, dbURL, e2eConfig+"  normalize: false\n")
	body, _ := json.Marshal(change("CHG6001", core.ApprovalApproved, time.Now().UTC().Add(-time.Hour)))
	if st, raw := receiver.sendRaw(body); st != http.StatusAccepted {
		t.Fatalf("delivery: %d %s", st, raw)
	}
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	status := func() string {
		var s string
		if err := db.QueryRowContext(context.Background(), "SELECT status FROM inbox_events").Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	time.Sleep(1500 * time.Millisecond) // many polls and a lag update later
	if s := status(); s != "pending" {
		t.Fatalf("the store-only replica normalized the delivery: %s", s)
	}
	if _, prom := receiver.get("/metrics", ""); !strings.Contains(prom, "tollgate_inbox_pending_events 1") {
		t.Error("the store-only replica's gauge does not show the pending delivery")
	}
	bootURL(t, dbURL, e2eConfig)
	for deadline := time.Now().Add(10 * time.Second); status() != "processed"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the normalizing replica left the delivery %s", status())
		}
	}
}
