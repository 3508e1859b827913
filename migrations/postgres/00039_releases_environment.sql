-- +goose NO TRANSACTION
-- +goose Up
-- Reads of history accept an environment the policy no longer lists when
-- stored releases or deployments name it: the environments they name are
-- listed from an index on environment, one probe per name
-- (store/envhistory). Deployments have one (deployments_env_started);
-- releases get this. Built concurrently: releases keep arriving while it
-- is built; a build interrupted before (an INVALID index) is dropped
-- first.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('releases_environment') AND NOT indisvalid) THEN
        DROP INDEX releases_environment;
    END IF;
END
$$;
-- +goose StatementEnd
CREATE INDEX CONCURRENTLY IF NOT EXISTS releases_environment ON releases (environment);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS releases_environment;
