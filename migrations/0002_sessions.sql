-- SessionCache. UNLOGGED: fast, and emptied by a Postgres crash — acceptable
-- for ephemeral session state, and documented as such. Keys are bytea so any
-- UTF-8 (NUL included) is a key; values are JSON text (NUL-safe, unlike jsonb).
-- A row holds either a value or a history list (newest first).
CREATE UNLOGGED TABLE sessions (
    key        bytea PRIMARY KEY,
    value      text,
    list       text[],
    expires_at timestamptz,
    CHECK ((value IS NULL) <> (list IS NULL))
);
CREATE INDEX sessions_expires_at ON sessions (expires_at) WHERE expires_at IS NOT NULL;

-- Raised when a key holds another type than the operation needs (-> Conflict).
CREATE FUNCTION palisade_wrong_type(want text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'key holds another type than %', want USING ERRCODE = 'PA001';
END $$;

-- incr: atomic add; ttl applies only when this call creates the key.
CREATE FUNCTION palisade_session_incr(k bytea, by bigint, ttl_ms bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cur sessions%ROWTYPE;
    now_ts timestamptz := clock_timestamp();
    result bigint;
BEGIN
    SELECT * INTO cur FROM sessions WHERE key = k FOR UPDATE;
    IF NOT FOUND OR (cur.expires_at IS NOT NULL AND cur.expires_at <= now_ts) THEN
        INSERT INTO sessions (key, value, list, expires_at)
        VALUES (k, by::text, NULL, CASE WHEN ttl_ms IS NULL THEN NULL ELSE now_ts + ttl_ms * interval '1 millisecond' END)
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

-- hit: fixed-window rate limit. Returns the count in the window (this hit
-- included) and the window's end.
CREATE FUNCTION palisade_session_hit(k bytea, window_ms bigint, OUT hits bigint, OUT window_end timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    cur sessions%ROWTYPE;
    now_ts timestamptz := clock_timestamp();
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

-- push: prepend, trim to max_len, (re)set expiry if ttl given. Returns the length.
CREATE FUNCTION palisade_session_push(k bytea, entry text, max_len int, ttl_ms bigint) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    cur sessions%ROWTYPE;
    now_ts timestamptz := clock_timestamp();
    new_list text[];
    new_exp timestamptz := CASE WHEN ttl_ms IS NULL THEN NULL ELSE now_ts + ttl_ms * interval '1 millisecond' END;
BEGIN
    SELECT * INTO cur FROM sessions WHERE key = k FOR UPDATE;
    IF NOT FOUND OR (cur.expires_at IS NOT NULL AND cur.expires_at <= now_ts) THEN
        new_list := ARRAY[entry];
        INSERT INTO sessions (key, value, list, expires_at) VALUES (k, NULL, new_list, new_exp)
        ON CONFLICT (key) DO UPDATE SET value = NULL, list = excluded.list, expires_at = excluded.expires_at;
        RETURN 1;
    END IF;
    IF cur.list IS NULL THEN
        PERFORM palisade_wrong_type('a history list');
    END IF;
    new_list := (ARRAY[entry] || cur.list)[1:max_len];
    UPDATE sessions SET list = new_list, expires_at = coalesce(new_exp, cur.expires_at) WHERE key = k;
    RETURN cardinality(new_list);
END $$;
