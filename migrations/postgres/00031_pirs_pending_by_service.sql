-- +goose NO TRANSACTION
-- +goose Up
-- A pending post-implementation review holds back its team's next release
-- and its service's (core.PIR.HoldsBack), team and service compared
-- case-insensitively: the gate looks pending reviews up by lower(team) or
-- lower(service), the reconciler reviews spanning a period by the same.
-- These replace the indexes on team alone. Built concurrently: the gate
-- keeps reading the table while they are built; a build interrupted
-- before (an INVALID index) is dropped first.
-- +goose StatementBegin
DO $$
DECLARE
    ix text;
BEGIN
    FOREACH ix IN ARRAY ARRAY['pirs_pending_team', 'pirs_pending_service', 'pirs_team_required_ci', 'pirs_service_required'] LOOP
        IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(ix) AND NOT indisvalid) THEN
            EXECUTE format('DROP INDEX %I', ix);
        END IF;
    END LOOP;
END
$$;
-- +goose StatementEnd
CREATE INDEX CONCURRENTLY IF NOT EXISTS pirs_pending_team ON pirs (lower(team)) WHERE status = 'pending';
CREATE INDEX CONCURRENTLY IF NOT EXISTS pirs_pending_service ON pirs (lower(service)) WHERE status = 'pending';
CREATE INDEX CONCURRENTLY IF NOT EXISTS pirs_team_required_ci ON pirs (lower(team), required_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS pirs_service_required ON pirs (lower(service), required_at);
DROP INDEX CONCURRENTLY IF EXISTS pirs_team_pending;
DROP INDEX CONCURRENTLY IF EXISTS pirs_team_required;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS pirs_team_required ON pirs (team, required_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS pirs_team_pending ON pirs (team) WHERE status = 'pending';
DROP INDEX CONCURRENTLY IF EXISTS pirs_service_required;
DROP INDEX CONCURRENTLY IF EXISTS pirs_team_required_ci;
DROP INDEX CONCURRENTLY IF EXISTS pirs_pending_service;
DROP INDEX CONCURRENTLY IF EXISTS pirs_pending_team;
