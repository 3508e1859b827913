// Package app assembles tollgate from its configuration: the store, the
// services, the connectors, the HTTP server and the background work
// (normalizer, notification listener, periodic reloads). cmd/tollgate's
// serve command and the end-to-end tests boot the same App.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/api"
	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/config/mappings"
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/all"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/ui"
)

// Version is the build's version (set with -ldflags "-X …app.Version=…").
var Version = "dev"

// Options are what tests vary.
type Options struct {
	Clock core.Clock
	// SchemaEvery is how often a running replica checks that it may still
	// run against the schema (default 10 s).
	SchemaEvery time.Duration
	// PolicyEvery is how often a running replica reads which policy
	// version is in force, whatever the notifications said (default
	// defaultPolicyEvery).
	PolicyEvery time.Duration
}

// App is a running tollgate.
type App struct {
	Config      *config.Config
	Log         *slog.Logger
	DB          *store.DB
	Metrics     *metrics.Set
	Tokens      *service.Tokens
	Policies    *service.Policies
	Gate        *service.Gate
	Deployments *service.Deployments
	Reviews     *service.Reviews
	Mappings    *service.Mappings
	Inbox       *service.Inbox
	CIGates     *service.CIGates
	Reconciler  *service.Reconciler
	Scheduler   *service.Scheduler
	Server      *api.Server
	// ITSM API side: one client per connector with an api block, the
	// pollers (GitLab's and Jenkins's too: wireCIRecovery), read-back,
	// change creation and write-back.
	APIs      map[string]all.API
	Pollers   []*service.Poller
	ReadBack  *service.ReadBack
	Creator   *service.Creator
	WriteBack *service.WriteBack
	// Redeliverers ask GitHub to redeliver the App deliveries that
	// failed.
	Redeliverers []*service.Redeliverer
	// Anchorer keeps the audit chain's head outside the database (nil:
	// audit.anchor is off).
	Anchorer *service.Anchorer

	draining atomic.Bool // shutting down: /readyz answers 503 (drain)
	// doctorRuns serializes GET /api/v1/doctor's runs; doctorLast and
	// doctorAt are the last one's findings and end (CheckConnectors).
	doctorRuns sync.Mutex
	doctorLast []connectors.Section
	doctorAt   time.Time
	conns      []service.Connector // the connectors (their outbound clients: closeOutbound)
	// schemaEvery is how often watchDatabase reads the schema's floor,
	// measures the clock and records the replica.
	schemaEvery time.Duration
	policyEvery time.Duration // policyLoop's interval
	// replica is this process as GET /api/v1/replicas lists it; its ID
	// also holds the leases.
	replica core.Replica
	// skew is the database server's clock less this replica's, as last
	// measured (nanoseconds), once skewKnown (clockUnfit).
	skew      atomic.Int64
	skewKnown atomic.Bool
}

// New opens and migrates the store and builds every service.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts Options) (*App, error) {
	clock := opts.Clock
	if clock == nil {
		clock = core.SystemClock
	}
	db, err := store.Open(ctx, cfg.DatabaseURL, store.Options{Clock: clock, Logger: log, FactsCacheTTL: cfg.Gate.CacheTTL()})
	if err != nil {
		return nil, err
	}
	a, err := build(ctx, cfg, log, clock, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	a.schemaEvery = cmp.Or(opts.SchemaEvery, defaultSchemaEvery)
	a.policyEvery = cmp.Or(opts.PolicyEvery, defaultPolicyEvery)
	return a, nil
}

