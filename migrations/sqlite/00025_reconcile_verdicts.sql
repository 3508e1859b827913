-- +goose Up
-- Stored verdicts (docs/reconciliation.md#stored-verdicts): each
-- deployment's findings as a report judged them, under one policy and
-- build (policy_key), so the next report reads them instead of judging the
-- deployment again. A record that could change a verdict (a deployment
-- updated, a change or incident version or a review recorded after the
-- verdict, with an earlier validity) marks it for a recheck before the
-- next report reads; so are, when stored, the verdicts that serve only the
-- report that judged them (emergency timers still running against its
-- cut-off, deployments too recent to be settled). The row mirrors the
-- deployment's period and filter columns. No foreign keys: a report writes
-- a verdict per deployment, and the per-row checks cost more than the
-- rows; deployments are never deleted, and the store deletes a verdict's
-- findings with it.
CREATE TABLE reconcile_verdicts (
    deployment_id text PRIMARY KEY,
    started_at    TIMESTAMP NOT NULL,
    environment   text NOT NULL,
    service       text NOT NULL,
    team          text NOT NULL,
    policy_key    text NOT NULL,
    computed_at   TIMESTAMP NOT NULL,
    recheck       BOOLEAN NOT NULL,
    findings      integer NOT NULL
);
CREATE INDEX reconcile_verdicts_started ON reconcile_verdicts (started_at);
CREATE INDEX reconcile_verdicts_team ON reconcile_verdicts (team, started_at);
CREATE INDEX reconcile_verdicts_recheck ON reconcile_verdicts (started_at) WHERE recheck;
CREATE INDEX reconcile_verdicts_findings ON reconcile_verdicts (started_at, deployment_id) WHERE findings > 0;

-- A verdict's findings in evaluation order, each the finding's document
-- as a report stores it (findings.evidence); deleted with the verdict.
CREATE TABLE reconcile_verdict_findings (
    deployment_id text NOT NULL,
    idx           integer NOT NULL,
    code          text NOT NULL,
    severity      text NOT NULL,
    message       text NOT NULL,
    ref           text NOT NULL,
    doc           text NOT NULL,
    PRIMARY KEY (deployment_id, idx)
);

-- Up to when the stored verdicts were checked against the records: the
-- next check reads what was recorded since (less a settling margin).
CREATE TABLE reconcile_verdict_state (
    id           integer PRIMARY KEY,
    validated_at TIMESTAMP NOT NULL
);

-- What the check reads: records by when they were recorded.
ALTER TABLE pirs ADD COLUMN updated_at TIMESTAMP;
CREATE INDEX pirs_updated ON pirs (updated_at);
CREATE INDEX change_versions_recorded ON change_versions (recorded_at);
CREATE INDEX incident_versions_recorded ON incident_versions (recorded_at);
CREATE INDEX deployments_updated ON deployments (updated_at);

-- +goose Down
DROP INDEX deployments_updated;
DROP INDEX incident_versions_recorded;
DROP INDEX change_versions_recorded;
DROP INDEX pirs_updated;
ALTER TABLE pirs DROP COLUMN updated_at;
DROP TABLE reconcile_verdict_state;
DROP TABLE reconcile_verdict_findings;
DROP TABLE reconcile_verdicts;
