-- Session expiry as absolute instants, fixed on the client when the call is
-- made (a TTL counted from when the statement ran let a slow or cold
-- connection stretch expiry). Callers also pass their "now", so liveness is
-- decided on the same clock that computed the instants. The ttl_ms versions
-- of 0002 stay for instances that are not upgraded yet.

-- incr: atomic add; `expires` applies only when this call creates the key.
CREATE FUNCTION palisade_session_incr(k bytea, by bigint, expires timestamptz, now_ts timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cur sessions%ROWTYPE;
    result bigint;
BEGIN
    SELECT * INTO cur FROM sessions WHERE key = k FOR UPDATE;
    IF NOT FOUND OR (cur.expires_at IS NOT NULL AND cur.expires_at <= now_ts) THEN
        INSERT INTO sessions (key, value, list, expires_at) VALUES (k, by::text, NULL, expires)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value, list = NULL, expires_at = excluded.expires_at;
        RETURN by;
    END IF;
    IF cur.list IS NOT NULL OR cur.value !~ '^-?[0-9]+$' THEN
        PERFORM palisade_wrong_type('an integer counter');
    END IF;
    result := cur.value::bigint + by;  -- overflow raises 22003 (-> Conflict)
    UPDATE sessions SET value = result::text WHERE key = k;
    RETURN result;
END $$;

-- hit: fixed-window rate limit starting at the first hit (at `now_ts`).
CREATE FUNCTION palisade_session_hit(k bytea, window_ms bigint, now_ts timestamptz,
                                     OUT hits bigint, OUT window_end timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    cur sessions%ROWTYPE;
BEGIN
    SELECT * INTO cur FROM sessions WHERE key = k FOR UPDATE;
    IF NOT FOUND OR (cur.expires_at IS NOT NULL AND cur.expires_at <= now_ts) THEN
        hits := 1;
        window_end := now_ts + window_ms * interval '1 millisecond';
        INSERT INTO sessions (key, value, list, expires_at) VALUES (k, '1', NULL, window_end)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value, list = NULL, expires_at = excluded.expires_at;
        RETURN;
    END IF;
    IF cur.list IS NOT NULL OR cur.value !~ '^-?[0-9]+$' THEN
        PERFORM palisade_wrong_type('an integer counter');
    END IF;
    hits := cur.value::bigint + 1;
    window_end := coalesce(cur.expires_at, now_ts + window_ms * interval '1 millisecond');
    UPDATE sessions SET value = hits::text, expires_at = window_end WHERE key = k;
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
    SELECT * INTO cur FROM sessions WHERE key = k FOR UPDATE;
    IF NOT FOUND OR (cur.expires_at IS NOT NULL AND cur.expires_at <= now_ts) THEN
        new_list := ARRAY[entry];
        INSERT INTO sessions (key, value, list, expires_at) VALUES (k, NULL, new_list, expires)
        ON CONFLICT (key) DO UPDATE SET value = NULL, list = excluded.list, expires_at = excluded.expires_at;
        RETURN 1;
    END IF;
    IF cur.list IS NULL THEN
        PERFORM palisade_wrong_type('a history list');
    END IF;
    new_list := (ARRAY[entry] || cur.list)[1:max_len];
    UPDATE sessions SET list = new_list, expires_at = coalesce(expires, cur.expires_at) WHERE key = k;
    RETURN cardinality(new_list);
END $$;