func build(ctx context.Context, cfg *config.Config, log *slog.Logger, clock core.Clock, db *store.DB) (*App, error) {
	if _, err := db.Migrate(ctx); err != nil {
		return nil, err
	}
	a := &App{Config: cfg, Log: log, DB: db, Metrics: metrics.New(), replica: newReplica(clock)}
	a.Metrics.WatchAudit(func() metrics.AuditStats {
		st := db.AppenderStats()
		return metrics.AuditStats{Groups: st.Groups, OneStatement: st.OneStatement, Appends: st.Requests, BusySeconds: st.Busy.Seconds()}
	})
	a.Metrics.WatchNotify(func() metrics.NotifyStats {
		st := db.NotifyStats()
		return metrics.NotifyStats{Sends: st.Sends, Notifications: st.Notifications, Failures: st.Failures}
	})
	a.Tokens = service.NewTokens(db, clock)
	if err := a.bootstrapAdmin(ctx); err != nil {
		return nil, err
	}
	a.Policies = service.NewPolicies(db, log)
	if err := a.Policies.Load(ctx, cfg.Policy); err != nil {
		return nil, err
	}
	a.buildGate(clock)
	a.Deployments = service.NewDeployments(db, a.Policies, clock, log, cfg.Gate.MaxListItems)
	a.Deployments.MaxFutureSkew = cfg.Inbox.MaxFutureSkew.D()
	a.Reviews = service.NewReviews(db, clock)

	sources := []fs.FS{mappings.FS}
	if cfg.MappingsDir != "" {
		sources = append(sources, os.DirFS(cfg.MappingsDir))
	}
	var err error
	if a.Mappings, err = service.NewMappings(db, log, sources...); err != nil {
		return nil, err
	}
	a.Mappings.SetConnectorTypes(all.Registry().Types())
	if err := a.Mappings.Reload(ctx); err != nil {
		return nil, err
	}
	conns, err := buildConnectors(cfg)
	if err != nil {
		return nil, err
	}
	a.conns = conns
	for _, f := range connectors.TrustFindings(connectorConfigs(conns)) {
		log.WarnContext(ctx, "configuration: "+f.Detail, "check", f.Check)
	}
	if err := a.buildAPIs(conns); err != nil {
		return nil, err
	}
	workers := cfg.Inbox.Workers
	if db.Dialect() == store.SQLite {
		workers = 1 // one writer anyway
	}
	a.Inbox = service.NewInbox(db, conns, a.Mappings, a.Deployments, a.Metrics, clock, log, service.InboxConfig{
		Workers: workers, BatchSize: cfg.Inbox.BatchSize, Lease: cfg.Inbox.Lease.D(), PollInterval: cfg.Inbox.PollInterval.D(),
		MaxAttempts: cfg.Inbox.MaxAttempts, MaxFutureSkew: cfg.Inbox.MaxFutureSkew.D(), StoreOnly: !cfg.Inbox.Normalizes(),
	})
	a.CIGates = service.NewCIGates(db, a.Gate, db, conns, clock, log, service.CIGatesConfig{})
	a.CIGates.OnAnswer = func(provider, outcome string) { a.Metrics.GateCallbacks.WithLabelValues(provider, outcome).Inc() }
	a.CIGates.OnPending = func(by map[string]int) {
		for p, n := range by {
			a.Metrics.GatePending.WithLabelValues(p).Set(float64(n))
		}
	}
	a.CIGates.OnOverLimit = func(connector string) { a.Metrics.GateOverLimit.WithLabelValues(connector).Inc() }
	a.Inbox.SetCIGates(a.CIGates)
	a.wireITSM(conns, clock)
	a.wireCIRecovery(conns, clock)
	a.Reconciler = service.NewReconciler(db, a.Policies, clock, log, core.ReconcileOptions{})
	for _, c := range conns {
		if c.Config.Writes(connectors.RecordDeployments) {
			a.Reconciler.DeploymentConnectors = append(a.Reconciler.DeploymentConnectors, c.Config.Name)
		}
	}
	if a.Scheduler, err = buildScheduler(cfg, a.Reconciler, db, a.Metrics.Registry, a.replica.ID, clock, log); err != nil {
		return nil, err
	}
	var stored service.PendingReader
	if a.CIGates.Enabled() {
		stored = db
	}
	pending := service.NewWaitingGates(stored, a.Gate, a.Policies)
	proposals := service.NewProposals(db, a.Policies, a.Mappings, clock, log, cfg.Governance.FourEyes)
	holds := service.NewHolds(db, a.Policies, clock)
	trustedProxies, err := cfg.HTTP.TrustedProxyPrefixes()
	if err != nil {
		return nil, err
	}
	authFailures := api.NewAuthFailureLimit(cfg.RateLimit.AuthFailuresPerClient.PerSecond(), cfg.RateLimit.AuthFailuresPerClient.Burst, a.Metrics)
	reader := newOnlineReader(db)
	keys, err := a.wireAudit(ctx)
	if err != nil {
		return nil, err
	}
	web, err := ui.New(ui.Deps{
		Logger: log, Clock: clock, Tokens: a.Tokens, Sessions: db, Reader: reader, Pending: pending, Policies: a.Policies,
		Mappings: a.Mappings, Proposals: proposals, Inbox: a.Inbox, Holds: holds, Reports: a.Reconciler, Downloads: uiDownloads{a}, Doctor: a, Replicas: a,
		IdleTimeout: cfg.UI.IdleTimeout.D(), MaxAge: cfg.UI.MaxAge.D(), TrustProxy: cfg.UI.TrustProxy, TrustedProxies: trustedProxies,
		AuthFailures: uiAuthFailures(authFailures), OnRefused: a.uiRefused, LimitToken: a.uiLimitToken,
	})
	if err != nil {
		return nil, err
	}
	a.Server = api.New(api.Deps{
		Pending: pending, AuthFailures: authFailures, TrustedProxies: trustedProxies,
		Logger: log, Metrics: a.Metrics, Clock: clock, Tokens: a.Tokens, Gate: a.Gate, RateLimits: rateLimits(cfg), EvidenceKeys: keys,
		Deployments: a.Deployments, Policies: a.Policies, Reader: reader, Inbox: a.Inbox, Mappings: a.Mappings, Reports: a.Reconciler,
		Ready: a.ready, ReadyDetails: a.readyDetails, MaxBodyBytes: cfg.MaxBodyBytes, Version: Version,
		Reviews:   a.Reviews,
		UI:        web,
		Holds:     holds,
		Evidence:  service.NewEvidence(db, a.Policies, clock),
		Simulator: service.NewSimulator(db, a.Policies),
		Proposals: proposals,
		Doctor:    a,
		Replicas:  a,
	})
	return a, nil
}

