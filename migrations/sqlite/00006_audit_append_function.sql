-- +goose Up
-- PostgreSQL only (a function that links and inserts a group's audit
-- entries under the chain lock in one round trip; SQLite's single
-- connection has no round trips to save); the dialects keep the same
-- migration numbers.
SELECT 1;

-- +goose Down
SELECT 1;
