// Package metrics holds tollgate's Prometheus collectors, on a registry
// made per server (no global registry), so tests can boot many servers.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Set is every collector tollgate exports.
type Set struct {
	Registry *prometheus.Registry

	HTTPRequests *prometheus.CounterVec   // method, route, status
	HTTPDuration *prometheus.HistogramVec // method, route

	GateDecisions *prometheus.CounterVec // environment, decision

	InboxEvents  *prometheus.CounterVec // connector, outcome: received|duplicate|processed|quarantined|ignored|rejected|retried
	InboxLag     prometheus.Gauge       // seconds since the oldest pending event was received
	InboxPending prometheus.Gauge       // events waiting for the normalizer

	AuthFailures *prometheus.CounterVec // reason: missing_token|invalid_token|forbidden|webhook_signature|unknown_connector|cross_site (UI forms)
	// DoctorFindings is 1 for each check of the last scheduled doctor run
	// that did not pass (scope, check, status: warn|fail).
	DoctorFindings *prometheus.GaugeVec
	// DoctorRun is when the last scheduled doctor run ended (Unix seconds).
	DoctorRun prometheus.Gauge
	// PreviousSecret counts deliveries accepted with a connector's
	// webhook_secret_previous (a rotation under way).
	PreviousSecret *prometheus.CounterVec // connector
	RateLimited    *prometheus.CounterVec // scope: token|connector|client

	PollLag      *prometheus.GaugeVec   // connector: seconds since the last complete poll
	PollErrors   *prometheus.CounterVec // connector
	APIRequests  *prometheus.CounterVec // connector, outcome: ok|client_error|server_error|error|circuit_open
	APICircuit   *prometheus.GaugeVec   // connector: 0 closed, 1 half-open, 2 open
	ChangeCreate *prometheus.CounterVec // connector, outcome: created|failed
	Redeliveries *prometheus.CounterVec // connector, outcome: requested|stored|abandoned|refused|error
	HookDisabled *prometheus.GaugeVec   // connector, webhook: 1 while the CI sends nothing through it

	GatePending   *prometheus.GaugeVec   // provider: CI gate requests waiting or being answered
	GateCallbacks *prometheus.CounterVec // provider, outcome: approved|rejected|retried|failed|unknown
	GateOverLimit *prometheus.CounterVec // connector: CI gate requests rejected on arrival (TOO_MANY_WAITING)
	// ClockSkew is the database's clock less this replica's, in seconds
	// (PostgreSQL; measured every 10 s).
	ClockSkew prometheus.Gauge
	// GateWaitsRefused counts long-polled checks refused by a cap on the
	// checks waiting at once (limit: replica|token).
	GateWaitsRefused *prometheus.CounterVec
	// AnchorMismatch is 1 while the audit chain does not reach the newest
	// anchor this replica knows; AnchorWrites counts the anchors it wrote
	// (target: file|url, outcome: ok|failed), AnchorLastWrite when one
	// last reached a target.
	AnchorMismatch  prometheus.Gauge
	AnchorWrites    *prometheus.CounterVec
	AnchorLastWrite prometheus.Gauge
}

// WatchGateWaiting exports how many long-polled checks wait now.
func (s *Set) WatchGateWaiting(n func() int) {
	s.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tollgate_gate_waiting_checks", Help: "Gate checks long-polling (?wait=) on this replica now.",
	}, func() float64 { return float64(n()) }))
}

// AuditStats are the group-commit appender's counters: groups committed,
// those sent as one statement (PostgreSQL), the appends they carried, and
// seconds spent in group transactions.
type AuditStats struct {
	Groups, OneStatement, Appends int64
	BusySeconds                   float64
}

