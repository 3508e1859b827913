package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/config/mappings"
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/all"
	"github.com/tollgate-dev/tollgate/connectors/github"
	"github.com/tollgate-dev/tollgate/connectors/gitlab"
	"github.com/tollgate-dev/tollgate/connectors/jenkins"
	"github.com/tollgate-dev/tollgate/connectors/jira"
	"github.com/tollgate-dev/tollgate/connectors/servicenow"
	"github.com/tollgate-dev/tollgate/mapping"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// preflighter is a connector side that can check itself against its live
// system: the CI webhooks with an API (GitHub App, GitLab, Jenkins) and
// the ITSM API clients (ServiceNow, Jira).
type preflighter interface {
	Preflight(ctx context.Context, in connectors.PreflightInput) []connectors.Finding
}

// Every connector side with an API checks itself; a renamed method would
// silently drop it from the doctor, so these keep it in.
var (
	_ preflighter = (*github.Webhook)(nil)
	_ preflighter = (*gitlab.Webhook)(nil)
	_ preflighter = (*jenkins.Webhook)(nil)
	_ preflighter = (*servicenow.Client)(nil)
	_ preflighter = (*jira.Client)(nil)
)

// DoctorSection is what the doctor found about one thing it checked: the
// database, or one connector.
type DoctorSection = connectors.Section

// DoctorOptions tune the doctor.
type DoctorOptions struct {
	// Timeout bounds each connector's checks (default 30s).
	Timeout time.Duration
	// Retry, when set, replaces the ITSM clients' retry defaults (tests).
	Retry *connectors.RetryPolicy
	// DB, when set, is the open store to check (a serving app's); else
	// the configured one is opened, and closed after.
	DB *store.DB
	// Connectors, when set, limits the connectors checked to those named.
	Connectors []string
}

// Doctor checks a configuration against the systems it names, reading
// only: the database (reachable, schema current) and each connector with
// an API (its credentials, what they may read, and whether the CI's or
// ITSM's webhooks point at it and send what its mapping profiles read).
// Nothing is migrated, written or sent to any system.
func Doctor(ctx context.Context, cfg *config.Config, log *slog.Logger, o DoctorOptions) []DoctorSection {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	dbSection, db, current := doctorDatabase(ctx, cfg, o.DB, log)
	if db != nil && o.DB == nil {
		defer db.Close()
	}
	out := []DoctorSection{dbSection}
	stored := db
	if !current {
		stored = nil // no profiles stored yet, or not where this build reads them
	}
	set, err := doctorMappings(ctx, cfg, stored, log)
	if err != nil {
		out = append(out, DoctorSection{Scope: "mappings", Findings: []connectors.Finding{
			connectors.Fail("profiles", err.Error()),
		}})
	}
	conns, err := buildConnectors(cfg)
	if err != nil {
		out = append(out, DoctorSection{Scope: "configuration", Findings: []connectors.Finding{
			connectors.Fail("connectors", err.Error()),
		}})
	}
	if trust := connectors.TrustFindings(connectorConfigs(conns)); len(trust) > 0 {
		out = append(out, DoctorSection{Scope: "configuration", Findings: trust})
	}
	out = append(out, doctorAudit(ctx, cfg, stored))
	if len(o.Connectors) > 0 {
		conns = slices.DeleteFunc(conns, func(c service.Connector) bool { return !slices.Contains(o.Connectors, c.Config.Name) })
		for _, name := range o.Connectors {
			if !slices.ContainsFunc(conns, func(c service.Connector) bool { return c.Config.Name == name }) {
				out = append(out, DoctorSection{Scope: "connector " + name, Findings: []connectors.Finding{
					connectors.Fail("configuration", "no connector of that name in the configuration"),
				}})
			}
		}
	}
	sections := make([]DoctorSection, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, o.Timeout)
			defer cancel()
			sections[i] = doctorConnector(cctx, c, set, log, o.Retry)
		})
	}
	wg.Wait()
	return append(out, sections...)
}

func connectorConfigs(conns []service.Connector) []connectors.Config {
	out := make([]connectors.Config, len(conns))
	for i, c := range conns {
		out[i] = c.Config
	}
	return out
}

