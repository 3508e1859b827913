-- +goose Up
-- The oldest tollgate that may run against this schema, named by the
-- newest migration it knows. A tollgate raises it when it migrates (to
-- migrations.OldestReader: its newest migration that an older build could
-- not run against) and refuses a schema whose floor is above the newest
-- migration it knows: an older replica left running, or a binary rolled
-- back past a migration it cannot read, stops instead of writing rows
-- the schema no longer means. Older tollgates than this migration do not
-- read it, and ignore the table.
CREATE TABLE schema_floor (
    id smallint PRIMARY KEY CHECK (id = 1),
    oldest_reader bigint NOT NULL,
    raised_at TIMESTAMP NOT NULL
);

-- +goose Down
DROP TABLE schema_floor;
