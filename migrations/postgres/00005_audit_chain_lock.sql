-- +goose Up
-- Group commit's chain lock and head in one round trip: take the chain's
-- transaction-scoped advisory lock, then read the head. The function is
-- VOLATILE, so its second statement takes a new snapshot, after the lock
-- was granted: it sees every append committed before (a single SELECT of
-- both would read the head as of before it waited for the lock). The head
-- query is dynamic (EXECUTE), planned on every call: a plan cached while
-- audit_log was small (a sequential scan) would stay until the next
-- ANALYZE while the table grows by thousands of rows a second.
-- +goose StatementBegin
CREATE FUNCTION tollgate_lock_audit_chain(lock_key bigint) RETURNS TABLE (seq bigint, hash text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN QUERY EXECUTE 'SELECT a.seq, a.hash FROM audit_log a ORDER BY a.seq DESC LIMIT 1';
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION tollgate_lock_audit_chain(bigint);
