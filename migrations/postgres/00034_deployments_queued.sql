-- +goose NO TRANSACTION
-- +goose Up
-- A deployment its CI still holds is stored with status 'queued'
-- (core.DeployQueued): reports judge none of them and count those of their
-- period, which this partial index keeps to the few queued rows however
-- large the period. Built concurrently: deployments keep arriving while it
-- is built; a build interrupted before (an INVALID index) is dropped first.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('deployments_queued') AND NOT indisvalid) THEN
        DROP INDEX deployments_queued;
    END IF;
END
$$;
-- +goose StatementEnd
CREATE INDEX CONCURRENTLY IF NOT EXISTS deployments_queued ON deployments (started_at) WHERE status = 'queued';

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS deployments_queued;
