-- +goose Up
-- Group commit in one statement (store/wire.go): this function takes the
-- audit chain's transaction-scoped advisory lock, reads the head, links
-- the group's entries to it and inserts them, so no round trip between
-- tollgate and PostgreSQL happens while the lock is held.
--
-- Each entry's hash is core.HashAuditEntry: the hex SHA-256 of
--   prev_hash || '\n' || len(seq) || ':' || seq || ';' || tail
-- where tail is the rest of core.CanonicalAuditContent (time, actor,
-- action, subject, compacted data, each length-prefixed), computed by
-- tollgate (core.AuditContentTail) because it does not depend on the
-- chain. Lengths are in bytes: tollgate uses this function only on a
-- UTF8 database, where convert_to(…, 'UTF8') is the text's own bytes.
-- `tollgate audit verify` recomputes every hash in Go.
--
-- VOLATILE: each statement takes a new snapshot, so the head is read
-- after the lock was granted; the head query is EXECUTEd (planned per
-- call, as in 00005: a plan cached while audit_log was small would be a
-- sequential scan). Returns the new head's seq.
-- +goose StatementBegin
CREATE FUNCTION tollgate_append_audit(lock_key bigint, ats text[], actors text[], actions text[],
                                      subjects text[], datas text[], tails text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head_seq  bigint;
    head_hash text;
    seqs      bigint[] := '{}';
    prevs     text[] := '{}';
    hashes    text[] := '{}';
    s         text;
BEGIN
    IF cardinality(ats) IS DISTINCT FROM cardinality(tails) OR cardinality(ats) IS DISTINCT FROM cardinality(actors)
       OR cardinality(ats) IS DISTINCT FROM cardinality(actions) OR cardinality(ats) IS DISTINCT FROM cardinality(subjects)
       OR cardinality(ats) IS DISTINCT FROM cardinality(datas) THEN
        RAISE EXCEPTION 'tollgate_append_audit: arrays of different lengths';
    END IF;
    PERFORM pg_advisory_xact_lock(lock_key);
    EXECUTE 'SELECT a.seq, a.hash FROM audit_log a ORDER BY a.seq DESC LIMIT 1' INTO head_seq, head_hash;
    IF head_seq IS NULL THEN
        head_seq := 0;
        head_hash := repeat('0', 64);
    END IF;
    FOR i IN 1 .. coalesce(cardinality(ats), 0) LOOP
        head_seq := head_seq + 1;
        s := head_seq::text;
        prevs[i] := head_hash;
        head_hash := encode(sha256(convert_to(head_hash || E'\n' || length(s) || ':' || s || ';' || tails[i], 'UTF8')), 'hex');
        seqs[i] := head_seq;
        hashes[i] := head_hash;
    END LOOP;
    INSERT INTO audit_log (seq, at, actor, action, subject, data, prev_hash, hash)
    SELECT u.seq, u.at::timestamptz, u.actor, u.action, u.subject, u.data, u.prev_hash, u.hash
    FROM unnest(seqs, ats, actors, actions, subjects, datas, prevs, hashes)
         AS u(seq, at, actor, action, subject, data, prev_hash, hash);
    RETURN head_seq;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION tollgate_append_audit(bigint, text[], text[], text[], text[], text[], text[]);
