-- A hand-written PostgreSQL query of the same shape as the reconciler's
-- work over a seeded store (scripts/seed -profile reconcile), for the
-- benchmark's comparison (docs/benchmarks.md): every deployment with its
-- gate decision and its (first) linked change as of its start, counted
-- when it breaks a rule. It covers the rules the seeded history exercises
-- and the change rules (not incidents, reviews, freezes, holds, evidence
-- or the emergency timers), so it is a lower bound on the work the
-- reconciler does.
--
-- It is not the reconciler's question, only a comparable workload, and on
-- other data its count may differ from a report's: it counts the
-- deployments still queued (which no report judges); it takes each
-- deployment's decision as its release's newest at its start, ignoring
-- the decision a deployment names (decision_id), the minute of clock skew
-- a named decision is allowed, and a later wait or deny that supersedes a
-- named allow; it compares commits case-sensitively and in full (the
-- reconciler takes an abbreviation for the commit it begins,
-- core.SameCommit); it reads only the first linked change and matches the
-- service case-sensitively; it hard-codes the default policy's production
-- rules and has no data cut-off. On the seeded history none of these
-- arises, so the two counts agree there.
--
-- It is set-based, the fastest form found: each gate decision and each
-- change version becomes the interval in which it was the one in force
-- (window functions over the two tables), and the deployments are
-- hash-joined to them by release and by change key, the start inside the
-- interval. A decision is in force from its evaluation until the release's
-- next one (ties by id, as the gate's lookup); a change version from its
-- valid_from until the next version's in (valid_from, version) order, as
-- the reconciler chooses the version that became true last (a version
-- recorded late, older than the newest, has a higher number). (Looking up each deployment's decision and change by index in
-- LATERAL subqueries, the first form of this query, took 3x as long.)
--
--   psql "$DB" -f scripts/reconcile-bench.sql
\timing on
SELECT count(*) AS deployments,
       count(*) FILTER (WHERE no_change OR not_found OR not_approved OR incomplete OR outside OR scope OR bypass) AS unauthorized
FROM (
  SELECT d.environment = 'production' AND d.changes = '[]'::jsonb AS no_change,
         d.changes <> '[]'::jsonb AND c.doc IS NULL AS not_found,
         d.environment = 'production' AND c.doc IS NOT NULL AND c.doc ->> 'approval' <> 'approved' AS not_approved,
         d.environment = 'production' AND c.doc IS NOT NULL
           AND NOT ((c.doc -> 'has_risk_assessment')::boolean AND (c.doc -> 'has_backout_plan')::boolean) AS incomplete,
         d.environment = 'production' AND c.doc IS NOT NULL
           AND (d.started_at < (c.doc ->> 'planned_start')::timestamptz OR d.started_at > (c.doc ->> 'planned_end')::timestamptz) AS outside,
         c.doc IS NOT NULL AND NOT (c.doc -> 'services') ? d.service AS scope,
         g.decision IS DISTINCT FROM 'allow'
           OR (g.commit <> '' AND d.commit_sha <> '' AND g.commit <> d.commit_sha) AS bypass
  FROM deployments d
  LEFT JOIN (
    SELECT g.release_id, g.decision, g.doc::json -> 'request' ->> 'commit' AS commit, g.evaluated_at AS from_at,
           lead(g.evaluated_at) OVER (PARTITION BY g.release_id ORDER BY g.evaluated_at, g.id) AS to_at
    FROM gate_decisions g) g
    ON g.release_id = d.release_id AND g.from_at <= d.started_at AND (g.to_at IS NULL OR d.started_at < g.to_at)
  LEFT JOIN (
    SELECT v.key, v.doc, v.valid_from AS from_at,
           lead(v.valid_from) OVER (PARTITION BY v.key ORDER BY v.valid_from, v.version) AS to_at
    FROM change_versions v) c
    ON c.key = d.changes ->> 0 AND c.from_at <= d.started_at AND (c.to_at IS NULL OR d.started_at < c.to_at)
  WHERE d.started_at >= now() - interval '5 years' AND d.started_at < now() + interval '1 minute'
) x;
