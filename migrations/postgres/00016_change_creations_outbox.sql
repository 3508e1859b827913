-- +goose Up
-- Changes tollgate opens for releases that link none: one row per
-- release, written before the ITSM is called, so a retried, re-run or
-- concurrent check finds it (status pending, created or failed) and never
-- opens a second change.
CREATE TABLE change_creations (
    release_id text PRIMARY KEY,
    connector  text NOT NULL,
    status     text NOT NULL,
    change_key text NOT NULL DEFAULT '',
    error      text NOT NULL DEFAULT '',
    attempts   integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Work notes to write back to ITSM changes, retried until written.
CREATE TABLE itsm_outbox (
    id         text PRIMARY KEY,
    dedupe_key text NOT NULL UNIQUE,
    connector  text NOT NULL,
    change_key text NOT NULL,
    body       text NOT NULL,
    status     text NOT NULL,
    attempts   integer NOT NULL DEFAULT 0,
    last_error text NOT NULL DEFAULT '',
    next_at    timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX itsm_outbox_due ON itsm_outbox (next_at) WHERE status = 'pending';

-- +goose Down
DROP TABLE itsm_outbox;
DROP TABLE change_creations;
