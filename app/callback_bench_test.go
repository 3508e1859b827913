package app_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// BenchmarkWebhookToCallback measures the time from sending a signed
// ServiceNow approval webhook to GitHub receiving tollgate's answer to a
// deployment protection rule waiting on that change (the App's review
// callback, recorded by the fake with its arrival time), through the real
// server: webhook → inbox → normalizer → change stored → notification →
// the pending request re-evaluated → decision recorded → callback. The
// normalizer polls every 30 s, so only the wake-ups can answer within a
// second. It reports p50 and p99 over b.N approvals (-benchtime=Nx); the
// setup of each (the requested change, the pending protection rule) is
// outside the timer.
func BenchmarkWebhookToCallback(b *testing.B) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		b.Run(dialect, func(b *testing.B) {
			f := newFakeCI(b)
			cfg := strings.Replace(ciGatesConfig(f), "poll_interval: 50ms", "poll_interval: 30s", 1)
			s := boot(b, dialect, cfg)
			aud, _ := s.token(core.RoleAuditor)
			var took []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				key, run := fmt.Sprintf("CHG%07d", 5100000+i), fmt.Sprintf("%d", 8100000+i)
				sha := fmt.Sprintf("%040x", 0xb0000+i)
				old := time.Now().UTC().Add(-30 * time.Minute)
				s.snSettled(snChange(key, "payments-api", "requested", old))
				f.commit("acme/payments", sha, "release\n\nChange: "+key)
				if st := s.githubHook("github", "deployment_protection_rule", protectionRule(f.srv.URL, "acme/payments", run, fmt.Sprintf("%d", 9100000+i), sha, "")); st != http.StatusAccepted {
					b.Fatalf("protection rule webhook: %d", st)
				}
				s.pendingFor(aud, "github", "runs/"+run, core.CodeChangeNotApproved)
				b.StartTimer()
				sent := time.Now()
				s.mustHook("servicenow", snChange(key, "payments-api", "approved", time.Now().UTC().Add(-5*time.Second)))
				a, ok := f.answer(run, 20*time.Second)
				if !ok || a.State != "approved" {
					b.Fatalf("answer to run %s: %+v (ok %v), want approved", run, a, ok)
				}
				took = append(took, a.At.Sub(sent))
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