// doctorDatabase opens the configured store without migrating it and says
// whether it answers and whether its schema is current.
func doctorDatabase(ctx context.Context, cfg *config.Config, open *store.DB, log *slog.Logger) (s DoctorSection, db *store.DB, current bool) {
	s = DoctorSection{Scope: "database"}
	db = open
	if path, ok := missingSQLite(cfg.DatabaseURL); db == nil && ok {
		// Opening it would create it: the doctor writes nothing.
		s.Type = store.SQLite
		s.Findings = append(s.Findings, connectors.Warn("reachable", "no embedded store at "+path+" yet: serve creates it when it first starts"))
		return s, nil, false
	}
	if db == nil {
		var err error
		if db, err = store.Open(ctx, cfg.DatabaseURL, store.Options{Logger: log}); err != nil {
			s.Findings = append(s.Findings, connectors.Fail("reachable", err.Error()))
			return s, nil, false
		}
	}
	s.Type = db.Dialect()
	if err := db.Ping(ctx); err != nil {
		s.Findings = append(s.Findings, connectors.Fail("reachable", err.Error()))
		if open == nil {
			db.Close()
		}
		return s, nil, false
	}
	s.Findings = append(s.Findings, connectors.OK("reachable", config.MaskDatabaseURL(orEmbedded(cfg.DatabaseURL))))
	switch st, err := db.Schema(ctx); {
	case err != nil:
		s.Findings = append(s.Findings, connectors.Fail("schema", "cannot read the migration status: "+err.Error()))
	case st.Err() != nil:
		s.Findings = append(s.Findings, connectors.Fail("schema", st.Err().Error()))
	case st.Pending > 0:
		s.Findings = append(s.Findings, connectors.Warn("schema",
			fmt.Sprintf("%d migrations not applied: serve applies them when it starts (or run tollgate migrate first)", st.Pending)))
	case st.Ahead():
		s.Findings = append(s.Findings, connectors.Warn("schema",
			fmt.Sprintf("the database is at migration %d, newer than this tollgate knows (%d): a newer one migrated it; this one can still run against it, but upgrade it", st.Applied, st.Known)))
		current = true
	default:
		s.Findings = append(s.Findings, connectors.OK("schema", fmt.Sprintf("every migration applied (%d)", st.Applied)))
		current = true
	}
	if f, ok := doctorClock(ctx, db); ok {
		s.Findings = append(s.Findings, f)
	}
	if current {
		s.Findings = append(s.Findings, doctorReplicas(ctx, db))
	}
	return s, db, current
}

// doctorReplicas says which replicas run on the database: a warning when
// the live ones run different builds (an upgrade under way, or a replica
// left behind) or one's clock is off from the database server's.
func doctorReplicas(ctx context.Context, db *store.DB) connectors.Finding {
	reps, err := db.Replicas(ctx, ReplicaLive)
	if err != nil {
		return connectors.Warn("replicas", "cannot list the replicas: "+err.Error())
	}
	builds := map[string][]string{}
	var order, skewed []string
	for _, r := range reps {
		if !r.Live {
			continue
		}
		b := fmt.Sprintf("%s (migration %d)", r.Version, r.SchemaKnown)
		if builds[b] == nil {
			order = append(order, b)
		}
		builds[b] = append(builds[b], r.ID)
		if r.ClockSkewMS != nil && (time.Duration(*r.ClockSkewMS)*time.Millisecond).Abs() > clockSkewWarn {
			skewed = append(skewed, fmt.Sprintf("%s's clock is %d ms from the database server's", r.ID, *r.ClockSkewMS))
		}
	}
	switch {
	case len(order) == 0:
		return connectors.OK("replicas", "none running")
	case len(order) > 1:
		var parts []string
		for _, b := range order {
			parts = append(parts, b+": "+strings.Join(builds[b], ", "))
		}
		return connectors.Warn("replicas", "the replicas run different builds — "+strings.Join(parts, "; ")+
			": an upgrade under way, or a replica left on the older build (GET /api/v1/replicas)")
	case len(skewed) > 0:
		return connectors.Warn("replicas", strings.Join(skewed, "; ")+": synchronise their clocks (NTP)")
	}
	return connectors.OK("replicas", fmt.Sprintf("%d running, all %s", len(builds[order[0]]), order[0]))
}

