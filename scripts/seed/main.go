// Command seed fills a fresh tollgate PostgreSQL database with a large,
// realistic canonical model, for load runs and query plans at the size the
// gate must serve (issue 4: 1M deployments, 200k changes, 50k incidents).
//
// It opens the store and migrates it (so the schema is exactly the
// product's), refuses a database that already holds changes, then builds
// every table with INSERT … SELECT generate_series on the server — no
// row-by-row traffic — and ends with VACUUM (ANALYZE), so that autovacuum does not start on the
// fresh tables during a load run. The documents are the JSON
// that core.Change and core.Incident encode (the store keeps them as jsonb,
// so key order is irrelevant; times are RFC 3339 UTC at whole seconds).
//
// The data is deterministic given the sizes and the run's start time:
//
//   - services svc-000 … (-services), each owned by team-NN (-teams);
//   - changes CHG0000001 …: the newest quarter are current (planned window
//     open now), of which 85% are approved and scheduled, the rest
//     requested, rejected or not requested; the older ones are closed.
//     Each has 1–3 versions in change_versions (new → requested → final);
//   - incidents INC0000001 …: one in 250 active (~200 of 50k), one in 5000
//     major (P1), four active global ones (no services, not major); the
//     others resolved or closed, with an open and a final version;
//   - releases (~10 deployments each), PIRs for one release in 20, pending
//     only for the last 10 teams (so most gate checks are not held by a PIR).
//
// Usage:
//
//	go run ./scripts/seed -db 'postgres://postgres@127.0.0.1:5432/tollgate_load?sslmode=disable'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store"
)

// sizes are the seeded table sizes.
type sizes struct {
	Changes, Incidents, Releases, Deployments, Services, Teams int
	// Profile is "gate" (the gate's load data) or "reconcile" (a history
	// the reconciler accounts for exactly; reconcile.go).
	Profile string
	// Unauthorized is the reconcile profile's share of unauthorized
	// deployments.
	Unauthorized float64
}

func main() {
	var sz sizes
	dbURL := flag.String("db", os.Getenv("TOLLGATE_DATABASE_URL"), "PostgreSQL URL of an empty database (default $TOLLGATE_DATABASE_URL)")
	flag.IntVar(&sz.Changes, "changes", 200_000, "changes")
	flag.IntVar(&sz.Incidents, "incidents", 50_000, "incidents")
	flag.IntVar(&sz.Releases, "releases", 100_000, "releases")
	flag.IntVar(&sz.Deployments, "deployments", 1_000_000, "deployments")
	flag.IntVar(&sz.Services, "services", 500, "services (svc-000 …)")
	flag.IntVar(&sz.Teams, "teams", 100, "teams (team-00 …); each service belongs to one")
	flag.StringVar(&sz.Profile, "profile", "gate", "gate (the gate's load data) or reconcile (an exactly accountable history; see reconcile.go)")
	flag.Float64Var(&sz.Unauthorized, "unauthorized", 0.02, "reconcile profile: share of unauthorized deployments (0–1); the exact count is printed")
	flag.Parse()
	if err := run(context.Background(), *dbURL, sz, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func (s sizes) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"changes", s.Changes}, {"incidents", s.Incidents}, {"releases", s.Releases}, {"deployments", s.Deployments}, {"services", s.Services}, {"teams", s.Teams}} {
		if f.v < 1 {
			return fmt.Errorf("-%s must be at least 1, got %d", f.name, f.v)
		}
	}
	if s.Services > 1000 {
		return fmt.Errorf("-services must be at most 1000 (svc-000 … svc-999), got %d", s.Services)
	}
	if s.Teams > 100 || s.Teams > s.Services {
		return fmt.Errorf("-teams must be at most 100 and at most -services, got %d", s.Teams)
	}
	switch s.Profile {
	case "gate":
	case "reconcile":
		if s.Changes%s.Services != 0 {
			return fmt.Errorf("-profile reconcile: -changes (%d) must be a multiple of -services (%d), so each release's change covers its service", s.Changes, s.Services)
		}
		if s.Unauthorized < 0 || s.Unauthorized > 1 {
			return fmt.Errorf("-unauthorized must be between 0 and 1, got %g", s.Unauthorized)
		}
	default:
		return fmt.Errorf("-profile must be gate or reconcile, got %q", s.Profile)
	}
	if s.Changes < s.Services {
		return fmt.Errorf("-changes must be at least -services (%d), got %d", s.Services, s.Changes)
	}
	return nil
}

