-- Appends to a stream take turns on a lock that exists before the stream
-- does. 0009 locked the streams' `event_streams` rows, but a stream's first
-- append has no row to lock: two appends expecting `NoStream` could both
-- check an empty stream, and the second, numbering its events after the
-- first committed, stored version 2 instead of failing (statements in READ
-- COMMITTED each see the latest commits). Each append now takes a
-- transaction advisory lock per stream it writes or expects (a 64-bit hash
-- of the stream name seeded with the namespace's `event_streams` table oid,
-- in key order: no deadlocks; a collision only makes two streams take
-- turns) before it checks or numbers anything, so the second append sees
-- the first one's version and reports the conflict. Ids are counted again
-- under the locks, so a retry that raced its own original is a duplicate.
-- Appends without streams take no lock, as before. The rest of the function
-- is 0009's.
CREATE OR REPLACE FUNCTION palisade_append(
    p_ids uuid[], p_sources text[], p_kinds text[], p_streams text[], p_sessions text[],
    p_ips inet[], p_tags jsonb[], p_data jsonb[], p_occurred timestamptz[],
    p_expect_streams text[], p_expect_versions bigint[], p_channel text)
RETURNS TABLE (ord bigint, id uuid, pos bigint, seq integer, ver bigint, dup boolean,
               conflict_stream text, conflict_actual bigint)
LANGUAGE plpgsql AS $$
DECLARE
    tx bigint;
    n_known bigint;
    n_new bigint;
    k int;
    actual bigint;
    lock_key bigint;
BEGIN
    tx := pg_current_xact_id()::text::bigint + (SELECT h.xid_offset FROM event_head h);
    IF coalesce(cardinality(p_expect_streams), 0) = 0
       AND NOT EXISTS (SELECT 1 FROM unnest(p_streams) s WHERE s IS NOT NULL) THEN
        -- No stream and no expectation (most security events): no stream rows
        -- to lock or number, and ids already stored (also by an append racing
        -- this one) are skipped by the unique index itself.
        WITH inserted AS (
            INSERT INTO events (position, seq, id, source, kind, session_id, client_ip, tags, data,
                                occurred_at, recorded_at)
            SELECT tx, (u.ord - 1)::integer, u.id, u.source, u.kind, u.session_id, u.client_ip,
                   ARRAY(SELECT jsonb_array_elements_text(u.tags)), u.data, u.occurred_at,
                   date_trunc('milliseconds', now())
            FROM unnest(p_ids, p_sources, p_kinds, p_sessions, p_ips, p_tags, p_data, p_occurred)
                WITH ORDINALITY AS u(id, source, kind, session_id, client_ip, tags, data, occurred_at, ord)
            ON CONFLICT ON CONSTRAINT events_id_key DO NOTHING
            RETURNING 1
        )
        SELECT count(*) INTO n_new FROM inserted;
        IF n_new > 0 THEN
            PERFORM pg_notify(p_channel, tx::text);
        END IF;
    ELSE
        SELECT count(*) INTO n_known FROM events e WHERE e.id = ANY(p_ids);
        IF n_known < cardinality(p_ids) THEN
            FOR lock_key IN
                SELECT DISTINCT hashtextextended(s, 'event_streams'::regclass::oid::bigint)
                FROM (SELECT unnest(p_streams) UNION SELECT unnest(p_expect_streams)) AS t(s)
                WHERE s IS NOT NULL
                ORDER BY 1
            LOOP
                PERFORM pg_advisory_xact_lock(lock_key);
            END LOOP;
            -- A twin of this append (a retry) may have stored the ids while we
            -- waited: then it is a duplicate, not an expectation to check.
            SELECT count(*) INTO n_known FROM events e WHERE e.id = ANY(p_ids);
        END IF;
        IF n_known < cardinality(p_ids) THEN
            FOR k IN 1 .. coalesce(cardinality(p_expect_streams), 0) LOOP
                SELECT coalesce(max(s.version), 0) INTO actual FROM event_streams s WHERE s.stream = p_expect_streams[k];
                IF actual <> p_expect_versions[k] THEN
                    RETURN QUERY SELECT NULL::bigint, NULL::uuid, NULL::bigint, NULL::integer, NULL::bigint,
                                        NULL::boolean, p_expect_streams[k], actual;
                    RETURN;
                END IF;
            END LOOP;
            WITH input AS (
                SELECT u.* FROM unnest(p_ids, p_sources, p_kinds, p_streams, p_sessions, p_ips, p_tags, p_data, p_occurred)
                    WITH ORDINALITY AS u(id, source, kind, stream, session_id, client_ip, tags, data, occurred_at, ord)
                WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = u.id)
            ), numbered AS (
                SELECT i.*, (row_number() OVER (ORDER BY i.ord) - 1)::integer AS seq,
                       CASE WHEN i.stream IS NULL THEN NULL
                            ELSE coalesce((SELECT s.version FROM event_streams s WHERE s.stream = i.stream), 0)
                                 + row_number() OVER (PARTITION BY i.stream ORDER BY i.ord)
                       END AS version
                FROM input i
            ), inserted AS (
                INSERT INTO events (position, seq, id, source, kind, stream, version, session_id, client_ip, tags, data,
                                    occurred_at, recorded_at)
                SELECT tx, n.seq, n.id, n.source, n.kind, n.stream, n.version, n.session_id, n.client_ip,
                       ARRAY(SELECT jsonb_array_elements_text(n.tags)), n.data, n.occurred_at,
                       date_trunc('milliseconds', now())
                FROM numbered n
                RETURNING events.stream, events.version
            )
            INSERT INTO event_streams (stream, version)
            SELECT x.stream, max(x.version) FROM inserted x WHERE x.stream IS NOT NULL GROUP BY x.stream
            ON CONFLICT (stream) DO UPDATE SET version = excluded.version;
            PERFORM pg_notify(p_channel, tx::text);
        END IF;
    END IF;
    RETURN QUERY
        SELECT u.ord, u.id, e.position, e.seq, e.version, (e.position <> tx), NULL::text, NULL::bigint
        FROM unnest(p_ids) WITH ORDINALITY AS u(id, ord)
        JOIN events e ON e.id = u.id
        ORDER BY u.ord;
END $$;
