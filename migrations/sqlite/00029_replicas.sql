-- +goose Up
-- Each running tollgate as it last told the database (GET
-- /api/v1/replicas, the doctor): its build, the newest migration it
-- knows, and how far its clock was from the database server's. Written
-- every 10 s by each replica, removed when it stops, pruned a day after
-- it was last seen.
CREATE TABLE replicas (
    id text PRIMARY KEY,
    version text NOT NULL,
    schema_known bigint NOT NULL,
    started_at TIMESTAMP NOT NULL,
    seen_at TIMESTAMP NOT NULL,
    clock_skew_ms bigint
);

-- +goose Down
DROP TABLE replicas;