// clockSkewFail is the distance from the database's clock past which the
// doctor fails the clock: a change window would open or close for this
// host that long before or after it does for the others.
const clockSkewFail = time.Minute

// doctorClock compares this host's clock with the database server's
// (PostgreSQL; ok false on SQLite, whose clock is this host's).
func doctorClock(ctx context.Context, db *store.DB) (connectors.Finding, bool) {
	skew, ok, err := db.ClockSkew(ctx)
	switch {
	case err != nil:
		return connectors.Warn("clock", "cannot read the database's clock: "+err.Error()), true
	case !ok:
		return connectors.Finding{}, false
	}
	d := skew.Round(time.Millisecond).String()
	switch a := skew.Abs(); {
	case a > clockSkewFail:
		return connectors.Fail("clock", "this host's clock is "+d+" from the database server's: change windows and freezes open and close that far off on this replica; synchronise its clock (NTP)"), true
	case a > clockSkewWarn:
		return connectors.Warn("clock", "this host's clock is "+d+" from the database server's: change windows and freezes are judged by it; synchronise it (NTP)"), true
	}
	return connectors.OK("clock", "within "+d+" of the database server's"), true
}

// missingSQLite reports whether url names an embedded store whose file
// does not exist yet, and its path.
func missingSQLite(url string) (string, bool) {
	if url != "" && !strings.HasPrefix(url, "sqlite:") {
		return "", false
	}
	path, _, err := sqldb.SQLiteOptions(url)
	if err != nil {
		return "", false // Open says what is wrong with it
	}
	_, err = os.Stat(path)
	return path, errors.Is(err, fs.ErrNotExist)
}

func orEmbedded(url string) string {
	if url == "" {
		return "the embedded store (no database_url)"
	}
	return url
}

// doctorMappings loads the mapping profiles the server would use: the
// built-in ones, mappings_dir's, and those admins stored in db (nil: a
// database not reached or not yet migrated holds none to read).
func doctorMappings(ctx context.Context, cfg *config.Config, db *store.DB, log *slog.Logger) (*mapping.Set, error) {
	sources := []fs.FS{mappings.FS}
	if cfg.MappingsDir != "" {
		sources = append(sources, os.DirFS(cfg.MappingsDir))
	}
	var ms *service.Mappings
	var err error
	if db != nil {
		ms, err = service.NewMappings(db, log, sources...)
	} else {
		ms, err = service.NewMappings(nil, log, sources...)
	}
	if err != nil {
		return mapping.NewSet(), err
	}
	if db != nil {
		if err := ms.Reload(ctx); err != nil {
			return ms.Set(), fmt.Errorf("the profiles stored in the database: %w", err)
		}
	}
	return ms.Set(), nil
}

// doctorConnector runs one connector's preflight: its CI webhook's, or its
// ITSM API client's.
func doctorConnector(ctx context.Context, c service.Connector, set *mapping.Set, log *slog.Logger, retry *connectors.RetryPolicy) DoctorSection {
	cfg := c.Config
	s := DoctorSection{Scope: "connector " + cfg.Name, Type: cfg.Type}
	if cfg.API == nil {
		s.Findings = []connectors.Finding{connectors.OK("api",
			"no api block: webhooks only, nothing to check at "+cfg.Type)}
		return s
	}
	in := connectors.PreflightInput{Name: cfg.Name, Events: consumedEvents(cfg, set)}
	if cl, ok := c.Webhook.(interface{ CloseIdleConnections() }); ok {
		defer cl.CloseIdleConnections() // the doctor's own client: nothing reuses it
	}
	p, ok := c.Webhook.(preflighter)
	if !ok {
		client, err := all.NewAPI(cfg, connectors.APIHooks{Retry: retry}, log)
		if err != nil {
			s.Findings = []connectors.Finding{connectors.Fail("api", err.Error())}
			return s
		}
		defer client.CloseIdleConnections()
		if p, ok = client.(preflighter); !ok {
			s.Findings = []connectors.Finding{connectors.OK("api", "nothing to check at "+cfg.Type)}
			return s
		}
	}
	s.Findings = p.Preflight(ctx, in)
	if ctx.Err() != nil {
		s.Findings = append(s.Findings, connectors.Fail("time", "the checks did not finish in time: "+ctx.Err().Error()))
	}
	return s
}

