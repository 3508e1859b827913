-- +goose Up
-- TOAST-compress the large values written on the ingest and normalizer
-- paths (delivery bodies, record documents and their versions) and the
-- other documents with lz4 rather than pglz, where the server has lz4:
-- pglz compresses these kilobyte-sized values at several times lz4's CPU
-- for about the same size, on the hottest write paths. Values already stored keep
-- their compression; new ones use lz4. (gate_decisions.doc has used lz4
-- since 00004.)
-- +goose StatementBegin
DO $$
DECLARE
    col text[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        RETURN;
    END IF;
    FOREACH col SLICE 1 IN ARRAY ARRAY[
        ['inbox_events', 'body'], ['inbox_events', 'headers'],
        ['changes', 'doc'], ['change_versions', 'doc'],
        ['incidents', 'doc'], ['incident_versions', 'doc'],
        ['evidence', 'doc'], ['audit_log', 'data'],
        ['reports', 'summary'], ['report_proofs', 'doc'],
        ['reconcile_verdict_findings', 'doc'],
        ['itsm_outbox', 'body'], ['pending_gates', 'request']
    ] LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET COMPRESSION lz4', col[1], col[2]);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- Back to the server's default for every lz4 column but gate_decisions.doc
-- (00004's).
-- +goose StatementBegin
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname, a.attname FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema() AND c.relkind = 'r' AND a.attcompression = 'l'
            AND NOT (c.relname = 'gate_decisions' AND a.attname = 'doc')
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET COMPRESSION default', r.relname, r.attname);
    END LOOP;
END
$$;
-- +goose StatementEnd
