-- +goose Up
-- The inbox's retention (store.DeleteSettledBefore, hourly) looks for
-- settled events received before its cutoff: without this index each
-- tick read every settled event to find none older than the cutoff.
CREATE INDEX IF NOT EXISTS inbox_events_settled ON inbox_events (received_at)
    WHERE status IN ('processed', 'ignored');

-- +goose Down
DROP INDEX IF EXISTS inbox_events_settled;
