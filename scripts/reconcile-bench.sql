-- The reconciler's question over a seeded store (scripts/seed -profile
-- reconcile) as one hand-written PostgreSQL query, for the benchmark's
-- comparison (docs/benchmarks.md): every deployment with its gate decision
-- and its (first) linked change as of its start, counted when it breaks
-- a rule. It covers the rules the seeded history exercises and the change
-- rules (not incidents, reviews, freezes or the emergency timers), so it is
-- a lower bound on the work the reconciler does.
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
  LEFT JOIN LATERAL (
    SELECT g.decision, g.doc::json -> 'request' ->> 'commit' AS commit FROM gate_decisions g
    WHERE g.release_id = d.release_id AND g.evaluated_at <= d.started_at
    ORDER BY g.evaluated_at DESC, g.id DESC LIMIT 1) g ON true
  LEFT JOIN LATERAL (
    SELECT v.doc FROM change_versions v
    WHERE v.key = d.changes ->> 0 AND v.valid_from <= d.started_at
    ORDER BY v.version DESC LIMIT 1) c ON true
  WHERE d.started_at >= now() - interval '5 years' AND d.started_at < now() + interval '1 minute'
) x;
