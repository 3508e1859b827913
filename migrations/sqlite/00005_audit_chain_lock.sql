-- +goose Up
-- PostgreSQL only (a function taking the audit chain's advisory lock and
-- reading its head; SQLite transactions are serialized already); the
-- dialects keep the same migration numbers.
SELECT 1;

-- +goose Down
SELECT 1;
