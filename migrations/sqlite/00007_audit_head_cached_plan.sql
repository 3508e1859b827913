-- +goose Up
-- PostgreSQL only (the chain functions' head query gets a cached plan);
-- the dialects keep the same migration numbers.
SELECT 1;

-- +goose Down
SELECT 1;