// consumedEvents lists the event types a connector's mapping profiles read
// (those it names, else every profile of its type) and its CI gate waits
// for.
func consumedEvents(cfg connectors.Config, set *mapping.Set) []string {
	var out []string
	add := func(e string) {
		if !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, e) }) {
			out = append(out, e)
		}
	}
	for _, p := range set.Profiles() {
		m := p.Profile().Match
		if len(cfg.Mappings) > 0 && !slices.Contains(cfg.Mappings, p.Name()) {
			continue
		}
		if m.ConnectorType != "" && m.ConnectorType != cfg.Type {
			continue
		}
		if p.WholeRun() && strings.TrimSpace(cfg.DefaultEnvironment) == "" {
			continue // ignored without a default environment (service.wholeRunUnplaced)
		}
		for _, e := range m.EventTypes {
			add(e)
		}
	}
	if cfg.CIGate != nil {
		switch cfg.Type {
		case github.Type:
			add("deployment_protection_rule")
		case gitlab.Type:
			add("Deployment Hook")
		}
	}
	slices.Sort(out)
	return out
}

// CheckConnectors runs the doctor's checks from the serving app (GET
// /api/v1/doctor) on its own store, one run at a time: a request that
// arrives during a run gets that run's findings.
func (a *App) CheckConnectors(ctx context.Context) []connectors.Section {
	a.doctorRuns.Lock()
	defer a.doctorRuns.Unlock()
	if time.Since(a.doctorAt) < doctorReuse && a.doctorLast != nil {
		return a.doctorLast
	}
	out := Doctor(ctx, a.Config, a.Log, DoctorOptions{DB: a.DB})
	a.doctorLast, a.doctorAt = out, time.Now()
	return out
}

// doctorReuse is how long a run's findings answer the requests after it:
// the checks call every connector's system, and a page reloaded or a
// script looping must not multiply those calls.
const doctorReuse = 10 * time.Second

// doctorLoop runs the doctor's checks every interval (the first an
// interval after start) and exports what did not pass, so that a
// credential about to expire, a webhook someone disabled or a read right
// taken away is alerted on before a deploy meets it.
func (a *App) doctorLoop(ctx context.Context) {
	if d := a.Config.DoctorEvery(); d > 0 {
		every(ctx, d, func() { a.RunDoctor(ctx) })
	}
}

// RunDoctor runs the doctor's checks once, exports each finding that did
// not pass in tollgate_doctor_findings (replacing the last run's) and logs
// each, a warn as a warning and a fail as an error.
func (a *App) RunDoctor(ctx context.Context) []connectors.Section {
	a.doctorRuns.Lock()
	out := Doctor(ctx, a.Config, a.Log, DoctorOptions{DB: a.DB})
	a.doctorLast, a.doctorAt = out, time.Now()
	a.doctorRuns.Unlock()
	if ctx.Err() != nil {
		return out
	}
	a.Metrics.DoctorFindings.Reset()
	for _, s := range out {
		for _, f := range s.Findings {
			if f.Status == connectors.StatusOK {
				continue
			}
			a.Metrics.DoctorFindings.WithLabelValues(s.Scope, f.Check, string(f.Status)).Set(1)
			level := slog.LevelWarn
			if f.Status == connectors.StatusFail {
				level = slog.LevelError
			}
			a.Log.Log(ctx, level, "doctor: "+s.Scope+": "+f.Check+" "+string(f.Status), "detail", f.Detail)
		}
	}
	a.Metrics.DoctorRun.SetToCurrentTime()
	return out
}
