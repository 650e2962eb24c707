-- Session expiry as absolute instants, fixed on the client when the call is
-- made (a TTL counted from when the statement ran let a slow or cold
-- connection stretch expiry). Callers also pass their "now", so liveness is
-- decided on the same clock that computed the instants. The ttl_ms versions
-- of 0002 stay for instances that are not upgraded yet.
--
-- Creating a key races with concurrent creators (SELECT … FOR UPDATE locks
-- nothing while the row does not exist): each function inserts with
-- ON CONFLICT DO NOTHING and, when another transaction got there first,
-- re-reads the now-existing row under its lock, so no update is lost.

-- incr: atomic add; `expires` applies only when this call creates the key.
CREATE FUNCTION palisade_session_incr(k bytea, by bigint, expires timestamptz, now_ts timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cur sessions%ROWTYPE;
    result bigint;
BEGIN
    LOOP
        SELECT * INTO cur FROM sessions WHERE key = k FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO sessions (key, value, list, expires_at) VALUES (k, by::text, NULL, expires)
            ON CONFLICT (key) DO NOTHING;
            IF FOUND THEN
                RETURN by;
            END IF;
            CONTINUE;  -- created concurrently: read it under its lock
        END IF;
        IF cur.expires_at IS NOT NULL AND cur.expires_at <= now_ts THEN
            UPDATE sessions SET value = by::text, list = NULL, expires_at = expires WHERE key = k;
            RETURN by;
        END IF;
        IF cur.list IS NOT NULL OR cur.value !~ '^-?[0-9]+$' THEN
            PERFORM palisade_wrong_type('an integer counter');
        END IF;
        result := cur.value::bigint + by;  -- overflow raises 22003 (-> Conflict)
        UPDATE sessions SET value = result::text WHERE key = k;
        RETURN result;
    END LOOP;
END $$;

-- hit: fixed-window rate limit starting at the first hit (at `now_ts`).
CREATE FUNCTION palisade_session_hit(k bytea, window_ms bigint, now_ts timestamptz,
                                     OUT hits bigint, OUT window_end timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    cur sessions%ROWTYPE;
BEGIN
    LOOP
        SELECT * INTO cur FROM sessions WHERE key = k FOR UPDATE;
        IF NOT FOUND OR (cur.expires_at IS NOT NULL AND cur.expires_at <= now_ts) THEN
            hits := 1;
            window_end := now_ts + window_ms * interval '1 millisecond';
            IF FOUND THEN
                UPDATE sessions SET value = '1', list = NULL, expires_at = window_end WHERE key = k;
                RETURN;
            END IF;
            INSERT INTO sessions (key, value, list, expires_at) VALUES (k, '1', NULL, window_end)
            ON CONFLICT (key) DO NOTHING;
            IF FOUND THEN
                RETURN;
            END IF;
            CONTINUE;  -- created concurrently: count against it
        END IF;
        IF cur.list IS NOT NULL OR cur.value !~ '^-?[0-9]+$' THEN
            PERFORM palisade_wrong_type('an integer counter');
        END IF;
        hits := cur.value::bigint + 1;
        window_end := coalesce(cur.expires_at, now_ts + window_ms * interval '1 millisecond');
        UPDATE sessions SET value = hits::text, expires_at = window_end WHERE key = k;
        RETURN;
    END LOOP;
END $$;

-- push: prepend, trim to max_len; a given `expires` replaces the list's
-- expiry, NULL keeps it. An expired list is gone: the push starts a new one.
CREATE FUNCTION palisade_session_push(k bytea, entry text, max_len int, expires timestamptz, now_ts timestamptz)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    cur sessions%ROWTYPE;
    new_list text[];
BEGIN
    LOOP
        SELECT * INTO cur FROM sessions WHERE key = k FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO sessions (key, value, list, expires_at) VALUES (k, NULL, ARRAY[entry], expires)
            ON CONFLICT (key) DO NOTHING;
            IF FOUND THEN
                RETURN 1;
            END IF;
            CONTINUE;  -- created concurrently: push onto it
        END IF;
        IF cur.expires_at IS NOT NULL AND cur.expires_at <= now_ts THEN
            UPDATE sessions SET value = NULL, list = ARRAY[entry], expires_at = expires WHERE key = k;
            RETURN 1;
        END IF;
        IF cur.list IS NULL THEN
            PERFORM palisade_wrong_type('a history list');
        END IF;
        new_list := (ARRAY[entry] || cur.list)[1:max_len];
        UPDATE sessions SET list = new_list, expires_at = coalesce(expires, cur.expires_at) WHERE key = k;
        RETURN cardinality(new_list);
    END LOOP;
END $$;
