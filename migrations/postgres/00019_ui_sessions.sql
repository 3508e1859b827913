-- +goose Up
-- Web UI sessions. Only the SHA-256 of the session id is stored, so a copy
-- of the table cannot be replayed as cookies. A session ends at its
-- absolute expiry, after idle_seconds without a request, at sign-out
-- (ended_at) or when its token is revoked (joined on every lookup).
CREATE TABLE ui_sessions (
    id_hash      text PRIMARY KEY,
    token_id     text NOT NULL REFERENCES api_tokens (id),
    csrf         text NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz
);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at);

-- +goose Down
DROP TABLE ui_sessions;
