-- +goose Up
-- GET /api/v1/gate/pending pages through the gate requests a CI still
-- waits on or whose answer may not have reached it (waiting, answering,
-- failed, unknown), oldest first. Answered requests stay in the table for
-- good, so without this index each page read every request ever made.
CREATE INDEX IF NOT EXISTS pending_gates_listed ON pending_gates (created_at, id)
    WHERE state IN ('pending', 'answering', 'failed', 'unknown');

-- +goose Down
DROP INDEX IF EXISTS pending_gates_listed;
