-- +goose Up
-- PostgreSQL only (lz4 TOAST compression of documents: SQLite stores them
-- as written); the dialects keep the same migration numbers.
SELECT 1;

-- +goose Down
SELECT 1;