func rateLimits(cfg *config.Config) api.RateLimits {
	return api.RateLimits{
		TokenRate: cfg.RateLimit.PerToken.PerSecond(), TokenBurst: cfg.RateLimit.PerToken.Burst,
		ConnectorRate: cfg.RateLimit.PerConnector.PerSecond(), ConnectorBurst: cfg.RateLimit.PerConnector.Burst,
		Connectors: connectorNames(cfg),
	}
}

// buildGate builds the gate and exports what it does.
func (a *App) buildGate(clock core.Clock) {
	cfg := a.Config.Gate
	a.Gate = service.NewGate(a.DB, a.Policies, a.DB, clock, a.Log, service.GateConfig{
		MaxWait: cfg.MaxWait.D(), MaxListItems: cfg.MaxListItems,
		MaxWaiting: cfg.MaxWaiting, MaxWaitingPerActor: cfg.MaxWaitingPerToken,
	})
	a.Gate.Unfit = a.judgeUnfit
	if cfg.MaxClockSkew > 0 {
		a.DB.GuardLeases(a.clockUnfit) // pollers, reports: leases expire by this clock
	}
	a.Gate.OnWaitRefused = func(limit string) { a.Metrics.GateWaitsRefused.WithLabelValues(limit).Inc() }
	a.Metrics.WatchGateWaiting(a.Gate.WaitingCount)
	a.Gate.OnDecision = func(d core.GateDecision) {
		a.Metrics.GateDecisions.WithLabelValues(environmentLabel(a.Policies.Current(), d.Request.Environment), string(d.Decision)).Inc()
	}
}

// uiDownloads gives the web UI the API's report downloads; the server is
// built after the UI (the UI's routes are registered on it), so it is
// looked up when a download is asked for.
type uiDownloads struct{ a *App }

func (d uiDownloads) ReportFile(c *echo.Context) error   { return d.a.Server.ReportFile(c) }
func (d uiDownloads) ReportBundle(c *echo.Context) error { return d.a.Server.ReportBundle(c) }

func connectorNames(cfg *config.Config) []string {
	names := make([]string, len(cfg.Connectors))
	for i, c := range cfg.Connectors {
		names[i] = c.Name
	}
	return names
}

