-- Since 0008, U+0000 inside stored JSON is data: jsonb cannot hold it, so the
-- Postgres backends write U+0000 as U+0001 U+0001 and U+0001 as U+0001
-- U+0002 (a prefix-free, order-preserving code; see pg-sqlx `json.rs`).
-- Rows written before could hold a bare U+0001, which would now read back
-- wrong; this re-encodes them once. It rewrites only rows holding U+0001,
-- but reads every row of events, documents and collections to find them.

-- `v` with every U+0001 in strings and keys written as U+0001 U+0002. Works
-- on the JSON text, where U+0001 is always the escape `\u0001`: one preceded
-- by an even run of backslashes (the run itself is escaped backslashes).
CREATE FUNCTION palisade_encode_u0001(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN strpos(v::text, '\u0001') = 0 THEN v
                ELSE regexp_replace(v::text, '(?<!\\)((?:\\\\)*)\\u0001', '\1\\u0001\\u0002', 'g')::jsonb
           END
$$;

UPDATE events SET data = palisade_encode_u0001(data) WHERE strpos(data::text, '\u0001') > 0;
UPDATE documents SET body = palisade_encode_u0001(body) WHERE strpos(body::text, '\u0001') > 0;
UPDATE collections SET spec = palisade_encode_u0001(spec) WHERE strpos(spec::text, '\u0001') > 0;
