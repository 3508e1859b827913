package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jmoiron/sqlx"
)

// The reconcile profile (-profile reconcile) seeds a history the
// reconciler can account for exactly: every deployment is authorized —
// its release was allowed by the gate for its commit a minute before its
// first deployment, its change (normal, complete, scoped to its service,
// two approvers, neither the requester nor the deployer) was approved a
// day before the window opened, no major incident is ever active, and
// every review is signed off as it is required — except a configured
// share (-unauthorized) chosen by a hash of the deployment number, each of
// which breaks exactly one rule:
//
//   - production, even numbers: deployed without linking a change
//     (NO_CHANGE, one finding);
//   - otherwise: a commit other than the one the gate allowed
//     (GATE_BYPASSED, one finding).
//
// So the printed count of unauthorized deployments is exactly the number
// of findings of a reconciliation report over the whole history.
//
// Release r (service r % services, 1 in 5 to staging) is created at
// now − 1h − (releases − r)·5 min and deployed deployments/releases times,
// 3 minutes apart; change g covers service g % services and is linked by
// releases g, g + changes, …, so -changes must be a multiple of -services.

// unauthorizedSQL is the predicate choosing the unauthorized deployments
// (d is the deployment number, $U the share in millionths).
const unauthorizedSQL = `abs(hashtext('unauth' || d)) % 1000000 < $U`

