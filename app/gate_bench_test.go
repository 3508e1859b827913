package app_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// BenchmarkGateCheckHTTP measures whole gate checks through the real
// server on a loopback port: the client's POST /api/v1/gate/check, echo's
// middleware (request id, access log, body limit, bearer token), the strict
// JSON decoding of the request, the gate (facts from the cache, evaluation,
// the decision recorded durably in the audit chain) and the JSON answer.
// Each check is a new version of payments-api linking one or two of ten
// approved changes (an allow), from 8 client goroutines per GOMAXPROCS over
// kept-alive connections.
//
// cpu-ns/op is this process's CPU (user + system) per check: the server and
// the Go client both (the database's, for PostgreSQL, is not included).
//
//	go test ./app -run '^$' -bench GateCheckHTTP -benchtime 5s -cpu 1
func BenchmarkGateCheckHTTP(b *testing.B) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		b.Run(dialect, func(b *testing.B) {
			if dialect == "postgres" {
				if err := testpg.Available(); err != nil {
					b.Skipf("PostgreSQL not available: %v", err)
				}
			}
			s := boot(b, dialect, e2eConfig)
			ci, _ := s.token(core.RoleCI)
			t0 := time.Now().UTC().Add(-time.Minute)
			const changes = 10
			for i := range changes {
				s.sendWebhook(change(fmt.Sprintf("CHG%d", 2000+i), core.ApprovalApproved, t0))
			}
			s.waitFor("the changes stored", func() bool { return s.changeState(fmt.Sprintf("CHG%d", 2000+changes-1)) == "approved" })
			body := func(n int64) []byte {
				keys := fmt.Sprintf(`"CHG%d"`, 2000+n%changes)
				if n%4 == 0 {
					keys += fmt.Sprintf(`, "CHG%d"`, 2000+(n+3)%changes)
				}
				return fmt.Appendf(nil, `{"service": "payments-api", "environment": "production", "version": "3.%d.0", "team": "payments",
 "changes": [%s], "actor": "ci-bot", "pipeline": {"provider": "github", "run_id": "%d"}}`, n, keys, n)
			}
			client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			b.Cleanup(client.CloseIdleConnections)
			post := func(n int64) (int, []byte, error) {
				req, err := http.NewRequest("POST", s.url+"/api/v1/gate/check", bytes.NewReader(body(n)))
				if err != nil {
					return 0, nil, err
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+ci)
				resp, err := client.Do(req)
				if err != nil {
					return 0, nil, err
				}
				defer resp.Body.Close()
				raw, err := io.ReadAll(resp.Body)
				return resp.StatusCode, raw, err
			}
			if st, raw, err := post(0); err != nil || st != http.StatusOK || !bytes.Contains(raw, []byte(`"decision":"allow"`)) {
				b.Fatalf("first check: %d %s %v", st, raw, err)
			}
			var seq atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8)
			cpu0, start := processCPU(), time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if st, raw, err := post(seq.Add(1)); err != nil || st != http.StatusOK {
						b.Errorf("check: %d %s %v", st, raw, err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time (user + system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
