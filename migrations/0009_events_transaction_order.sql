-- Gap-safe order without a global lock (issue 14). Until 0008 every append
-- locked the single `event_head` row and held it to commit, so appends from
-- every service took turns. Since 0009:
--
-- * An event's position is (position, seq): `position` is the appending
--   transaction's id (`pg_current_xact_id()`, 64-bit, never wraps) plus the
--   namespace's `xid_offset`, `seq` its place in the batch (0, 1, …). Rows
--   stored before keep (n, 0); `xid_offset` is set once here so that every new
--   position lies above them (stored cursors `n-0` stay valid).
-- * Readers that follow the order (`read`, live tails) return only rows whose
--   `position` lies below the bound `pg_snapshot_xmin(pg_current_snapshot()) +
--   xid_offset`, taken in the same statement: every transaction id below the
--   snapshot's xmin has committed or rolled back, so no row can later appear
--   below a position a reader has passed. A long-running write transaction
--   anywhere in the cluster therefore delays readers (never reorders them).
-- * Appends lock only the rows of the streams they write or expect (in stream
--   order: no deadlocks); appends without streams never wait for each other.
--   Two appends racing to create the same stream, or to store the same id,
--   meet on the unique indexes: the loser fails with 23505 and the driver
--   retries it (the retry sees the winner's rows).
ALTER TABLE event_head ADD COLUMN xid_offset bigint NOT NULL DEFAULT 0;
UPDATE event_head SET xid_offset = greatest(0, last_position + 1 - pg_current_xact_id()::text::bigint);

ALTER TABLE events ADD COLUMN seq integer NOT NULL DEFAULT 0;
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (position, seq);
DROP INDEX events_session;
CREATE INDEX events_session ON events (session_id, position, seq) WHERE session_id IS NOT NULL;

DROP FUNCTION palisade_append(uuid[], text[], text[], text[], text[], inet[], jsonb[], jsonb[], timestamptz[],
                              text[], bigint[], text);

-- One round trip per append: the whole batch in one statement. A batch
-- without streams or expectations takes a short path (one INSERT … ON
-- CONFLICT DO NOTHING on the id, no stream work). Otherwise: takes the
-- transaction id first (before any lock wait, so a blocked append already
-- holds its low position and readers wait for it), skips ids already stored,
-- locks and checks the expected stream versions, numbers the batch, inserts,
-- advances the stream versions and notifies live tails at commit. Expected
-- versions: 0 = no stream yet, n > 0 = exactly n.
--
-- Returns one row per input event in batch order (ord, id, pos, seq, ver,
-- dup) — or, when an expectation fails, a single row with only
-- conflict_stream / conflict_actual set, having written nothing. When every id
-- is already stored, expectations are not checked (a retried append succeeds).
CREATE FUNCTION palisade_append(
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
            PERFORM 1 FROM event_streams s
             WHERE s.stream IN (SELECT unnest(p_streams) UNION SELECT unnest(p_expect_streams))
             ORDER BY s.stream FOR UPDATE;
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
