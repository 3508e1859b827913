-- +goose Up
-- Gate decisions carry their facts (~4 KB of JSON), so PostgreSQL TOASTs
-- and compresses every one; pglz costs more CPU on the gate's write path
-- than the rest of the insert. lz4 compresses about as well, far faster.
-- Servers built without lz4 keep pglz.
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