// bootstrapAdmin installs TOLLGATE_ADMIN_TOKEN's admin token, revoking
// the token of an earlier value, and warns when no admin token exists at
// all (nobody could then manage tokens, policy or mappings through the API).
// Token ids are logged, never secrets.
func (a *App) bootstrapAdmin(ctx context.Context) error {
	if a.Config.AdminToken != "" {
		res, err := a.Tokens.EnsureBootstrap(ctx, a.Config.AdminToken)
		if err != nil {
			return err
		}
		if res.Created {
			a.Log.InfoContext(ctx, "bootstrap admin token created from TOLLGATE_ADMIN_TOKEN", "token_id", res.Token.ID)
		}
		for _, old := range res.Revoked {
			a.Log.WarnContext(ctx, "TOLLGATE_ADMIN_TOKEN changed: the earlier bootstrap admin token is revoked",
				"revoked_token_id", old.ID, "token_id", res.Token.ID)
		}
		return nil
	}
	ok, err := a.Tokens.HasLiveAdmin(ctx)
	if err != nil {
		return err
	}
	if !ok {
		a.Log.WarnContext(ctx, "no admin token exists: set TOLLGATE_ADMIN_TOKEN (or TOLLGATE_ADMIN_TOKEN_FILE), or run `tollgate token create --role admin --name NAME`")
	}
	return nil
}

// environmentLabel is an environment as a metrics label: its canonical
// name when the policy names it, else "other" (a "*" catch-all accepts any
// name a caller sends, which must not add series).
func environmentLabel(cp *core.CompiledPolicy, env string) string {
	if cp != nil {
		if c, ok := cp.ResolveEnvironment(env); ok && slices.Contains(cp.Environments(), c) {
			return c
		}
	}
	return "other"
}

func buildConnectors(cfg *config.Config) ([]service.Connector, error) {
	reg := all.Registry()
	var (
		out  []service.Connector
		errs []error
	)
	for i, cc := range cfg.Connectors {
		c := connectors.Config{
			Name: cc.Name, Type: cc.Type, WebhookSecret: cc.WebhookSecret, WebhookSecretPrevious: cc.WebhookSecretPrevious,
			DefaultEnvironment: cc.DefaultEnvironment, Mappings: cc.Mappings, Options: cc.Options, Records: cc.Records,
			WriteBack: cc.WriteBack, Projects: cc.Projects, Jobs: cc.Jobs,
			Repositories: cc.Repositories, Organizations: cc.Organizations, Groups: cc.Groups,
		}
		if a := cc.API; a != nil {
			c.API = &connectors.API{
				URL: a.URL, Username: a.Username, Password: a.Password, ClientID: a.ClientID, ClientSecret: a.ClientSecret,
				Token: a.Token, Timeout: a.Timeout.D(), PollInterval: a.PollInterval.D(), ReadBackTimeout: a.ReadBackTimeout.D(),
				AppID: a.AppID,
			}
			if cc.Type == "github" {
				key, err := a.GitHubAppKey()
				if err != nil {
					errs = append(errs, fmt.Errorf("connectors[%d] (%s): api: %w", i, cc.Name, err))
					continue
				}
				c.API.PrivateKey = key
			}
			if cc.Type == "github" || cc.Type == "gitlab" {
				c.API.RedeliverInterval = a.Redeliver()
			}
		}
		if g := cc.CIGate(); g != nil {
			c.CIGate = &connectors.CIGate{Deadline: g.Deadline.D(), Services: cc.Services, WebhookSecret: g.WebhookSecret, WebhookSecretPrevious: g.WebhookSecretPrevious, MaxOpen: g.MaxOpen}
			patterns := cc.ChangeKeyPatterns
			if len(patterns) == 0 {
				patterns = config.DefaultChangeKeyPatterns
			}
			for _, p := range patterns {
				c.CIGate.ChangeKeyPatterns = append(c.CIGate.ChangeKeyPatterns, regexp.MustCompile(p)) // validated at load
			}
		}
		if cr := cc.ChangeCreation; cr != nil {
			c.ChangeCreation = &connectors.ChangeCreation{
				Environments: cr.Environments, Type: cr.Type, Template: cr.Template, Project: cr.Project,
				IssueType: cr.IssueType, ServiceDeskID: cr.ServiceDeskID, RequestTypeID: cr.RequestTypeID,
			}
		}
		wh, err := reg.New(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("connectors[%d] (%s): %w", i, cc.Name, err))
			continue
		}
		sc := service.Connector{Config: c, Webhook: wh}
		if cc.WebhookSecretPrevious != "" {
			// Only its Verify is used: a webhook without API. It keeps the
			// gate's own secret, which alone signs the gate's requests.
			var gate *connectors.CIGate
			if c.CIGate != nil {
				gate = &connectors.CIGate{WebhookSecret: c.CIGate.WebhookSecret, WebhookSecretPrevious: c.CIGate.WebhookSecretPrevious}
			}
			if sc.Previous, err = reg.New(connectors.Config{Name: c.Name, Type: c.Type, WebhookSecret: cc.WebhookSecretPrevious,
				DefaultEnvironment: c.DefaultEnvironment, Mappings: c.Mappings, Options: c.Options, CIGate: gate}); err != nil {
				errs = append(errs, fmt.Errorf("connectors[%d] (%s): webhook_secret_previous: %w", i, cc.Name, err))
				continue
			}
		}
		out = append(out, sc)
	}
	return out, errors.Join(errs...)
}

