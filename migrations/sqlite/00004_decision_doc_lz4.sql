-- +goose Up
-- PostgreSQL only (lz4 TOAST compression of gate decisions); the dialects
-- keep the same migration numbers.
SELECT 1;

-- +goose Down
SELECT 1;
