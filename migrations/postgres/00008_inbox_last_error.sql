-- +goose Up
-- The last transient error of a pending event (shown with its attempts, so
-- a stuck event is visible), cleared when it is finished or replayed.
ALTER TABLE inbox_events ADD COLUMN last_error text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE inbox_events DROP COLUMN last_error;
