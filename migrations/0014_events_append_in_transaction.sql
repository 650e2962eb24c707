-- `palisade_append` for appends inside a caller's transaction (`append_in`,
-- the outbox), where one transaction may append several times:
-- - numbering continues after the events this transaction already appended
--   at its position (`base`): two appends of one transaction no longer both
--   take seq 0 (the second failed on the primary key);
-- - an id appended earlier in the same transaction is a duplicate of that
--   earlier append (before, an event at this transaction's position always
--   counted as new);
-- - the function keeps 0013's `SET search_path FROM CURRENT` (CREATE OR
--   REPLACE resets SET clauses, so it is repeated here).
-- A pooled append (one call per transaction) behaves exactly as under 0011:
-- `base` is 0, found by one probe of the (position, seq) primary key.
CREATE OR REPLACE FUNCTION palisade_append(
    p_ids uuid[], p_sources text[], p_kinds text[], p_streams text[], p_sessions text[],
    p_ips inet[], p_tags jsonb[], p_data jsonb[], p_occurred timestamptz[],
    p_expect_streams text[], p_expect_versions bigint[], p_channel text)
RETURNS TABLE (ord bigint, id uuid, pos bigint, seq integer, ver bigint, dup boolean,
               conflict_stream text, conflict_actual bigint)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    tx bigint;
    n_known bigint;
    n_new bigint;
    k int;
    actual bigint;
    lock_key bigint;
    base integer;
BEGIN
    tx := pg_current_xact_id()::text::bigint + (SELECT h.xid_offset FROM event_head h);
    -- Earlier appends of this transaction (`append_in` called twice) hold
    -- seq 0 .. base-1 at this position: number after them.
    SELECT coalesce(max(e.seq) + 1, 0) INTO base FROM events e WHERE e.position = tx;
    IF coalesce(cardinality(p_expect_streams), 0) = 0
       AND NOT EXISTS (SELECT 1 FROM unnest(p_streams) s WHERE s IS NOT NULL) THEN
        -- No stream and no expectation (most security events): no stream rows
        -- to lock or number, and ids already stored (also by an append racing
        -- this one) are skipped by the unique index itself.
        WITH inserted AS (
            INSERT INTO events (position, seq, id, source, kind, session_id, client_ip, tags, data,
                                occurred_at, recorded_at)
            SELECT tx, base + (u.ord - 1)::integer, u.id, u.source, u.kind, u.session_id, u.client_ip,
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
                SELECT i.*, base + (row_number() OVER (ORDER BY i.ord) - 1)::integer AS seq,
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
        SELECT u.ord, u.id, e.position, e.seq, e.version, (e.position <> tx OR e.seq < base), NULL::text, NULL::bigint
        FROM unnest(p_ids) WITH ORDINALITY AS u(id, ord)
        JOIN events e ON e.id = u.id
        ORDER BY u.ord;
END $$;
