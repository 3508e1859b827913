-- +goose Up
-- Gate requests a CI waits on at its own gate (GitHub deployment protection
-- rules, GitLab deployment approvals) until they are answered: claimed by
-- one replica at a time (claimed_until), re-evaluated at next_check_at or
-- when a fact changes, answered through the CI's API.
CREATE TABLE pending_gates (
    id            text PRIMARY KEY,
    connector     text NOT NULL,
    provider      text NOT NULL,
    external_id   text NOT NULL,
    request       jsonb NOT NULL,
    target        jsonb NOT NULL DEFAULT '{}',
    run_url       text NOT NULL DEFAULT '',
    state         text NOT NULL,
    decision      text NOT NULL DEFAULT '',
    decision_id   text NOT NULL DEFAULT '',
    reasons       jsonb NOT NULL DEFAULT '[]',
    comment       text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    deadline      timestamptz NOT NULL,
    next_check_at timestamptz NOT NULL,
    claimed_until timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text NOT NULL DEFAULT '',
    answered_at   timestamptz,
    UNIQUE (connector, external_id)
);
CREATE INDEX pending_gates_open ON pending_gates (next_check_at) WHERE state IN ('pending', 'answering');

-- +goose Down
DROP TABLE pending_gates;