// WatchAudit exports the appender's counters: appends per group is the
// batching achieved; busy seconds per second near the number of workers
// means appends queue behind commits.
func (s *Set) WatchAudit(stats func() AuditStats) {
	s.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_audit_groups_total", Help: "Group-commit transactions of the audit chain.",
		}, func() float64 { return float64(stats().Groups) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_audit_groups_one_statement_total",
			Help: "Groups committed as one statement, in one round trip (PostgreSQL); the others ran interactively (writer functions, or a refused statement rerun caller by caller).",
		}, func() float64 { return float64(stats().OneStatement) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_audit_group_appends_total", Help: "Appends (gate decisions and other audited writes) carried by those transactions.",
		}, func() float64 { return float64(stats().Appends) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_audit_group_busy_seconds_total", Help: "Time the group-commit workers spent in transactions.",
		}, func() float64 { return stats().BusySeconds }),
	)
}

// NotifyStats are the cross-replica notifier's counters: transactions
// sent, notifications they carried, and failed sends (retried; the writes
// they announce have committed regardless).
type NotifyStats struct {
	Sends, Notifications, Failures int64
}

// WatchNotify exports the notifier's counters: notifications per send is
// the merging achieved; failures mean other replicas learn of changes
// late (from their polls and the fact cache's TTL).
func (s *Set) WatchNotify(stats func() NotifyStats) {
	s.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_notify_sends_total", Help: "Transactions that sent wake-ups (LISTEN/NOTIFY) to other replicas after the writes committed.",
		}, func() float64 { return float64(stats().Sends) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_notify_notifications_total", Help: "Notifications those transactions carried (merged fact topics, one inbox wake-up per burst).",
		}, func() float64 { return float64(stats().Notifications) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_notify_failures_total", Help: "Failed sends of wake-ups to other replicas (retried; the writes are committed).",
		}, func() float64 { return float64(stats().Failures) }),
	)
}

