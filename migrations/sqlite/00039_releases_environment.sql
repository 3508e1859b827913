-- +goose Up
-- Reads of history accept an environment the policy no longer lists when
-- stored releases or deployments name it: the environments they name are
-- listed from an index on environment, one probe per name
-- (store/envhistory). Deployments have one (deployments_env_started);
-- releases get this.
CREATE INDEX IF NOT EXISTS releases_environment ON releases (environment);

-- +goose Down
DROP INDEX IF EXISTS releases_environment;
