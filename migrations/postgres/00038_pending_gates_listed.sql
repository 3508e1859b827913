-- +goose NO TRANSACTION
-- +goose Up
-- GET /api/v1/gate/pending pages through the gate requests a CI still
-- waits on or whose answer may not have reached it (waiting, answering,
-- failed, unknown), oldest first. Answered requests stay in the table for
-- good, so without this index each page read every request ever made.
-- Built concurrently: requests keep arriving while it is built; a build
-- interrupted before (an INVALID index) is dropped first.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('pending_gates_listed') AND NOT indisvalid) THEN
        DROP INDEX pending_gates_listed;
    END IF;
END
$$;
-- +goose StatementEnd
CREATE INDEX CONCURRENTLY IF NOT EXISTS pending_gates_listed ON pending_gates (created_at, id)
    WHERE state IN ('pending', 'answering', 'failed', 'unknown');

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS pending_gates_listed;
