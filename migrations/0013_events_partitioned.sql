-- Retention by partitions: `events` becomes a table partitioned by range of
-- `occurred_at` (the column `purge` is defined on), so a purge drops whole
-- partitions instead of deleting their rows.
--
-- Layout after this migration:
-- - `events_archive`: every event stored before it (the old table, attached
--   as is), bounds [-infinity, B) with B = the start of next month (UTC);
--   events of this month keep going there until B;
-- - one partition per interval from B on (`events_pYYYYMMDD`, named after
--   its lower bound), premade three intervals ahead of now by
--   `palisade_events_premake()`, which every purge (and this migration)
--   calls; the interval is `event_head.partition_interval` (1 month by
--   default; an UPDATE changes it for partitions made afterwards);
-- - `events_default`: events beyond the premade horizon (far-future
--   `occurred_at`); premaking a partition moves its rows out first.
-- `event_partitions` lists the range partitions and their bounds (the
-- functions below keep it; runtime roles only read it).
--
-- Idempotency by id needs a key no partitioned table can hold (a unique
-- index of a partitioned table must contain the partition key), so ids are
-- claimed in a plain table, `event_ids` (id → occurred_at, position, seq,
-- version), in the same statement that inserts the events: concurrent
-- appends of one id meet on its primary key, as they met on
-- `events_id_key` before, and a duplicate's original outcome is one key
-- lookup. `purge` deletes the ledger rows of the events it removed.
--
-- The lock: this migration holds ACCESS EXCLUSIVE on the namespace's
-- `events` for its whole transaction (appends, reads and tails of this
-- namespace wait; other namespaces do not). It scans the old table for
-- events dated after this month (moved out; usually none), validates the
-- archive's bound, copies every id into the ledger, and builds three
-- indexes on the old table: `(position, seq)`, `id`, and `(stream,
-- version)` (unique indexes of the old table cannot serve the partitioned
-- parent); the other indexes are attached as they are. Positions, ids,
-- versions and stored cursors do not change. A runtime role's grants must
-- be re-run afterwards (the new tables have none).

-- Bounds are UTC instants: interval arithmetic on timestamptz follows the
-- session's time zone.
SET LOCAL TimeZone = 'UTC';

-- The old table and its indexes make way for the partitioned parent.
ALTER TABLE events RENAME TO events_archive;
ALTER INDEX events_pkey RENAME TO events_archive_pkey;
ALTER TABLE events_archive RENAME CONSTRAINT events_id_key TO events_archive_id_key;
ALTER INDEX events_stream_version RENAME TO events_archive_stream_version;
ALTER INDEX events_session RENAME TO events_archive_session;
ALTER INDEX events_client_ip RENAME TO events_archive_client_ip;
ALTER INDEX events_kind_time RENAME TO events_archive_kind_time;
ALTER INDEX events_source_time RENAME TO events_archive_source_time;
ALTER INDEX events_occurred_at RENAME TO events_archive_occurred_at;
ALTER INDEX events_tags RENAME TO events_archive_tags;

CREATE TABLE events (
    position    bigint NOT NULL,
    id          uuid NOT NULL,
    source      text NOT NULL,
    kind        text NOT NULL,
    stream      text,
    version     bigint,
    session_id  text,
    client_ip   inet,
    tags        text[] NOT NULL DEFAULT '{}',
    data        jsonb NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    seq         integer NOT NULL DEFAULT 0
) PARTITION BY RANGE (occurred_at);
CREATE INDEX events_position ON events (position, seq);
CREATE INDEX events_id ON events (id);
CREATE INDEX events_stream_version ON events (stream, version) WHERE stream IS NOT NULL;
CREATE INDEX events_session ON events (session_id, position, seq) WHERE session_id IS NOT NULL;
CREATE INDEX events_client_ip ON events USING gist (client_ip inet_ops) WHERE client_ip IS NOT NULL;
CREATE INDEX events_kind_time ON events (kind, occurred_at);
CREATE INDEX events_source_time ON events (source, occurred_at);
CREATE INDEX events_occurred_at ON events USING brin (occurred_at);
CREATE INDEX events_tags ON events USING gin (tags);