// ready is the readiness check: not shutting down, database reachable,
// migrations applied.
func (a *App) ready(ctx context.Context) error {
	if a.draining.Load() {
		return api.ErrShuttingDown
	}
	if err := a.DB.Ping(ctx); err != nil {
		return core.Wrap(core.KindUnavailable, err, "database unreachable")
	}
	st, err := a.DB.Schema(ctx)
	if err != nil {
		return core.Wrap(core.KindUnavailable, err, "cannot read migration status")
	}
	if st.Pending > 0 {
		return core.Errorf(core.KindUnavailable, "%d migrations not applied", st.Pending)
	}
	if err := st.Err(); err != nil {
		return err
	}
	return a.judgeUnfit()
}

// judgeUnfit refuses judging (gate checks, CI answers, readiness) while
// this replica's clock is off past gate.max_clock_skew, or the newest
// stored policy is one it cannot read.
func (a *App) judgeUnfit() error {
	if err := a.clockUnfit(); err != nil {
		return err
	}
	return a.Policies.Unfit()
}

// Serve serves HTTP on ln and runs the background work until ctx ends,
// then drains in-flight requests (up to the shutdown timeout) and stops.
// A replica whose schema a newer tollgate migrated past what it can run
// against stops the same way, and returns that error.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	run := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(bg) }()
	}
	run(a.Inbox.Run)
	for _, p := range a.Pollers {
		run(p.Run)
	}
	for _, r := range a.Redeliverers {
		run(r.Run)
	}
	if a.WriteBack != nil {
		run(a.WriteBack.Run)
	}
	if a.CIGates.Enabled() {
		run(a.CIGates.Run)
	}
	run(a.listen)
	run(a.policyLoop)
	run(a.reloadLoop)
	run(a.Scheduler.Run)
	run(a.doctorLoop)
	if a.Anchorer != nil {
		run(a.Anchorer.Run)
	}
	run(func(ctx context.Context) { a.watchDatabase(ctx, stop) })

	srv := &http.Server{
		Handler:           a.Server,
		ReadHeaderTimeout: a.Config.HTTP.ReadHeaderTimeout.D(),
		ReadTimeout:       a.Config.HTTP.ReadTimeout.D(),
		IdleTimeout:       a.Config.HTTP.IdleTimeout.D(),
		MaxHeaderBytes:    a.Config.HTTP.MaxHeaderBytes,
		// No WriteTimeout: gate checks long-poll up to gate.max_wait.
		ErrorLog: slog.NewLogLogger(a.Log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(a.Gate.Shutdown)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.Log.InfoContext(ctx, "tollgate serving", "addr", ln.Addr().String(), "version", Version, "go", runtime.Version(), "store", a.DB.Dialect())
	if g := OlderGo(runtime.Version()); g != "" {
		a.Log.WarnContext(ctx, "built with a Go older than tollgate's toolchain: "+OlderGoAdvice, "go", g, "toolchain", Toolchain)
	}

	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		a.drain(srv, errc)
		a.Log.Info("shutting down: draining in-flight requests", "timeout", a.Config.ShutdownTimeout.D())
		sctx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout.D())
		err = srv.Shutdown(sctx)
		cancel()
	}
	stopBG()
	wg.Wait()
	a.forgetReplica()
	a.closeOutbound()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if cause := context.Cause(ctx); err == nil && errors.Is(cause, store.ErrSchemaTooNew) {
		err = cause
	}
	return err
}

