-- +goose Up
-- When a report last changed a recorded deployment's links (changes,
-- incidents, decision_id); NULL while they are the first report's. The
-- change itself is in the audit trail (deployment.links); the reconciler
-- reads this to report links named after the deployment had finished.
ALTER TABLE deployments ADD COLUMN links_changed_at timestamptz;

-- +goose Down
ALTER TABLE deployments DROP COLUMN links_changed_at;
