package app_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/app"
	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/migrations"
	"github.com/tollgate-dev/tollgate/store"
)

// replica is one app serving on a loopback port whose Serve's error the
// test reads (the harness's serve fails the test on one).
type replica struct {
	url  string
	app  *app.App
	done chan struct{} // closed when Serve returned, with err
	err  error
}

func startReplica(t *testing.T, cfg *config.Config, log *slog.Logger, every time.Duration) *replica {
	t.Helper()
	return startReplicaWith(t, cfg, log, app.Options{SchemaEvery: every})
}

func startReplicaWith(t *testing.T, cfg *config.Config, log *slog.Logger, opts app.Options) *replica {
	t.Helper()
	ctx, cancel, a, ln := newApp(t, cfg, log, opts)
	r := &replica{url: "http://" + ln.Addr().String(), app: a, done: make(chan struct{})}
	go func() { r.err = a.Serve(ctx, ln); a.Close(); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			t.Error("a replica did not stop")
		}
	})
	return r
}

func (r *replica) ready(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get(r.url + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestSchemaFloorStopsOlderReplicas: a newer tollgate migrates the schema
// while older replicas run. Where its migrations are additive the older
// ones keep serving, saying once that they should be upgraded, and the
// doctor warns; where they are not (the schema's floor above what the
// older build knows) an older replica turns unready, stops its background
// work and exits with the reason, a new one refuses to start, and the
// doctor fails the schema — a binary rolled back past a migration it
// cannot read is refused the same way.
func TestSchemaFloorStopsOlderReplicas(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			url := newDatabase(t, dialect)
			cfg := replicaConfig(t, url, "")
			logs := &lockedBuffer{}
			log := slog.New(slog.NewJSONHandler(logs, nil))
			watching := startReplica(t, cfg, log, 50*time.Millisecond)
			idle := startReplica(t, cfg, log, time.Hour) // checks only at start: readiness alone
			for _, r := range []*replica{watching, idle} {
				if st, body := r.ready(t); st != http.StatusOK {
					t.Fatalf("readyz at start: %d %s", st, body)
				}
			}
			db := openRaw(t, dialect, url)
			vs, err := migrations.Versions()
			if err != nil {
				t.Fatal(err)
			}
			known := vs[len(vs)-1]
			exec := func(q string, args ...any) {
				t.Helper()
				if _, err := db.ExecContext(ctx, db.Rebind(q), args...); err != nil {
					t.Fatal(err)
				}
			}

			// A newer build's additive migration.
			exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, ?)`, known+1, true)
			again := startReplica(t, cfg, log, time.Hour)
			if st, body := again.ready(t); st != http.StatusOK {
				t.Fatalf("readyz against an additive migration ahead: %d %s", st, body)
			}
			waitLog(t, logs, "a newer tollgate migrated the schema")
			if f := doctorFinding(t, cfg, nil, "schema"); f.Status != connectors.StatusWarn || !strings.Contains(f.Detail, "newer than this tollgate knows") {
				t.Errorf("doctor against an additive migration ahead: %+v", f)
			}

			// One the older build cannot run against.
			exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, ?)`, known+2, true)
			exec(`UPDATE schema_floor SET oldest_reader = ?`, known+2)
			select {
			case <-watching.done:
				if err := watching.err; !errors.Is(err, store.ErrSchemaTooNew) || !strings.Contains(err.Error(), "upgrade it") {
					t.Errorf("the watching replica stopped with %v, want the schema's reason", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("a replica older than the schema's floor still runs")
			}
			waitLog(t, logs, "stopping: the database is at migration")
			if st, body := idle.ready(t); st != http.StatusServiceUnavailable || !strings.Contains(body, "needs a tollgate that knows migration") {
				t.Errorf("readyz on an older replica: %d %s, want 503 saying why", st, body)
			}
			if _, err := app.New(ctx, cfg, log, app.Options{}); !errors.Is(err, store.ErrSchemaTooNew) {
				t.Errorf("an older build starting: %v, want it refused", err)
			}
			if f := doctorFinding(t, cfg, nil, "schema"); f.Status != connectors.StatusFail || !strings.Contains(f.Detail, "upgrade it") {
				t.Errorf("doctor against a floor above this build: %+v", f)
			}
			var floor int64
			if err := db.GetContext(ctx, &floor, `SELECT oldest_reader FROM schema_floor`); err != nil || floor != known+2 {
				t.Errorf("the floor is %d (%v) after an older build tried to start: it must not be lowered", floor, err)
			}
		})
	}
}

