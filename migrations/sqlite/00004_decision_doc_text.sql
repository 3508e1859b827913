-- +goose Up
-- PostgreSQL only (gate decision documents as lz4-compressed text: they
-- are TEXT here already); the dialects
-- keep the same migration numbers.
SELECT 1;

-- +goose Down
SELECT 1;
