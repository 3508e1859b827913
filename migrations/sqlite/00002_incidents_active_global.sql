-- +goose Up
-- The gate reads the active global incidents (no affected services) on
-- every check; they are few, so a partial index finds them without
-- visiting every active incident.
CREATE INDEX incidents_active_global ON incidents (key) WHERE active AND global;

-- +goose Down
DROP INDEX incidents_active_global;
