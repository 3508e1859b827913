-- +goose Up
-- The claim's index, fitted to its query (store.ClaimEvents): pending
-- events in claim order (received_at, id), so the claim reads the first
-- rows of the index and stops, without sorting the ties on received_at.
-- It replaces the pending index on received_at alone, which also serves
-- the lag gauges (count and oldest pending event) no worse.
CREATE INDEX inbox_events_claim ON inbox_events (received_at, id) WHERE status = 'pending';
DROP INDEX inbox_events_pending;

-- +goose Down
CREATE INDEX inbox_events_pending ON inbox_events (received_at) WHERE status = 'pending';
DROP INDEX inbox_events_claim;
