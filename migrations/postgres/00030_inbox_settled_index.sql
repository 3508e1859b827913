-- +goose NO TRANSACTION
-- +goose Up
-- The inbox's retention (store.DeleteSettledBefore, hourly) looks for
-- settled events received before its cutoff. Without an index on
-- received_at among them, each tick read every settled event's row to
-- find none older than the cutoff — the whole inbox, every hour, for
-- the retention's first 400 days. Built concurrently: a large inbox
-- keeps taking deliveries while it is built. A build interrupted before
-- (which leaves the index INVALID) is dropped first and built again.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('inbox_events_settled') AND NOT indisvalid) THEN
        DROP INDEX inbox_events_settled;
    END IF;
END
$$;
-- +goose StatementEnd
CREATE INDEX CONCURRENTLY IF NOT EXISTS inbox_events_settled ON inbox_events (received_at)
    WHERE status IN ('processed', 'ignored');

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS inbox_events_settled;
