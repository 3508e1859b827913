-- +goose Up
-- A change manager's holds on a service, team or environment (HOLD).
-- Lifting a hold keeps the row (lifted_at, lifted_by): the reconciler asks
-- which holds were in force at a deployment's start.
CREATE TABLE holds (
    id         text PRIMARY KEY,
    scope      text NOT NULL,
    name       text NOT NULL,
    reason     text NOT NULL,
    until      TIMESTAMP,
    created_by text NOT NULL,
    created_at TIMESTAMP NOT NULL,
    lifted_by  text NOT NULL DEFAULT '',
    lifted_at  TIMESTAMP
);
CREATE INDEX holds_lifted_at ON holds (lifted_at);

-- Evidence attached to a release (the artifact of a service version bound
-- for an environment). Append-only: a newer record of the same kind and
-- name supersedes an older one when the policy judges it. doc is the
-- whole core.Evidence document.
CREATE TABLE evidence (
    id          text PRIMARY KEY,
    release_id  text NOT NULL REFERENCES releases (id),
    kind        text NOT NULL,
    name        text NOT NULL,
    status      text NOT NULL,
    digest      text NOT NULL DEFAULT '',
    doc         text NOT NULL,
    recorded_by text NOT NULL,
    recorded_at TIMESTAMP NOT NULL
);
CREATE INDEX evidence_release ON evidence (release_id, recorded_at);

-- +goose Down
DROP TABLE evidence;
DROP TABLE holds;
