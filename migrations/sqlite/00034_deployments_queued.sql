-- +goose Up
-- A deployment its CI still holds is stored with status 'queued'
-- (core.DeployQueued): reports judge none of them and count those of their
-- period, which this partial index keeps to the few queued rows however
-- large the period.
CREATE INDEX IF NOT EXISTS deployments_queued ON deployments (started_at) WHERE status = 'queued';

-- +goose Down
DROP INDEX IF EXISTS deployments_queued;
