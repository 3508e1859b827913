-- +goose Up
-- Reconciliation reports: what a report judged by (policy version, data
-- cut-off), the schedule that made it, and per finding its severity and
-- acknowledgement. The finding's whole document (deployment, lineage,
-- remediation) is its evidence column.
ALTER TABLE reports ADD COLUMN name text NOT NULL DEFAULT '';
ALTER TABLE reports ADD COLUMN policy_version integer NOT NULL DEFAULT 0;
ALTER TABLE reports ADD COLUMN cutoff TIMESTAMP;
CREATE INDEX reports_kind_created ON reports (kind, created_at, id);

ALTER TABLE findings ADD COLUMN severity text NOT NULL DEFAULT '';
ALTER TABLE findings ADD COLUMN ack_by text NOT NULL DEFAULT '';
ALTER TABLE findings ADD COLUMN ack_at TIMESTAMP;
ALTER TABLE findings ADD COLUMN ack_comment text NOT NULL DEFAULT '';

-- The reconciler reads deployments in start order, in keyset pages.
CREATE INDEX deployments_started_id ON deployments (started_at, id);
-- It follows the incident versions that begin as its window advances.
CREATE INDEX incident_versions_from ON incident_versions (valid_from);
-- And the team's reviews required before a page's last start.
CREATE INDEX pirs_team_required ON pirs (team, required_at);

-- +goose Down
DROP INDEX pirs_team_required;
DROP INDEX incident_versions_from;
DROP INDEX deployments_started_id;
ALTER TABLE findings DROP COLUMN ack_comment;
ALTER TABLE findings DROP COLUMN ack_at;
ALTER TABLE findings DROP COLUMN ack_by;
ALTER TABLE findings DROP COLUMN severity;
DROP INDEX reports_kind_created;
ALTER TABLE reports DROP COLUMN cutoff;
ALTER TABLE reports DROP COLUMN policy_version;
ALTER TABLE reports DROP COLUMN name;
