package app_test

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/blackhole"
	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// TestDatabaseVanishes cuts the network to PostgreSQL under a running
// tollgate — no connection closed, no reset, every packet dropped, as a
// failed link or a dead host does — with the database URL's TCP
// parameters shortened to a second (tcp_user_timeout and keepalives, as
// libpq names them). Gate checks and webhooks then get 503 (webhooks with
// Retry-After) within a bound instead of waiting for ever, /readyz turns
// 503, and nothing is answered 202 that is not stored; with the network
// back, full service returns within 5 s without a restart, every
// acknowledged delivery is normalized and the audit chain verifies.
func TestDatabaseVanishes(t *testing.T) {
	u, proxy := testpg.Blackholed(t, testpg.NewDatabase(t), url.Values{
		"tcp_user_timeout":    {"1000"},
		"keepalives_idle":     {"1"},
		"keepalives_interval": {"1"},
		"keepalives_count":    {"2"},
	})
	s := bootURL(t, u, e2eConfig+"  lease: 2s\n")
	ci, _ := s.token(core.RoleCI)
	gate := map[string]any{"service": "pay", "environment": "staging", "version": "1", "changes": []string{"CHG1"}}
	hook := itsmHook(s)
	status := func(path string) int { return s.do("GET", path, "", nil, nil) }
	// answered runs f and fails t unless it returns within bound: a
	// request waiting for a database that will never answer is the bug.
	const bound = 10 * time.Second
	answered := func(what string, f func() int) int {
		t.Helper()
		start := time.Now()
		got := make(chan int, 1)
		go func() { got <- f() }()
		select {
		case st := <-got:
			t.Logf("%s: %d after %v", what, st, time.Since(start).Round(time.Millisecond))
			return st
		case <-time.After(bound):
			t.Fatalf("%s: no answer within %v with the database unreachable", what, bound)
			return 0
		}
	}
	if st, _ := hook(1); st != 202 {
		t.Fatalf("webhook before the cut: %d", st)
	}
	if st := s.do("POST", "/api/v1/gate/check", ci, gate, nil); st != 200 {
		t.Fatalf("gate before the cut: %d", st)
	}

	load := startDeliveries(hook) // across the cut
	time.Sleep(200 * time.Millisecond)
	if err := proxy.Drop(); errors.Is(err, blackhole.ErrUnsupported) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}

	if st := answered("gate check during the cut", func() int { return s.do("POST", "/api/v1/gate/check", ci, gate, nil) }); st != 503 {
		t.Errorf("gate check during the cut: %d, want 503 (the CLI's exit 3, never an allow)", st)
	}
	var retryAfter string
	if st := answered("webhook during the cut", func() int {
		st, h := hook(2)
		retryAfter = h.Get("Retry-After")
		return st
	}); st != 503 || retryAfter == "" {
		t.Errorf("webhook during the cut: %d Retry-After %q, want 503 with Retry-After", st, retryAfter)
	}
	d := within(t, "/readyz 503 during the cut", bound, func() bool {
		return answered("/readyz during the cut", func() int { return status("/readyz") }) == 503
	})
	t.Logf("/readyz 503 %v into the cut's checks", d.Round(time.Millisecond))
	if st := status("/healthz"); st != 200 {
		t.Errorf("/healthz during the cut: %d (the process is alive)", st)
	}

	if err := proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	d = within(t, "full service after the network came back", 5*time.Second, func() bool {
		return status("/readyz") == 200 && s.do("POST", "/api/v1/gate/check", ci, gate, nil) == 200
	})
	t.Logf("full service %v after the network came back", d.Round(time.Millisecond))
	load.finish(t, s, hook, "CHG1")
}
