-- +goose Up
-- A pending post-implementation review holds back its team's next release
-- and its service's (core.PIR.HoldsBack), team and service compared
-- case-insensitively: the gate looks pending reviews up by lower(team) or
-- lower(service), the reconciler reviews spanning a period by the same.
-- These replace the indexes on team alone.
CREATE INDEX IF NOT EXISTS pirs_pending_team ON pirs (lower(team)) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS pirs_pending_service ON pirs (lower(service)) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS pirs_team_required_ci ON pirs (lower(team), required_at);
CREATE INDEX IF NOT EXISTS pirs_service_required ON pirs (lower(service), required_at);
DROP INDEX IF EXISTS pirs_team_pending;
DROP INDEX IF EXISTS pirs_team_required;

-- +goose Down
CREATE INDEX IF NOT EXISTS pirs_team_required ON pirs (team, required_at);
CREATE INDEX IF NOT EXISTS pirs_team_pending ON pirs (team) WHERE status = 'pending';
DROP INDEX IF EXISTS pirs_service_required;
DROP INDEX IF EXISTS pirs_team_required_ci;
DROP INDEX IF EXISTS pirs_pending_service;
DROP INDEX IF EXISTS pirs_pending_team;
