package service

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/metrics"
)

// hookSource is a poll source whose webhooks' states the test sets.
type hookSource struct {
	states []connectors.HookState
	err    error
}

func (hookSource) Poll(context.Context, time.Time, func(connectors.Record) error) error { return nil }
func (h *hookSource) HookStates(context.Context) ([]connectors.HookState, error) {
	return h.states, h.err
}

// TestPollerCheckHooks: the poller sets tollgate_ci_webhook_disabled for
// each webhook and logs one turned off once (an error when a person must
// turn it on; a warning with its end when the CI turns it on by itself),
// and one on again at info; a project with none at the connector's path
// is a warning without a gauge (a proxy may rewrite the path); a state it
// cannot read is a warning.
func TestPollerCheckHooks(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	m := metrics.New()
	src := &hookSource{}
	p := NewPoller("gitlab", src, nil, nil, time.Minute, "test", core.SystemClock, log, m)
	gauge := func(where string) float64 {
		var d dto.Metric
		if err := m.HookDisabled.WithLabelValues("gitlab", where).Write(&d); err != nil {
			t.Fatal(err)
		}
		return d.GetGauge().GetValue()
	}
	until := time.Date(2026, 12, 6, 12, 30, 0, 0, time.UTC)
	steps := []struct {
		states []connectors.HookState
		err    error
		logged []string // levels and messages, in order
		gauges map[string]float64
	}{
		{
			states: []connectors.HookState{
				{Where: "project acme/payments hook 1", Status: "executable"},
				{Where: "project acme/ledger hook 2", Disabled: true, Until: until, Status: "temporarily_disabled"},
				{Where: "project acme/web", Disabled: true, Status: "absent"},
			},
			logged: []string{"level=WARN msg=\"the CI has disabled its webhook to tollgate for a while", "until=2026-12-06T12:30:00.000Z",
				"level=WARN msg=\"no webhook there points at this connector's path"},
			gauges: map[string]float64{"project acme/payments hook 1": 0, "project acme/ledger hook 2": 1},
		},
		{ // the same again: nothing logged
			states: []connectors.HookState{
				{Where: "project acme/payments hook 1", Status: "executable"},
				{Where: "project acme/ledger hook 2", Disabled: true, Until: until, Status: "temporarily_disabled"},
				{Where: "project acme/web", Disabled: true, Status: "absent"},
			},
			gauges: map[string]float64{"project acme/ledger hook 2": 1},
		},
		{
			states: []connectors.HookState{
				{Where: "project acme/payments hook 1", Disabled: true, Status: "disabled"},
				{Where: "project acme/ledger hook 2", Status: "executable"},
				{Where: "project acme/web", Disabled: true, Status: "absent"},
			},
			logged: []string{"level=ERROR msg=\"the CI has disabled its webhook to tollgate until someone enables it again",
				"level=INFO msg=\"the CI's webhook to tollgate sends again\"", "webhook=\"project acme/ledger hook 2\""},
			gauges: map[string]float64{"project acme/payments hook 1": 1, "project acme/ledger hook 2": 0},
		},
		{
			err:    core.Errorf(core.KindUnavailable, "GitLab gitlab: project acme/payments webhooks: 502"),
			logged: []string{"level=WARN msg=\"webhook state not read\"", "502"},
			gauges: map[string]float64{"project acme/payments hook 1": 1},
		},
	}
	for i, s := range steps {
		logs.Reset()
		src.states, src.err = s.states, s.err
		p.CheckHooks(context.Background())
		out := logs.String()
		rest := out
		for _, want := range s.logged {
			j := strings.Index(rest, want)
			if j < 0 {
				t.Errorf("step %d: log lacks %q (in order):\n%s", i, want, out)
				break
			}
			rest = rest[j+len(want):]
		}
		if len(s.logged) == 0 && out != "" {
			t.Errorf("step %d: logged again:\n%s", i, out)
		}
		if n := strings.Count(out, "\n"); len(s.logged) > 0 && n != strings.Count(strings.Join(s.logged, "\n"), "level=") {
			t.Errorf("step %d: %d lines logged:\n%s", i, n, out)
		}
		for where, want := range s.gauges {
			if got := gauge(where); got != want {
				t.Errorf("step %d: tollgate_ci_webhook_disabled{webhook=%q} = %v, want %v", i, where, got, want)
			}
		}
	}

	// Another replica takes the lease: this one drops its gauges, so that
	// a stale 1 does not outlive the webhook's return.
	series := func() int {
		ch := make(chan prometheus.Metric, 16)
		m.HookDisabled.Collect(ch)
		close(ch)
		return len(ch)
	}
	if series() != 2 {
		t.Fatalf("%d webhook series before the lease moved, want 2 (none for the project without a webhook)", series())
	}
	p.store = &notHolder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	waitFor(t, 5*time.Second, "the gauges dropped by a replica without the lease", func() bool { return series() == 0 })
	cancel()
	<-done

	// A source without webhooks to watch is passed over.
	plain := NewPoller("servicenow", &plainSource{}, nil, nil, time.Minute, "test", core.SystemClock, log, m)
	logs.Reset()
	plain.CheckHooks(context.Background())
	if logs.Len() != 0 {
		t.Errorf("a source without webhooks logged: %s", logs.String())
	}
}

// plainSource is a poll source and nothing more.
type plainSource struct{}

func (plainSource) Poll(context.Context, time.Time, func(connectors.Record) error) error {
	return nil
}

// notHolder is a lease table in which another replica holds every lease.
type notHolder struct{ outageStore }

func (*notHolder) AcquireLease(context.Context, string, string, time.Duration) (bool, error) {
	return false, nil
}