ALTER TABLE event_head ADD COLUMN partition_interval interval NOT NULL DEFAULT '1 month'
    CHECK (partition_interval >= interval '1 hour');

CREATE TABLE event_partitions (
    name  text PRIMARY KEY,
    lower timestamptz NOT NULL,
    upper timestamptz NOT NULL UNIQUE
);

-- Events dated from the start of next month on (rare before this
-- migration: far-future instants) leave the archive for the partitions
-- made below; every other row stays where it is.
CREATE TEMP TABLE palisade_events_ahead ON COMMIT DROP AS
    SELECT * FROM events_archive WHERE occurred_at >= date_trunc('month', now(), 'UTC') + interval '1 month';
DELETE FROM events_archive WHERE occurred_at >= date_trunc('month', now(), 'UTC') + interval '1 month';

DO $$
DECLARE
    b timestamptz := date_trunc('month', now(), 'UTC') + interval '1 month';
BEGIN
    -- The bound as a constraint first, so attaching skips its validating scan.
    EXECUTE format('ALTER TABLE events_archive ADD CONSTRAINT events_archive_bound CHECK (occurred_at < %L)', b);
    EXECUTE format('ALTER TABLE events ATTACH PARTITION events_archive FOR VALUES FROM (MINVALUE) TO (%L)', b);
    INSERT INTO event_partitions VALUES ('events_archive', '-infinity', b);
END $$;
CREATE TABLE events_default PARTITION OF events DEFAULT;
-- Replaced by the parent's indexes, attached or built above.
ALTER TABLE events_archive DROP CONSTRAINT events_archive_pkey;
ALTER TABLE events_archive DROP CONSTRAINT events_archive_id_key;
DROP INDEX events_archive_stream_version;

CREATE TABLE event_ids (
    id          uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    position    bigint NOT NULL,
    seq         integer NOT NULL,
    version     bigint
);
INSERT INTO event_ids SELECT id, occurred_at, position, seq, version FROM events_archive;
INSERT INTO event_ids SELECT id, occurred_at, position, seq, version FROM palisade_events_ahead;
ALTER TABLE event_ids ADD PRIMARY KEY (id);
CREATE INDEX event_ids_occurred_at ON event_ids (occurred_at);

-- Premakes the range partitions up to three intervals ahead of now, moving
-- rows the default partition holds for a new range into it first. Runs as
-- the schema owner (SECURITY DEFINER: a data-only runtime role purges too),
-- with the namespace as its only search_path. Returns how many it made.
CREATE FUNCTION palisade_events_premake() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET TimeZone = 'UTC' SET lock_timeout = '5s' AS $$
DECLARE
    step interval;
    lo timestamptz;
    hi timestamptz;
    part text;
    made integer := 0;
BEGIN
    SELECT h.partition_interval INTO step FROM event_head h;
    -- One maker at a time per namespace (a second waits, then finds them made).
    PERFORM pg_advisory_xact_lock(hashtextextended('palisade_events_premake', 'event_partitions'::regclass::oid::bigint));
    -- After a purge dropped every range partition, start again this month
    -- (older instants go to the default partition).
    SELECT coalesce(max(p.upper), date_trunc('month', now(), 'UTC')) INTO hi FROM event_partitions p;
    WHILE hi < now() + 3 * step LOOP
        lo := hi;
        hi := lo + step;
        part := 'events_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD');
        IF to_regclass(part) IS NOT NULL THEN
            part := part || '_' || to_char(lo AT TIME ZONE 'UTC', 'HH24MISS');
        END IF;
        EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS)', part);
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (occurred_at >= %L AND occurred_at < %L)',
                       part, part || '_bound', lo, hi);
        -- No append may add a row of this range to the default partition
        -- between the move and the attach (attaching checks it holds none).
        LOCK TABLE events_default IN ACCESS EXCLUSIVE MODE;
        EXECUTE format('WITH moved AS (DELETE FROM events_default WHERE occurred_at >= $1 AND occurred_at < $2 '
                       'RETURNING position, id, source, kind, stream, version, session_id, client_ip, tags, data, '
                       'occurred_at, recorded_at, seq) '
                       'INSERT INTO %I (position, id, source, kind, stream, version, session_id, client_ip, tags, '
                       'data, occurred_at, recorded_at, seq) SELECT * FROM moved', part) USING lo, hi;
        EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        INSERT INTO event_partitions VALUES (part, lo, hi);
        made := made + 1;
    END LOOP;
    RETURN made;