// closeOutbound closes the outbound clients' idle connections once the
// background work that used them has stopped, so that no connection (nor
// its two goroutines) outlives Serve.
func (a *App) closeOutbound() {
	for _, c := range a.APIs {
		c.CloseIdleConnections()
	}
	for _, c := range a.conns {
		if ci, ok := c.Webhook.(interface{ CloseIdleConnections() }); ok {
			ci.CloseIdleConnections()
		}
	}
}

// drain keeps serving for shutdown_delay while /readyz answers 503 and
// every answer closes its connection, so that a load balancer takes the
// replica out of rotation and its clients reconnect elsewhere before the
// listener closes: a rolling restart then refuses no request.
func (a *App) drain(srv *http.Server, errc <-chan error) {
	d := a.Config.ShutdownDelay.D()
	if d <= 0 {
		return
	}
	a.draining.Store(true)
	srv.SetKeepAlivesEnabled(false)
	a.Log.Info("shutting down: not ready, still serving", "shutdown_delay", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case err := <-errc: // the server stopped by itself meanwhile
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.Log.Error("server stopped while draining", "error", err.Error())
		}
	}
}

// listen forwards database notifications (other replicas' updates) to the
// gate's waiters and reloads the policy when it changed.
func (a *App) listen(ctx context.Context) {
	sub, cancel := a.DB.Subscribe()
	defer cancel()
	go func() {
		if err := a.DB.Listen(ctx); err != nil && ctx.Err() == nil {
			a.Log.Error("notification listener stopped", "error", err.Error())
		}
	}()
	a.DB.AnnounceStart()
	for {
		select {
		case <-ctx.Done():
			return
		case topic := <-sub:
			if topic == "policy" || topic == "*" {
				if err := a.Policies.Reload(ctx); err != nil {
					a.Log.Warn("policy reload failed", "error", err.Error())
				}
			}
		}
	}
}

// defaultPolicyEvery bounds how long a replica can go on judging checks
// by an older policy than the one stored: a new version's notification
// normally puts it in force at once, but one can be lost — the writing
// replica killed between its commit and the send, the reload it started
// failing, or the listener's queue full — and a policy switched to
// enforce, or given a freeze, must not wait for a restart.
const defaultPolicyEvery = 10 * time.Second

// policyLoop reads, every policyEvery, which policy version is stored and
// puts a newer one in force. A failing read is said once, and its end.
func (a *App) policyLoop(ctx context.Context) {
	failing := false
	every(ctx, a.policyEvery, func() {
		err := a.Policies.Reload(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			a.Log.Warn("policy recheck failed; the policy in force stays until a read succeeds", "error", err.Error())
		case err == nil && failing:
			a.Log.Info("policy recheck succeeds again")
		}
		failing = err != nil
	})
}

// reloadLoop picks up mapping changes made on other replicas.
func (a *App) reloadLoop(ctx context.Context) {
	every(ctx, 30*time.Second, func() {
		if err := a.Mappings.Reload(ctx); err != nil {
			a.Log.Warn("mapping reload failed", "error", err.Error())
		}
	})
}

// every calls fn every d (the first time d from now) until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// Close releases the store.
func (a *App) Close() error { return a.DB.Close() }

// uiAuthFailures hands the UI the limit, or no limit (a nil interface,
// not a nil pointer in one) when it is off.
// uiRefused counts and logs a refusal of the web UI as the API server
// does its own (the server is built after the UI, and serves before the
// UI's first request).
func (a *App) uiRefused(c *echo.Context, reason, tokenID string) {
	a.Server.AuthRefused(c, reason, tokenID)
}

func (a *App) uiLimitToken(c *echo.Context, tokenID string) error {
	return a.Server.LimitToken(c, tokenID)
}

func uiAuthFailures(l *api.AuthFailureLimit) ui.AuthFailures {
	if l == nil {
		return nil
	}
	return l
}