func run(ctx context.Context, dbURL string, sz sizes, out io.Writer) error {
	if dbURL == "" || !(strings.HasPrefix(dbURL, "postgres://") || strings.HasPrefix(dbURL, "postgresql://")) {
		return errors.New("-db must be a postgres:// URL (the seed is PostgreSQL only)")
	}
	if err := sz.validate(); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := store.Open(ctx, dbURL, store.Options{Logger: log, MaxOpenConns: 2})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var n int
	if err := db.SQLX().GetContext(ctx, &n, `SELECT count(*) FROM (SELECT 1 FROM changes LIMIT 1) x`); err != nil {
		return fmt.Errorf("check empty: %w", err)
	}
	if n > 0 {
		return errors.New("the database already holds changes: seed a freshly created database")
	}
	conn, err := db.SQLX().Connx(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	// A bulk load: no need to wait for each statement's WAL flush.
	if _, err := conn.ExecContext(ctx, `SET synchronous_commit = off; SET maintenance_work_mem = '256MB'; SET work_mem = '64MB'`); err != nil {
		return fmt.Errorf("session settings: %w", err)
	}
	// Release ids are name-based (core.ReleaseID: UUIDv5 over service,
	// version and environment), computed here by a session function.
	if _, err := conn.ExecContext(ctx, `CREATE EXTENSION IF NOT EXISTS pgcrypto; `+releaseIDFunc); err != nil {
		return fmt.Errorf("release id function (needs the pgcrypto extension): %w", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	started := time.Now()
	seedSteps := steps(sz)
	if sz.Profile == "reconcile" {
		seedSteps = reconcileSteps(sz)
	}
	for _, st := range seedSteps {
		t := time.Now()
		res, err := conn.ExecContext(ctx, st.query(), st.params(now)...)
		if err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
		rows, _ := res.RowsAffected()
		fmt.Fprintf(out, "seed: %-18s %9d rows  %6.1fs\n", st.name, rows, time.Since(t).Seconds())
	}
	var r core.Release
	if err := conn.GetContext(ctx, &r.ID, `SELECT id FROM releases ORDER BY id LIMIT 1`); err != nil {
		return fmt.Errorf("check release ids: %w", err)
	}
	if err := conn.QueryRowxContext(ctx, `SELECT service, version, environment FROM releases WHERE id = $1`, r.ID).Scan(&r.Service, &r.Version, &r.Environment); err != nil {
		return fmt.Errorf("check release ids: %w", err)
	}
	if want := core.ReleaseID(r.Service, r.Version, r.Environment); r.ID != want {
		return fmt.Errorf("release %s %s %s was seeded with id %s, core.ReleaseID says %s", r.Service, r.Version, r.Environment, r.ID, want)
	}
	if sz.Profile == "reconcile" {
		n, err := countUnauthorized(ctx, conn, sz.Unauthorized)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "seed: unauthorized deployments: %d of %d (share %g)\n", n, sz.Deployments, sz.Unauthorized)
	}
	fmt.Fprintf(out, "seed: done in %.1fs (as of %s)\n", time.Since(started).Seconds(), now.Format(time.RFC3339))
	return nil
}

// step is one seeding statement. $1, when used, is the run's "now"; $2 …
// are the sizes in ints, written into the statement as literals (so the
// planner sees them and no parameter type is ambiguous).
type step struct {
	name string
	sql  string
	ints []int
}

// query returns the statement with the sizes filled in.
func (s step) query() string {
	q := s.sql
	for i := len(s.ints) - 1; i >= 0; i-- {
		q = strings.ReplaceAll(q, "$"+strconv.Itoa(i+2), strconv.Itoa(s.ints[i]))
	}
	return strings.ReplaceAll(q, "$1", "$1::timestamptz")
}

// params returns the statement's parameters: now, when it uses it.
func (s step) params(now time.Time) []any {
	if strings.Contains(s.sql, "$1") {
		return []any{now}
	}
	return nil
}

// js renders a timestamptz SQL expression as Go's JSON time (RFC 3339, UTC,
// whole seconds).
func js(expr string) string {
	return `to_char((` + expr + `) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`
}

// svc renders the service name of a service index expression.
// releaseIDFunc defines core.ReleaseID in SQL for this session: SHA-1 of
// the namespace and "service\x00version\x00environment", version and
// variant bits set, formatted 8-4-4-4-12.
const releaseIDFunc = `CREATE FUNCTION pg_temp.release_id(s text, v text, e text) RETURNS text LANGUAGE sql IMMUTABLE AS $f$
SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-5' || substr(h, 14, 3) || '-'
    || substr('89ab', (('x' || substr(h, 17, 1))::bit(4)::int & 3) + 1, 1) || substr(h, 18, 3) || '-' || substr(h, 21, 12)
FROM (SELECT encode(digest('\x6b1d3c0e5a774f2b9e410c8d2f63a410'::bytea || convert_to(s, 'UTF8') || '\x00'::bytea
    || convert_to(v, 'UTF8') || '\x00'::bytea || convert_to(e, 'UTF8'), 'sha1'), 'hex') AS h) x
$f$`

func svc(expr string) string { return `'svc-' || lpad((` + expr + `)::text, 3, '0')` }

// team renders the team name of a team index expression.
func team(expr string) string { return `'team-' || lpad((` + expr + `)::text, 2, '0')` }

// key renders a record key: prefix and a 7-digit number.
func key(prefix, expr string) string { return `'` + prefix + `' || lpad((` + expr + `)::text, 7, '0')` }

func steps(sz sizes) []step {
	// The newest quarter of the changes is current: its planned window is
	// open now. $2 changes, $3 services, $4 first current change.
	current := sz.Changes - sz.Changes/4 + 1
	changes := `
INSERT INTO changes (key, source, version, type, state, approval, doc, source_updated_at, updated_at)
SELECT key, 'servicenow', 1 + g % 3, type, state, approval,
       jsonb_strip_nulls(jsonb_build_object(
         'source', 'servicenow', 'key', key, 'title', 'Deploy ' || svc || ' change ' || g,
         'type', type, 'state', state, 'approval', approval,
         'approvals', CASE approval
             WHEN 'approved' THEN CASE WHEN g % 10 = 0
                 THEN jsonb_build_array(jsonb_build_object('approver', approver, 'decision', 'approved', 'at', ` + js("upd") + `),
                                        jsonb_build_object('approver', 'cab-' || ((g + 1) % 37), 'decision', 'approved', 'at', ` + js("upd") + `))
                 ELSE jsonb_build_array(jsonb_build_object('approver', approver, 'decision', 'approved', 'at', ` + js("upd") + `)) END
             WHEN 'rejected' THEN jsonb_build_array(jsonb_build_object('approver', approver, 'decision', 'rejected', 'at', ` + js("upd") + `, 'comment', 'backout plan untested'))
             WHEN 'requested' THEN jsonb_build_array(jsonb_build_object('approver', approver, 'decision', 'requested'))
           END,
         'risk', (ARRAY['low', 'moderate', 'high'])[1 + (g / 3) % 3],
         'planned_start', ` + js("ps") + `, 'planned_end', ` + js("pe") + `,
         'services', CASE WHEN g % 4 = 0 THEN jsonb_build_array(svc, ` + svc("(g + 1) % $3") + `) ELSE jsonb_build_array(svc) END,
         'requested_by', CASE WHEN g % 100 = 7 THEN approver ELSE 'dev-' || (g % 211) END,
         'has_risk_assessment', g % 50 <> 5, 'has_backout_plan', g % 50 <> 6,
         'source_updated_at', ` + js("upd") + `)),
       upd, $1
FROM (
  SELECT g, key, svc, type, approval, approver, ps, pe, upd,
         CASE WHEN NOT cur THEN CASE approval WHEN 'approved' THEN 'closed' ELSE 'canceled' END
              WHEN approval = 'approved' THEN 'scheduled' WHEN approval = 'requested' THEN 'authorize'
              WHEN approval = 'rejected' THEN 'canceled' ELSE 'new' END AS state
  FROM (
    SELECT g, cur, ` + key("CHG", "g") + ` AS key, ` + svc("g % $3") + ` AS svc,
           CASE g % 20 WHEN 3 THEN 'emergency' WHEN 4 THEN 'standard' ELSE 'normal' END AS type,
           CASE WHEN g % 20 = 1 THEN 'rejected'
                WHEN cur AND g % 20 = 0 THEN 'requested' WHEN cur AND g % 20 = 2 THEN 'not_requested'
                ELSE 'approved' END AS approval,
           'cab-' || (g % 37) AS approver,
           ps, CASE WHEN cur THEN $1 + (30 + g % 60) * interval '1 day' ELSE ps + interval '4 hours' END AS pe,
           CASE WHEN cur THEN ps - interval '1 day' ELSE ps - interval '2 days' END AS upd
    FROM (
      SELECT g, g >= $4 AS cur,
             CASE WHEN g >= $4 THEN $1 - (1 + g % 7) * interval '1 day'
                  ELSE $1 - interval '10 days' - ($4 - g) * interval '5 minutes' END AS ps
      FROM generate_series(1, $2) g
    ) a
  ) b
) c`
	// Earlier versions: v1 new / not requested, v2 (of 3) requested.
	changeVersions := `
INSERT INTO change_versions (key, version, valid_from, recorded_at, doc)
SELECT c.key, v, vf, vf + interval '2 seconds',
       CASE WHEN v = c.version THEN c.doc
            WHEN v = 1 THEN (c.doc - 'approvals') || jsonb_build_object('state', 'new', 'approval', 'not_requested', 'source_updated_at', ` + js("vf") + `)
            ELSE c.doc || jsonb_build_object('state', 'authorize', 'approval', 'requested', 'source_updated_at', ` + js("vf") + `,
                 'approvals', jsonb_build_array(jsonb_build_object('approver', COALESCE(c.doc -> 'approvals' -> 0 -> 'approver', '"cab-0"'::jsonb), 'decision', 'requested')))
       END
FROM changes c, generate_series(1, c.version) v,
     LATERAL (SELECT c.source_updated_at - (c.version - v) * interval '3 hours' AS vf) t`

	// $2 incidents, $3 services, $4 changes.
	incidents := `
INSERT INTO incidents (key, source, version, priority, major, state, active, global, doc, source_updated_at, updated_at)
SELECT key, 'servicenow', CASE WHEN active THEN 1 ELSE 2 END, priority, major, state, active, global,
       jsonb_strip_nulls(jsonb_build_object(
         'source', 'servicenow', 'key', key, 'title', 'Degraded ' || COALESCE(s1, 'everything') || ' (' || key || ')',
         'priority', priority, 'major', major, 'state', state,
         'services', CASE WHEN global THEN NULL WHEN g % 3 = 0 THEN jsonb_build_array(s1, s2) ELSE jsonb_build_array(s1) END,
         'opened_at', ` + js("opened") + `,
         'resolved_at', CASE WHEN active THEN NULL ELSE ` + js("resolved") + ` END,
         'fix_changes', CASE WHEN g % 10 = 0 THEN jsonb_build_array(` + key("CHG", "(g * 3) % $4 + 1") + `) END,
         'source_updated_at', ` + js("CASE WHEN active THEN opened ELSE resolved END") + `)),
       CASE WHEN active THEN opened ELSE resolved END, $1
FROM (
  SELECT g, key, active, global, major, opened, s1, s2,
         CASE WHEN major THEN 1 ELSE 2 + g % 3 END AS priority,
         CASE WHEN active THEN 'open' WHEN g % 10 < 7 THEN 'resolved' ELSE 'closed' END AS state,
         LEAST($1 - interval '1 minute', opened + (1 + g % 48) * interval '1 hour') AS resolved
  FROM (
    SELECT g, ` + key("INC", "g") + ` AS key, g % 250 = 0 AS active,
           (g % 10000 = 1 OR g % 12500 = 250) AS global,
           (g % 5000 = 0 OR (g % 250 <> 0 AND g % 97 = 0)) AS major,
           $1 - interval '1 hour' - ($2 - g) * interval '10 minutes' AS opened,
           ` + svc("abs(hashtext('inc' || g)) % $3") + ` AS s1,
           ` + svc("abs(hashtext('inc2' || g)) % $3") + ` AS s2
    FROM generate_series(1, $2) g
  ) a
) b`
	incidentServices := `
INSERT INTO incident_services (incident_key, service)
SELECT DISTINCT i.key, lower(trim(s)) FROM incidents i, jsonb_array_elements_text(i.doc -> 'services') s WHERE NOT i.global`
	incidentVersions := `
INSERT INTO incident_versions (key, version, valid_from, recorded_at, doc)
SELECT i.key, v, vf, vf + interval '2 seconds',
       CASE WHEN v = i.version THEN i.doc
            ELSE (i.doc - 'resolved_at') || jsonb_build_object('state', 'open', 'source_updated_at', i.doc -> 'opened_at') END
FROM incidents i, generate_series(1, i.version) v,
     LATERAL (SELECT CASE WHEN v = i.version THEN i.source_updated_at ELSE (i.doc ->> 'opened_at')::timestamptz END AS vf) t`

	// Release r: service r % services, version 1.<r / services>.0 (so
	// (service, version) is unique), 1 in 5 to staging. $2 releases,
	// $3 services, $4 teams, $5 changes.
	releaseCols := func(r string) string {
		return svc(r+" % $3") + ` AS service,
           '1.' || (` + r + ` / $3) || '.0' AS version,
           CASE WHEN ` + r + ` % 5 = 0 THEN 'staging' ELSE 'production' END AS environment,
           ` + team("("+r+" % $3) % $4") + ` AS team, md5('commit' || ` + r + `) AS commit_sha,
           jsonb_build_array(` + key("CHG", "((("+r+" % ($5 / $3)) * $3 + "+r+" % $3 + $5 - 1) % $5) + 1") + `) AS changes,
           $1 - interval '1 hour' - ($2 - ` + r + `) * interval '5 minutes' AS created_at`
	}
	releases := `
INSERT INTO releases (id, service, version, environment, team, commit_sha, changes, fixes_incidents, created_at, updated_at)
SELECT pg_temp.release_id(service, version, environment), service, version, environment, team, commit_sha, changes, '[]', created_at, created_at
FROM (SELECT ` + releaseCols("r") + ` FROM generate_series(1, $2) r) x`
	// Deployment d belongs to release (d - 1) % releases + 1; $6 deployments.
	deployments := `
INSERT INTO deployments (id, release_id, service, environment, version, commit_sha, team, status, started_at, finished_at,
                         actor, changes, incidents, decision_id, provider, run_id, url, source, created_at, updated_at)
SELECT md5('dep' || d)::uuid::text, pg_temp.release_id(service, version, environment), service, environment, version, commit_sha, team, status, st,
       CASE WHEN status = 'started' THEN NULL ELSE st + interval '7 minutes' END,
       'ci-bot', changes, '[]', '', provider, d::text, 'https://ci.example.com/' || provider || '/runs/' || d, provider, st, st
FROM (
  SELECT d, x.*, LEAST($1, created_at + ((d - 1) / $2) * interval '3 minutes') AS st,
         CASE WHEN d % 100 < 90 THEN 'succeeded' WHEN d % 100 < 95 THEN 'failed' WHEN d % 100 < 97 THEN 'rolled_back' ELSE 'started' END AS status,
         (ARRAY['github', 'gitlab', 'jenkins'])[1 + r % 3] AS provider
  FROM (SELECT d, (d - 1) % $2 + 1 AS r FROM generate_series(1, $6) d) g,
       LATERAL (SELECT ` + releaseCols("g.r") + `) x
) y`
	// One release in 20 required a review; pending only for the last ten
	// teams, half of theirs. $2 teams.
	pirs := `
INSERT INTO pirs (release_id, service, version, environment, team, status, required_at, signed_off_by, signed_off_at, summary)
SELECT id, service, version, environment, team, status, req,
       CASE WHEN status = 'pending' THEN '' ELSE 'cab-' || (abs(hashtext(id)) % 37) END,
       CASE WHEN status = 'pending' THEN NULL ELSE LEAST($1, req + interval '2 days') END,
       CASE WHEN status = 'pending' THEN '' ELSE 'rolled out cleanly; no customer impact' END
FROM (
  SELECT id, service, version, environment, team, LEAST($1, created_at + interval '1 day') AS req,
         CASE WHEN substr(team, 6)::int >= $2 - 10 AND abs(hashtext('pend' || id)) % 2 = 0 THEN 'pending' ELSE 'signed_off' END AS status
  FROM releases WHERE abs(hashtext('pir' || id)) % 20 = 0
) x`
	return []step{
		{"changes", changes, []int{sz.Changes, sz.Services, current}},
		{"change_versions", changeVersions, nil},
		{"incidents", incidents, []int{sz.Incidents, sz.Services, sz.Changes}},
		{"incident_services", incidentServices, nil},
		{"incident_versions", incidentVersions, nil},
		{"releases", releases, []int{sz.Releases, sz.Services, sz.Teams, sz.Changes}},
		{"deployments", deployments, []int{sz.Releases, sz.Services, sz.Teams, sz.Changes, sz.Deployments}},
		{"pirs", pirs, []int{sz.Teams}},
		{"vacuum analyze", `VACUUM (ANALYZE)`, nil},
	}
}