END $$;

-- `purge(before)`: drops every range partition lying entirely before
-- `p_before` with the ledger rows of its range (their count is the
-- partition's), deletes the remainder before it (the boundary partition,
-- the default partition) with exactly those rows' ids; then premakes
-- ahead. Dropping takes ACCESS EXCLUSIVE on `events` until commit: appends
-- and reads of the namespace wait while the dropped ranges' ledger rows
-- are deleted (this grows with their number of events). Waiting longer
-- than lock_timeout (5 s, e.g. behind a long-open outbox transaction) is
-- SQLSTATE PA002 (a temporary conflict: retry).
CREATE FUNCTION palisade_events_purge(p_before timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET TimeZone = 'UTC' SET lock_timeout = '5s' AS $$
DECLARE
    gone bigint := 0;
    n bigint;
    r record;
BEGIN
    -- Purges (and the premaking they end with) take turns, before any table
    -- lock: two of them never wait on each other's locks.
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended('palisade_events_premake', 'event_partitions'::regclass::oid::bigint));
        -- Only tables that are range partitions of `events` are dropped,
        -- whatever `event_partitions` says.
        IF EXISTS (SELECT 1 FROM event_partitions p JOIN pg_inherits i ON i.inhrelid = to_regclass(p.name)
                   WHERE i.inhparent = 'events'::regclass AND p.upper <= p_before) THEN
            -- What DROP takes anyway, taken first: no append can add a row
            -- (or an id) to a doomed range until this purge commits.
            LOCK TABLE events IN ACCESS EXCLUSIVE MODE;
        END IF;
        FOR r IN SELECT p.name, p.lower, p.upper
                 FROM event_partitions p JOIN pg_inherits i ON i.inhrelid = to_regclass(p.name)
                 WHERE i.inhparent = 'events'::regclass AND p.upper <= p_before
                 ORDER BY p.lower LOOP
            -- A ledger row carries its event's instant: the range names
            -- exactly the partition's ids, one per event (so this counts them).
            DELETE FROM event_ids l WHERE l.occurred_at >= r.lower AND l.occurred_at < r.upper;
            GET DIAGNOSTICS n = ROW_COUNT;
            EXECUTE format('DROP TABLE %I', r.name);
            DELETE FROM event_partitions p WHERE p.name = r.name;
            gone := gone + n;
        END LOOP;
        -- The remainder (the boundary partition, the default one) row by
        -- row, with exactly those rows' ids.
        WITH removed AS (
            DELETE FROM events e WHERE e.occurred_at < p_before RETURNING e.id
        ), freed AS (
            DELETE FROM event_ids l USING removed x WHERE l.id = x.id RETURNING 1
        )
        SELECT count(*) INTO n FROM removed;
        gone := gone + n;
        PERFORM palisade_events_premake();
    EXCEPTION WHEN lock_not_available THEN
        -- Waiting behind another transaction (a long-open outbox
        -- transaction, say) is a conflict to retry, not a failing server.
        RAISE EXCEPTION 'purge waited too long for the events table''s lock; try again'
            USING ERRCODE = 'PA002';
    END;
    RETURN gone;
END $$;
REVOKE ALL ON FUNCTION palisade_events_premake() FROM PUBLIC;
REVOKE ALL ON FUNCTION palisade_events_purge(timestamptz) FROM PUBLIC;
-- Owner's rights: the session's temporary schema is searched last, never
-- first, so a caller's temporary table cannot stand in for one of these.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION palisade_events_premake() SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION palisade_events_purge(timestamptz) SET search_path = %I, pg_temp', current_schema());
END $$;

