package app_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// wakeConfig polls rarely: only the wake-up on a stored delivery can make
// the normalizer answer within a second.
var wakeConfig = fmt.Sprintf(`
connectors:
  - {name: servicenow, type: servicenow, webhook_secret: %[1]s}
inbox:
  poll_interval: 30s
`, authoritySecret)

// approvalToAnswer requests key's approval, starts a check waiting on it,
// sends the signed approval webhook and returns how long after the webhook
// was sent the check answered allow.
func (s *server) approvalToAnswer(ci, key, service string) time.Duration {
	s.t.Helper()
	now := time.Now().UTC()
	if e := s.settled(s.mustHook("servicenow", snChange(key, service, "requested", now.Add(-30*time.Minute)))); e.Status != core.EventProcessed {
		s.t.Fatalf("requested change: %s %q", e.Status, e.Reason)
	}
	answered := make(chan gateAnswer, 1)
	go func() {
		var a gateAnswer
		if st := s.do("POST", "/api/v1/gate/check?wait=20s", ci, gateReq(service, "1.0.0", key), &a); st != http.StatusOK {
			s.t.Errorf("waiting check: status %d", st)
		}
		answered <- a
	}()
	time.Sleep(300 * time.Millisecond) // the check is waiting
	body := snChange(key, service, "approved", now.Add(-time.Minute))
	start := time.Now()
	s.mustHook("servicenow", body)
	a := <-answered
	took := time.Since(start)
	if a.Decision != "allow" {
		s.t.Fatalf("waiting check answered %s %s, want allow", a.Decision, a.codes())
	}
	return took
}

// An approval webhook wakes a waiting check at once, though the
// normalizer's poll is 30 s: the stored delivery wakes the normalizer, and
// the stored change wakes the check. (The figure is in docs/benchmarks.md,
// BenchmarkWebhookToAnswer; the bound here is loose for slow CI machines.)
func TestApprovalWakesWaitingCheck(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			s := boot(t, dialect, wakeConfig)
			ci, _ := s.token(core.RoleCI)
			for i := range 3 {
				took := s.approvalToAnswer(ci, fmt.Sprintf("CHG00420%02d", i), fmt.Sprintf("wake-svc-%d", i))
				t.Logf("approval webhook → waiting check answered allow: %v", took)
				if took > 3*time.Second {
					t.Fatalf("approval took %v to reach the waiting check, want well under a second", took)
				}
			}
		})
	}
}

// BenchmarkWebhookToAnswer measures the time from sending a signed
// ServiceNow approval webhook to the answer of a gate check long-polling on
// that change (?wait=), through the real server: webhook → inbox →
// normalizer → change stored → notification → re-evaluation → decision
// recorded → answer. It reports p50 and p99 over b.N approvals (run with
// -benchtime=Nx); the setup of each (the requested change, the waiting
// check) is outside the timer.
func BenchmarkWebhookToAnswer(b *testing.B) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		b.Run(dialect, func(b *testing.B) {
			s := boot(b, dialect, wakeConfig)
			ci, _ := s.token(core.RoleCI)
			var took []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				took = append(took, s.approvalToAnswer(ci, fmt.Sprintf("CHG%07d", i+1), fmt.Sprintf("bench-svc-%d", i)))
			}
			b.StopTimer()
			slices.Sort(took)
			q := func(p float64) float64 {
				return float64(took[min(len(took)-1, int(p*float64(len(took))))].Microseconds()) / 1000
			}
			b.ReportMetric(q(0.50), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
