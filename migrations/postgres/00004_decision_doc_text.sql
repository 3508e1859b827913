-- +goose Up
-- A gate decision's document (request, reasons and the facts it saw, ~4 KB)
-- is written on every check and only ever read back whole: keep it as
-- text, so the hot path pays no jsonb parsing, and TOAST-compress it with
-- lz4 rather than pglz (far less CPU for about the same size) where the
-- server has lz4.
ALTER TABLE gate_decisions ALTER COLUMN doc TYPE text USING doc::text;
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE gate_decisions ALTER COLUMN doc SET COMPRESSION lz4;
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
ALTER TABLE gate_decisions ALTER COLUMN doc SET COMPRESSION default;
ALTER TABLE gate_decisions ALTER COLUMN doc TYPE jsonb USING doc::jsonb;