-- Appends claim their ids in the ledger (see above). Two more changes from
-- 0011's function, for `append_in` (appending on a caller's connection,
-- inside the caller's transaction):
-- - the function carries the namespace as its own `search_path` (captured
--   here, where the migrator's path is the namespace; set on entry and
--   restored on exit), so the caller's path is neither needed nor changed;
--   every later `CREATE OR REPLACE` must repeat `SET search_path FROM
--   CURRENT`, which it resets;
-- - several appends of one transaction number their events one after the
--   other at the transaction's position (a transaction-local setting holds
--   the next seq), and an id appended earlier in the same transaction is
--   reported as a duplicate of that append.
-- The rest is 0011's.
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
    -- This transaction's next seq in this namespace, kept in a
    -- transaction-local setting (undone with a rolled-back savepoint).
    seq_key text := 'palisade.next_seq_' || current_schema();
BEGIN
    tx := pg_current_xact_id()::text::bigint + (SELECT h.xid_offset FROM event_head h);
    -- Earlier appends of this transaction hold seq 0 .. base-1 at this position.
    base := coalesce(nullif(current_setting(seq_key, true), ''), '0')::integer;
    PERFORM set_config(seq_key, (base + cardinality(p_ids))::text, true);
    IF coalesce(cardinality(p_expect_streams), 0) = 0
       AND NOT EXISTS (SELECT 1 FROM unnest(p_streams) s WHERE s IS NOT NULL) THEN
        -- No stream and no expectation: ids already stored (also by an
        -- append racing this one) are skipped by the ledger's key itself.
        WITH input AS (
            SELECT u.*, base + (u.ord - 1)::integer AS seq
            FROM unnest(p_ids, p_sources, p_kinds, p_sessions, p_ips, p_tags, p_data, p_occurred)
                WITH ORDINALITY AS u(id, source, kind, session_id, client_ip, tags, data, occurred_at, ord)
        ), claimed AS (
            INSERT INTO event_ids (id, occurred_at, position, seq, version)
            SELECT i.id, i.occurred_at, tx, i.seq, NULL FROM input i
            ON CONFLICT ON CONSTRAINT event_ids_pkey DO NOTHING
            RETURNING event_ids.id
        ), inserted AS (
            INSERT INTO events (position, seq, id, source, kind, session_id, client_ip, tags, data,
                                occurred_at, recorded_at)
            SELECT tx, i.seq, i.id, i.source, i.kind, i.session_id, i.client_ip,
                   ARRAY(SELECT jsonb_array_elements_text(i.tags)), i.data, i.occurred_at,
                   date_trunc('milliseconds', now())
            FROM input i JOIN claimed c ON c.id = i.id
            RETURNING 1
        )
        SELECT count(*) INTO n_new FROM inserted;
        IF n_new > 0 THEN
            PERFORM pg_notify(p_channel, tx::text);
        END IF;
    ELSE
        SELECT count(*) INTO n_known FROM event_ids l WHERE l.id = ANY(p_ids);
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
            SELECT count(*) INTO n_known FROM event_ids l WHERE l.id = ANY(p_ids);
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
                WHERE NOT EXISTS (SELECT 1 FROM event_ids l WHERE l.id = u.id)
            ), numbered AS (
                SELECT i.*, base + (row_number() OVER (ORDER BY i.ord) - 1)::integer AS seq,
                       CASE WHEN i.stream IS NULL THEN NULL
                            ELSE coalesce((SELECT s.version FROM event_streams s WHERE s.stream = i.stream), 0)
                                 + row_number() OVER (PARTITION BY i.stream ORDER BY i.ord)
                       END AS version
                FROM input i
            ), claimed AS (
                -- No ON CONFLICT: a racing twin fails this append on the key
                -- (23505), which the caller sends again.
                INSERT INTO event_ids (id, occurred_at, position, seq, version)
                SELECT n.id, n.occurred_at, tx, n.seq, n.version FROM numbered n
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
        SELECT u.ord, u.id, l.position, l.seq, l.version, (l.position <> tx OR l.seq < base), NULL::text, NULL::bigint
        FROM unnest(p_ids) WITH ORDINALITY AS u(id, ord)
        JOIN event_ids l ON l.id = u.id
        ORDER BY u.ord;
END $$;

SELECT palisade_events_premake();
INSERT INTO events SELECT * FROM palisade_events_ahead;