// New builds a Set on a fresh registry, with Go and process collectors.
func New() *Set {
	r := prometheus.NewRegistry()
	s := &Set{
		Registry: r,
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_http_requests_total", Help: "HTTP requests by method, route pattern and status.",
		}, []string{"method", "route", "status"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tollgate_http_request_duration_seconds", Help: "HTTP request latency by method and route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900},
		}, []string{"method", "route"}),
		GateDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_gate_decisions_total", Help: "Recorded gate decisions by environment and result.",
		}, []string{"environment", "decision"}),
		InboxEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_inbox_events_total", Help: "Inbox events by connector and outcome (received, duplicate, rejected, polled: read through an ITSM API, processed, quarantined, ignored, retried).",
		}, []string{"connector", "outcome"}),
		DoctorFindings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tollgate_doctor_findings",
			Help: "1 for each check of the last scheduled doctor run that did not pass, by scope (database, connector <name>), check and status (warn, fail); a passing check has no series.",
		}, []string{"scope", "check", "status"}),
		DoctorRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_doctor_last_run_timestamp_seconds", Help: "When the last scheduled doctor run ended (Unix seconds; 0 before the first).",
		}),
		PreviousSecret: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_webhook_previous_secret_total",
			Help: "Deliveries authenticated with the connector's webhook_secret_previous: while it rises the sender still uses the old secret, which can be removed once it stops.",
		}, []string{"connector"}),
		InboxLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_inbox_lag_seconds", Help: "Age of the oldest event waiting for the normalizer (0 when none).",
		}),
		InboxPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_inbox_pending_events", Help: "Events waiting for the normalizer.",
		}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_auth_failures_total", Help: "Refused authentications by reason (missing_token, invalid_token, forbidden, webhook_signature, unknown_connector).",
		}, []string{"reason"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_rate_limited_total", Help: "Requests answered 429 by the rate limit that refused them (token, connector, client: its failed authentications).",
		}, []string{"scope"}),
	}
	s.PollLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_poll_lag_seconds", Help: "Seconds since the connector's poller last completed a poll (its records are at most this old plus one interval).",
	}, []string{"connector"})
	s.PollErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_poll_errors_total", Help: "Polls that failed, by connector.",
	}, []string{"connector"})
	s.APIRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_api_requests_total", Help: "Calls to ITSM APIs by connector and outcome (ok, client_error, server_error, error, circuit_open), after retries.",
	}, []string{"connector", "outcome"})
	s.APICircuit = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_api_circuit_state", Help: "Circuit breaker of each connector's API: 0 closed, 1 half-open, 2 open (calls refused).",
	}, []string{"connector"})
	s.ChangeCreate = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_change_creations_total", Help: "Changes opened for releases that linked none, by connector and outcome (created, failed).",
	}, []string{"connector", "outcome"})
	s.Redeliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_redeliveries_total", Help: "Failed webhook deliveries found in the sender's delivery log (GitHub Apps, GitLab project webhooks), by connector and outcome: requested again, stored (tollgate had it), abandoned (still failing after the most redeliveries), refused (the sender would not redeliver), deferred (the sender cannot now: a webhook it holds disabled; asked again next run), error (a run that failed), unread (a webhook whose events since the last run were more than one run reads: the older ones are not asked for).",
	}, []string{"connector", "outcome"})
	s.HookDisabled = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_ci_webhook_disabled", Help: "1 while a CI sends nothing through its webhook to the connector (GitLab disables one after failed deliveries), 0 once it is enabled, by connector and webhook.",
	}, []string{"connector", "webhook"})
	r.MustRegister(s.PollLag, s.PollErrors, s.APIRequests, s.APICircuit, s.ChangeCreate, s.Redeliveries, s.HookDisabled)
	s.GatePending = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_gate_pending", Help: "Gate requests a CI waits on (GitHub protection rules, GitLab approvals) not yet answered, by provider.",
	}, []string{"provider"})
	s.GateCallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_gate_callbacks_total", Help: "Answers sent to a CI's gate by provider and outcome (approved, rejected, retried, failed, unknown).",
	}, []string{"provider", "outcome"})
	s.GateOverLimit = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_gate_requests_over_limit_total", Help: "CI gate requests (GitHub protection rules, GitLab approvals) rejected on arrival with TOO_MANY_WAITING because their repository or project already had max_open waiting, by connector.",
	}, []string{"connector"})
	s.GateWaitsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_gate_waits_refused_total", Help: "Long-polled gate checks answered 429 because too many were waiting, by limit: replica (gate.max_waiting) or token (gate.max_waiting_per_token).",
	}, []string{"limit"})
	s.ClockSkew = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tollgate_clock_skew_seconds", Help: "The database server's clock less this replica's (PostgreSQL), halfway through the query's round trip: change windows and freezes are judged by the replica's clock.",
	})
	r.MustRegister(s.GatePending, s.GateCallbacks, s.GateOverLimit, s.GateWaitsRefused, s.ClockSkew)
	s.AnchorMismatch = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tollgate_audit_anchor_mismatch", Help: "1 while the audit chain does not reach the newest anchor this replica knows (audit.anchor): rows deleted from its end, a restore from an older backup, or a chain rewritten; 0 otherwise.",
	})
	s.AnchorWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_audit_anchor_writes_total", Help: "Anchors of the audit chain's head written by this replica while it held the audit-anchor lease, by target (file, url) and outcome (ok, failed).",
	}, []string{"target", "outcome"})
	s.AnchorLastWrite = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tollgate_audit_anchor_last_write_timestamp_seconds", Help: "When this replica last wrote an anchor to one of its targets (Unix seconds; 0 before the first): the cluster's newest is the max over its replicas.",
	})
	r.MustRegister(s.AnchorMismatch, s.AnchorWrites, s.AnchorLastWrite)
	r.MustRegister(s.HTTPRequests, s.HTTPDuration, s.GateDecisions, s.InboxEvents, s.PreviousSecret, s.DoctorFindings, s.DoctorRun, s.InboxLag, s.InboxPending,
		s.AuthFailures, s.RateLimited,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return s
}
