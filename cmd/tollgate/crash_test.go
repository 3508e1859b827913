package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/testpg"
)

const (
	crashAdmin  = "crash-admin-token-0123456789"
	crashSecret = "crash-webhook-secret-0123456789"
)

// TestCrashKill9 runs the built binary on PostgreSQL under webhook and
// gate-check load and kills it with SIGKILL at random moments (3 times;
// TOLLGATE_CRASH_KILLS for more: scripts/crash.sh). After the last
// restart: every delivery answered 202 is stored exactly once, the
// normalizer finishes them all (changes, and deployments of those changes
// stored with them in its batches: each acknowledged deployment recorded
// once, with its release), every answered gate decision is in the audit
// chain, and `tollgate audit verify` passes.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	kills := 3
	if n, err := strconv.Atoi(os.Getenv("TOLLGATE_CRASH_KILLS")); err == nil && n > 0 {
		kills = n
	}
	dbURL := testpg.NewMigratedDatabase(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "tollgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "tollgate.yaml")
	if err := os.WriteFile(cfg, []byte(`
connectors:
  - {name: itsm, type: generic, webhook_secret: `+crashSecret+`, records: [changes, deployments]}
inbox: {lease: 2s, poll_interval: 50ms}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	base := "http://" + addr
	env := append(os.Environ(), "TOLLGATE_CONFIG="+cfg, "TOLLGATE_DATABASE_URL="+dbURL, "TOLLGATE_ADDR="+addr,
		"TOLLGATE_ADMIN_TOKEN="+crashAdmin, "TOLLGATE_LOG_LEVEL=warn")
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	client := &http.Client{Timeout: 5 * time.Second}
	var cur *exec.Cmd
	start := func() {
		t.Helper()
		cur = exec.Command(bin, "serve")
		cur.Env, cur.Stdout, cur.Stderr = env, logf, logf
		if err := cur.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			if resp, err := client.Get(base + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("server not ready within 60 s")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	start()
	t.Cleanup(func() { _ = cur.Process.Kill(); _ = cur.Wait() })

	post := func(path, token string, body []byte, hdr map[string]string) (int, []byte) {
		req, _ := http.NewRequest("POST", base+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.Bytes()
	}
	st, raw := post("/api/v1/tokens", crashAdmin, []byte(`{"name":"pipeline","role":"ci"}`), nil)
	var tok struct{ Token string }
	if st != 201 || json.Unmarshal(raw, &tok) != nil {
		t.Fatalf("create token: %d %s", st, raw)
	}

	var (
		mu        sync.Mutex
		events    []string            // event ids answered 202
		runs      = map[string]bool{} // run ids of the deployments among them
		decisions []string            // decision ids answered 200
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := []byte(fmt.Sprintf(`{"kind":"change","key":"CHG-%d-%d","state":"scheduled","approval":"approved","source_updated_at":"2026-11-27T10:00:00Z"}`, w, i))
				run := ""
				if w == 2 && i%2 == 1 { // deployments of the change just sent: stored in the same batches
					run = fmt.Sprintf("run-%d", i)
					body = []byte(fmt.Sprintf(`{"kind":"deployment","service":"svc-%d","environment":"staging","version":"2.0.%d","status":"succeeded",`+
						`"started_at":"2026-11-27T10:00:00Z","finished_at":"2026-11-27T10:05:00Z","provider":"crash","run_id":%q,"changes":["CHG-2-%d"]}`,
						i%7, i, run, i-1))
				}
				mac := hmac.New(sha256.New, []byte(crashSecret))
				mac.Write(body)
				st, raw := post("/webhooks/itsm", "", body, map[string]string{"X-Tollgate-Signature": "sha256=" + hex.EncodeToString(mac.Sum(nil))})
				var ack struct {
					EventID string `json:"event_id"`
				}
				if st == 202 && json.Unmarshal(raw, &ack) == nil {
					mu.Lock()
					events = append(events, ack.EventID)
					if run != "" {
						runs[run] = true
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			st, raw := post("/api/v1/gate/check", tok.Token, []byte(fmt.Sprintf(`{"service":"svc-%d","environment":"staging","version":"1.0.%d","changes":["CHG-0-%d"]}`, i%7, i, i)), nil)
			var d struct {
				DecisionID string `json:"decision_id"`
			}
			if st == 200 && json.Unmarshal(raw, &d) == nil {
				mu.Lock()
				decisions = append(decisions, d.DecisionID)
				mu.Unlock()
			}
		}
	}()
	for range kills {
		time.Sleep(time.Duration(300+rand.IntN(900)) * time.Millisecond)
		_ = cur.Process.Kill() // SIGKILL: no drain, no deferred work
		_ = cur.Wait()
		start()
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d kills: %d deliveries (%d deployments) and %d gate decisions acknowledged", kills, len(events), len(runs), len(decisions))
	if len(events) == 0 || len(decisions) == 0 {
		t.Fatal("nothing acknowledged: the load did not run")
	}

	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	for _, id := range events {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM inbox_events WHERE id = $1", id).Scan(&n); err != nil || n != 1 {
			t.Errorf("acknowledged delivery %s stored %d times (%v)", id, n, err)
		}
	}
	var dup int
	if err := db.QueryRowContext(ctx, "SELECT count(*) - count(DISTINCT body) FROM inbox_events").Scan(&dup); err != nil || dup != 0 {
		t.Errorf("%d deliveries stored twice (%v)", dup, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pending int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM inbox_events WHERE status = 'pending'").Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events still pending 30 s after the last restart", pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var unfinished int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM inbox_events WHERE status <> 'processed'").Scan(&unfinished); err != nil || unfinished != 0 {
		t.Errorf("%d events not processed (quarantined or ignored) (%v)", unfinished, err)
	}
	for run := range runs {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM deployments d JOIN releases r ON r.id = d.release_id
			WHERE d.provider = 'crash' AND d.run_id = $1`, run).Scan(&n)
		if err != nil || n != 1 {
			t.Errorf("acknowledged deployment %s recorded with its release %d times (%v)", run, n, err)
		}
	}
	for _, id := range decisions {
		var n int
		err := db.QueryRowContext(ctx, "SELECT count(*) FROM audit_log WHERE action = 'gate.decision' AND data::jsonb->>'decision_id' = $1", id).Scan(&n)
		if err != nil || n != 1 {
			t.Errorf("answered decision %s is in the audit chain %d times (%v)", id, n, err)
		}
	}
	cmd := exec.Command(bin, "audit", "verify")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("tollgate audit verify: %v\n%s", err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
}