// TestClockSkew: a replica whose clock is off from the database server's
// exports how far (tollgate_clock_skew_seconds), says so in its log, and
// the doctor warns past a second and fails past a minute.
func TestClockSkew(t *testing.T) {
	ctx := context.Background()
	url := newDatabase(t, "postgres")
	cfg := replicaConfig(t, url, "")
	ahead := func(d time.Duration) core.Clock { return core.ClockFunc(func() time.Time { return time.Now().Add(d) }) }
	logs := &lockedBuffer{}
	r := startReplicaWith(t, cfg, slog.New(slog.NewJSONHandler(logs, nil)), app.Options{Clock: ahead(2 * time.Minute), SchemaEvery: time.Hour})
	waitLog(t, logs, "this host's clock is off from the database's")
	resp, err := http.Get(r.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^tollgate_clock_skew_seconds (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatal("no tollgate_clock_skew_seconds in /metrics")
	}
	if v, err := strconv.ParseFloat(string(m[1]), 64); err != nil || v > -119 || v < -121 {
		t.Errorf("tollgate_clock_skew_seconds %s, want about -120 (the database 2 minutes behind this replica)", m[1])
	}
	for _, tt := range []struct {
		off  time.Duration
		want connectors.Status
	}{{0, connectors.StatusOK}, {3 * time.Second, connectors.StatusWarn}, {-2 * time.Minute, connectors.StatusFail}} {
		db, err := store.Open(ctx, url, store.Options{Clock: ahead(tt.off), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		clock := doctorFinding(t, cfg, db, "clock")
		db.Close()
		if clock.Status != tt.want {
			t.Errorf("a clock %v off: the doctor's clock finding %+v, want %s", tt.off, clock, tt.want)
		}
	}
}

// openRaw opens the test's database beside tollgate, as another tool would.
func openRaw(t *testing.T, dialect, url string) *sqlx.DB {
	t.Helper()
	driver, dsn := "postgres", url
	if dialect == "sqlite" {
		driver, dsn = "sqlite", strings.TrimPrefix(url, "sqlite:")+"?_pragma=busy_timeout(5000)"
	}
	db, err := sqlx.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// replicaConfig is the e2e configuration (and extra) on the database at
// url, with the admin token.
func replicaConfig(t *testing.T, url, extra string) *config.Config {
	t.Helper()
	env := map[string]string{"TOLLGATE_ADMIN_TOKEN": adminSecret, "TOLLGATE_DATABASE_URL": url}
	cfg, err := config.Parse([]byte(e2eConfig+extra), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.ShutdownTimeout = testShutdownTimeout
	return cfg
}

// doctorFinding runs the doctor (on db when set, else the configured
// database) and returns its database section's finding of check.
func doctorFinding(t *testing.T, cfg *config.Config, db *store.DB, check string) connectors.Finding {
	t.Helper()
	for _, s := range app.Doctor(context.Background(), cfg, slog.New(slog.DiscardHandler), app.DoctorOptions{DB: db}) {
		if s.Scope != "database" {
			continue
		}
		for _, f := range s.Findings {
			if f.Check == check {
				return f
			}
		}
	}
	t.Fatalf("the doctor checked no %s", check)
	return connectors.Finding{}
}

func waitLog(t *testing.T, logs *lockedBuffer, msg string) {
	t.Helper()
	eventually(t, "the log line "+msg, func() bool { return strings.Contains(logs.String(), msg) })
}

// TestReplicasListed: each replica records itself as it starts — its
// build, the newest migration it knows, its clock's skew — and GET
// /api/v1/replicas (admin) lists them; one stopped gracefully is gone;
// the doctor says how many run and warns when they run different builds.
func TestReplicasListed(t *testing.T) {
	url := testpg.NewMigratedDatabase(t)
	a := bootURL(t, url, e2eConfig)
	b := bootURL(t, url, e2eConfig)
	vs, err := migrations.Versions()
	if err != nil {
		t.Fatal(err)
	}
	type replica struct {
		ID          string
		Version     string
		SchemaKnown int64  `json:"schema_known"`
		ClockSkewMS *int64 `json:"clock_skew_ms"`
		Live        bool
	}
	list := func() []replica {
		t.Helper()
		var out struct{ Items []replica }
		if st := a.do("GET", "/api/v1/replicas", adminSecret, nil, &out); st != http.StatusOK {
			t.Fatalf("GET /api/v1/replicas: %d", st)
		}
		return out.Items
	}
	var got []replica
	a.waitFor("both replicas recorded", func() bool { got = list(); return len(got) == 2 })
	for _, r := range got {
		if !r.Live || r.Version != app.Version || r.SchemaKnown != vs[len(vs)-1] || r.ClockSkewMS == nil || r.ID == "" {
			t.Errorf("replica %+v", r)
		}
	}
	auditor, _ := a.token(core.RoleAuditor)
	if st := a.do("GET", "/api/v1/replicas", auditor, nil, nil); st != http.StatusForbidden {
		t.Errorf("an auditor: %d, want 403", st)
	}
	cfg := replicaConfig(t, url, "")
	finding := func() connectors.Finding { return doctorFinding(t, cfg, nil, "replicas") }
	if f := finding(); f.Status != connectors.StatusOK || !strings.HasPrefix(f.Detail, "2 running, all "+app.Version) {
		t.Errorf("doctor: %+v, want 2 running", f)
	}
	b.stop()
	if got := list(); len(got) != 1 {
		t.Errorf("after a graceful stop: %+v, want one", got)
	}
	db := openRaw(t, "postgres", url)
	if _, err := db.Exec(`INSERT INTO replicas (id, version, schema_known, started_at, seen_at) VALUES ('old-host/1/aa', 'v0.0.1', 28, now(), now())`); err != nil {
		t.Fatal(err)
	}
	if f := finding(); f.Status != connectors.StatusWarn || !strings.Contains(f.Detail, "v0.0.1 (migration 28): old-host/1/aa") {
		t.Errorf("doctor with an older replica running: %+v, want a warning naming it", f)
	}
}

// TestMaxClockSkew: with gate.max_clock_skew, a replica whose clock is
// further than that from the database server's refuses gate checks (503,
// nothing recorded) and answers /readyz 503 saying why; once its clock
// agrees again (the next check of it), it answers both.
func TestMaxClockSkew(t *testing.T) {
	url := newDatabase(t, "postgres")
	cfg := replicaConfig(t, url, "gate: {max_clock_skew: 1m}\n")
	var offset atomic.Int64
	offset.Store(int64(2 * time.Minute))
	clock := core.ClockFunc(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	r := startReplicaWith(t, cfg, slog.New(slog.DiscardHandler), app.Options{Clock: clock, SchemaEvery: 50 * time.Millisecond})
	check := func() (int, string) {
		req, _ := http.NewRequest("POST", r.url+"/api/v1/gate/check", strings.NewReader(`{"service":"payments-api","environment":"staging","version":"1.0.0"}`))
		req.Header.Set("Authorization", "Bearer "+adminSecret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually(t, "readyz 503 with the clock 2 minutes off", func() bool {
		st, body := r.ready(t)
		return st == http.StatusServiceUnavailable && strings.Contains(body, "gate.max_clock_skew")
	})
	if st, body := check(); st != http.StatusServiceUnavailable || !strings.Contains(body, "does not judge change windows") {
		t.Errorf("a gate check with the clock 2 minutes off: %d %s, want 503 saying why", st, body)
	}
	// Leases expire by the reading replica's clock: one this far off
	// takes none (pollers, reports), so it neither steals them early nor
	// writes ones the others take as expired.
	ctx := context.Background()
	if held, err := r.app.DB.AcquireLease(ctx, "probe", "skewed", time.Minute); err != nil || held {
		t.Errorf("a lease taken with the clock 2 minutes off: %v %v", held, err)
	}
	offset.Store(0)
	eventually(t, "readyz back once the clock agrees", func() bool { st, _ := r.ready(t); return st == http.StatusOK })
	if st, body := check(); st != http.StatusOK {
		t.Errorf("a gate check once the clock agrees: %d %s", st, body)
	}
	if held, err := r.app.DB.AcquireLease(ctx, "probe", "skewed", time.Minute); err != nil || !held {
		t.Errorf("no lease once the clock agrees: %v %v", held, err)
	}
}
