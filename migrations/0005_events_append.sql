-- One round trip per append: the whole batch in one statement. Locks the
-- `event_head` row first (see 0001), skips ids already stored, checks expected
-- stream versions, assigns positions and per-stream versions in batch order,
-- inserts, advances the head and the stream versions, and notifies live tails
-- at commit. Expected versions: 0 = no stream yet, n > 0 = exactly n.
--
-- Returns one row per input event in batch order (ord, id, position, version,
-- duplicate) — or, when an expectation fails, a single row with only
-- conflict_stream / conflict_actual set, having written nothing. When every id
-- is already stored, expectations are not checked (a retried append succeeds).
CREATE FUNCTION palisade_append(
    p_ids uuid[], p_sources text[], p_kinds text[], p_streams text[], p_sessions text[],
    p_ips inet[], p_tags jsonb[], p_data jsonb[], p_occurred timestamptz[],
    p_expect_streams text[], p_expect_versions bigint[], p_channel text)
RETURNS TABLE (ord bigint, id uuid, pos bigint, ver bigint, dup boolean,
               conflict_stream text, conflict_actual bigint)
LANGUAGE plpgsql AS $$
DECLARE
    head bigint;
    n_known bigint;
    k int;
    actual bigint;
    new_head bigint;
BEGIN
    SELECT h.last_position INTO head FROM event_head h FOR UPDATE;
    SELECT count(*) INTO n_known FROM events e WHERE e.id = ANY(p_ids);
    IF n_known < cardinality(p_ids) THEN
        FOR k IN 1 .. coalesce(cardinality(p_expect_streams), 0) LOOP
            SELECT coalesce(max(s.version), 0) INTO actual FROM event_streams s WHERE s.stream = p_expect_streams[k];
            IF actual <> p_expect_versions[k] THEN
                RETURN QUERY SELECT NULL::bigint, NULL::uuid, NULL::bigint, NULL::bigint, NULL::boolean,
                                    p_expect_streams[k], actual;
                RETURN;
            END IF;
        END LOOP;
        WITH input AS (
            SELECT u.* FROM unnest(p_ids, p_sources, p_kinds, p_streams, p_sessions, p_ips, p_tags, p_data, p_occurred)
                WITH ORDINALITY AS u(id, source, kind, stream, session_id, client_ip, tags, data, occurred_at, ord)
            WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = u.id)
        ), numbered AS (
            SELECT i.*, head + row_number() OVER (ORDER BY i.ord) AS position,
                   CASE WHEN i.stream IS NULL THEN NULL
                        ELSE coalesce((SELECT s.version FROM event_streams s WHERE s.stream = i.stream), 0)
                             + row_number() OVER (PARTITION BY i.stream ORDER BY i.ord)
                   END AS version
            FROM input i
        ), inserted AS (
            INSERT INTO events (position, id, source, kind, stream, version, session_id, client_ip, tags, data,
                                occurred_at, recorded_at)
            SELECT n.position, n.id, n.source, n.kind, n.stream, n.version, n.session_id, n.client_ip,
                   ARRAY(SELECT jsonb_array_elements_text(n.tags)), n.data, n.occurred_at,
                   date_trunc('milliseconds', now())
            FROM numbered n
            RETURNING events.position, events.stream, events.version
        ), streams AS (
            INSERT INTO event_streams (stream, version)
            SELECT x.stream, max(x.version) FROM inserted x WHERE x.stream IS NOT NULL GROUP BY x.stream
            ON CONFLICT (stream) DO UPDATE SET version = excluded.version
        )
        SELECT coalesce(max(x.position), head) INTO new_head FROM inserted x;
        UPDATE event_head SET last_position = new_head;
        PERFORM pg_notify(p_channel, new_head::text);
    END IF;
    RETURN QUERY
        SELECT u.ord, u.id, e.position, e.version, (e.position <= head), NULL::text, NULL::bigint
        FROM unnest(p_ids) WITH ORDINALITY AS u(id, ord)
        JOIN events e ON e.id = u.id
        ORDER BY u.ord;
END $$;