func reconcileSteps(sz sizes) []step {
	// $2 changes, $3 services, $4 releases.
	changeCTE := `
WITH base AS (
  SELECT g, ` + key("CHG", "g") + ` AS key, ` + svc("g % $3") + ` AS svc,
         $1 - interval '1 hour' - ($4 - LEAST(g, $4)) * interval '5 minutes' - interval '1 day' AS ps,
         $1 - interval '1 hour' - ($4 - LEAST(g + (GREATEST($4 - g, 0) / $2) * $2, $4)) * interval '5 minutes' + interval '1 day' AS pe,
         'cab-' || (g % 37) AS a1, 'cab-' || ((g + 1) % 37) AS a2, 'dev-' || (g % 211) AS requester
  FROM generate_series(1, $2) g
), docs AS (
  SELECT g, key, ps, v,
         ps - (4 - v) * interval '1 day' AS vf,
         jsonb_build_object(
           'source', 'servicenow', 'key', key, 'title', 'Deploy ' || svc || ' change ' || g, 'type', 'normal',
           'state', CASE v WHEN 1 THEN 'new' WHEN 2 THEN 'authorize' ELSE 'scheduled' END,
           'approval', CASE v WHEN 1 THEN 'not_requested' WHEN 2 THEN 'requested' ELSE 'approved' END,
           'approvals', CASE v WHEN 1 THEN '[]'::jsonb
               WHEN 2 THEN jsonb_build_array(jsonb_build_object('approver', a1, 'decision', 'requested'))
               ELSE jsonb_build_array(
                 jsonb_build_object('approver', a1, 'decision', 'approved', 'at', ` + js("ps - interval '1 day'") + `),
                 jsonb_build_object('approver', a2, 'decision', 'approved', 'at', ` + js("ps - interval '1 day'") + `)) END,
           'risk', 'moderate', 'planned_start', ` + js("ps") + `, 'planned_end', ` + js("pe") + `,
           'services', jsonb_build_array(svc), 'requested_by', requester,
           'has_risk_assessment', true, 'has_backout_plan', true,
           'source_updated_at', ` + js("ps - (4 - v) * interval '1 day'") + `) AS doc
  FROM base, generate_series(1, 3) v
)`
	changes := changeCTE + `
INSERT INTO changes (key, source, version, type, state, approval, doc, source_updated_at, updated_at)
SELECT key, 'servicenow', 3, 'normal', 'scheduled', 'approved', doc, vf, $1 FROM docs WHERE v = 3`
	changeVersions := changeCTE + `
INSERT INTO change_versions (key, version, valid_from, recorded_at, doc)
SELECT key, v, vf, vf + interval '2 seconds', doc FROM docs`

	// $2 incidents, $3 services: minor incidents only (priority 2–4, never
	// flagged major), so none blocks a deployment.
	incidents := `
INSERT INTO incidents (key, source, version, priority, major, state, active, global, doc, source_updated_at, updated_at)
SELECT key, 'servicenow', CASE WHEN active THEN 1 ELSE 2 END, priority, false, state, active, false,
       jsonb_strip_nulls(jsonb_build_object(
         'source', 'servicenow', 'key', key, 'title', 'Degraded ' || s1 || ' (' || key || ')',
         'priority', priority, 'major', false, 'state', state, 'services', jsonb_build_array(s1),
         'opened_at', ` + js("opened") + `,
         'resolved_at', CASE WHEN active THEN NULL ELSE ` + js("resolved") + ` END,
         'source_updated_at', ` + js("CASE WHEN active THEN opened ELSE resolved END") + `)),
       CASE WHEN active THEN opened ELSE resolved END, $1
FROM (
  SELECT g, key, active, opened, s1, 2 + g % 3 AS priority,
         CASE WHEN active THEN 'open' WHEN g % 10 < 7 THEN 'resolved' ELSE 'closed' END AS state,
         LEAST($1 - interval '1 minute', opened + (1 + g % 48) * interval '1 hour') AS resolved
  FROM (
    SELECT g, ` + key("INC", "g") + ` AS key, g % 250 = 0 AS active,
           $1 - interval '1 hour' - ($2 - g) * interval '10 minutes' AS opened,
           ` + svc("abs(hashtext('inc' || g)) % $3") + ` AS s1
    FROM generate_series(1, $2) g
  ) a
) b`
	incidentServices := `
INSERT INTO incident_services (incident_key, service, active)
SELECT i.key, lower(trim(s)), i.active FROM incidents i, jsonb_array_elements_text(i.doc -> 'services') s`
	incidentVersions := `
INSERT INTO incident_versions (key, version, valid_from, recorded_at, doc)
SELECT i.key, v, vf, vf + interval '2 seconds',
       CASE WHEN v = i.version THEN i.doc
            ELSE (i.doc - 'resolved_at') || jsonb_build_object('state', 'open', 'source_updated_at', i.doc -> 'opened_at') END
FROM incidents i, generate_series(1, i.version) v,
     LATERAL (SELECT CASE WHEN v = i.version THEN i.source_updated_at ELSE (i.doc ->> 'opened_at')::timestamptz END AS vf) t`

	// $2 releases, $3 services, $4 teams, $5 changes.
	releaseCols := func(r string) string {
		return svc(r+" % $3") + ` AS service,
           '1.' || (` + r + ` / $3) || '.0' AS version,
           CASE WHEN ` + r + ` % 5 = 0 THEN 'staging' ELSE 'production' END AS environment,
           ` + team("("+r+" % $3) % $4") + ` AS team, md5('commit' || ` + r + `) AS commit_sha,
           ` + key("CHG", "("+r+" - 1) % $5 + 1") + ` AS change_key,
           $1 - interval '1 hour' - ($2 - ` + r + `) * interval '5 minutes' AS created_at`
	}
	releases := `
INSERT INTO releases (id, service, version, environment, team, commit_sha, changes, fixes_incidents, created_at, updated_at)
SELECT pg_temp.release_id(service, version, environment), service, version, environment, team, commit_sha,
       jsonb_build_array(change_key), '[]', created_at, created_at
FROM (SELECT ` + releaseCols("r") + ` FROM generate_series(1, $2) r) x`
	// One allow per release, a minute before its first deployment, for its
	// commit. The document carries what the reconciler reads of it.
	decisions := `
INSERT INTO gate_decisions (id, release_id, decision, emergency, policy_version, evaluated_at, actor, doc)
SELECT md5('dec' || id)::uuid::text, id, 'allow', false, 1, created_at - interval '1 minute', 'token:seed',
       jsonb_build_object('decision_id', md5('dec' || id)::uuid::text, 'release_id', id, 'decision', 'allow', 'reasons', '[]'::jsonb,
         'policy_version', 1, 'evaluated_at', ` + js("created_at - interval '1 minute'") + `,
         'request', jsonb_build_object('service', service, 'environment', environment, 'version', version,
           'commit', commit_sha, 'team', team, 'changes', changes))::text
FROM releases`
	// Deployment d belongs to release (d - 1) % releases + 1; $6
	// deployments, $U the unauthorized share.
	deployments := `
INSERT INTO deployments (id, release_id, service, environment, version, commit_sha, team, status, started_at, finished_at,
                         actor, changes, incidents, decision_id, provider, run_id, url, source, created_at, updated_at)
SELECT md5('dep' || d)::uuid::text, pg_temp.release_id(service, version, environment), service, environment, version,
       CASE WHEN kind = 'commit' THEN md5('other' || d) ELSE commit_sha END, team, status, st, st + interval '7 minutes',
       'ci-bot', CASE WHEN kind = 'nochange' THEN '[]'::jsonb ELSE jsonb_build_array(change_key) END, '[]', '', provider, d::text,
       'https://ci.example.com/' || provider || '/runs/' || d, provider, st, st
FROM (
  SELECT d, x.*, LEAST($1, created_at + ((d - 1) / $2) * interval '3 minutes') AS st,
         CASE WHEN d % 100 < 90 THEN 'succeeded' WHEN d % 100 < 95 THEN 'failed' ELSE 'rolled_back' END AS status,
         (ARRAY['github', 'gitlab', 'jenkins'])[1 + r % 3] AS provider,
         CASE WHEN NOT (` + unauthorizedSQL + `) THEN ''
              WHEN x.environment = 'production' AND d % 2 = 0 THEN 'nochange' ELSE 'commit' END AS kind
  FROM (SELECT d, (d - 1) % $2 + 1 AS r FROM generate_series(1, $6) d) g,
       LATERAL (SELECT ` + releaseCols("g.r") + `) x
) y`
	// One release in 20 required a review, signed off at once (so none is
	// ever pending at a deployment).
	pirs := `
INSERT INTO pirs (release_id, service, version, environment, team, status, required_at, signed_off_by, signed_off_at, summary)
SELECT id, service, version, environment, team, 'signed_off', created_at + interval '30 minutes',
       'cab-' || (abs(hashtext(id)) % 37), created_at + interval '30 minutes', 'rolled out cleanly'
FROM releases WHERE abs(hashtext('pir' || id)) % 20 = 0`
	return []step{
		{"changes", changes, []int{sz.Changes, sz.Services, sz.Releases}},
		{"change_versions", changeVersions, []int{sz.Changes, sz.Services, sz.Releases}},
		{"incidents", incidents, []int{sz.Incidents, sz.Services}},
		{"incident_services", incidentServices, nil},
		{"incident_versions", incidentVersions, nil},
		{"releases", releases, []int{sz.Releases, sz.Services, sz.Teams, sz.Changes}},
		{"gate_decisions", decisions, nil},
		{"deployments", withShare(deployments, sz.Unauthorized), []int{sz.Releases, sz.Services, sz.Teams, sz.Changes, sz.Deployments}},
		{"pirs", pirs, nil},
		{"vacuum analyze", `VACUUM (ANALYZE)`, nil},
	}
}

// shareMillionths is the unauthorized share as the predicate's integer.
func shareMillionths(share float64) int { return int(share * 1_000_000) }

func withShare(q string, share float64) string {
	return strings.ReplaceAll(q, "$U", strconv.Itoa(shareMillionths(share)))
}

// countUnauthorized counts the deployments the predicate chose (their run
// id is their number).
func countUnauthorized(ctx context.Context, conn *sqlx.Conn, share float64) (int, error) {
	var n int
	q := withShare(`SELECT count(*) FROM deployments, LATERAL (SELECT run_id::bigint AS d) x WHERE `+unauthorizedSQL, share)
	if err := conn.GetContext(ctx, &n, q); err != nil {
		return 0, fmt.Errorf("count unauthorized deployments: %w", err)
	}
	return n, nil
}
