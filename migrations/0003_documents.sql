-- DocumentStore. Applied into the store's namespace (search_path = namespace).
--
-- One table holds the documents of every collection; `body` is the stored form
-- (with `_id` and `_version`), `expires_at` is computed from the collection's
-- TTL rule at every write, and reads filter it (`expires_at > now()`).
--
-- Uniqueness of secondary indexes lives in `document_keys`: one row per unique
-- index and indexed document, keyed by a SHA-256 of the document's canonical
-- key (`IndexSpec::key_of`, computed by the store), so `1` and `1.0` collide
-- and documents lacking an indexed field have no row (sparse). The primary key
-- makes it hold under concurrency; rows go with their document (cascade).
--
-- Filters are translated into calls of the palisade_doc_* functions below,
-- which mirror palisade_core::documents::{reach, matches, sort_value}. A
-- "reached" set is a jsonb[]: the values a path reaches, plus one SQL NULL
-- when some branch of the path was missing.
CREATE TABLE collections (
    name       text COLLATE "C" PRIMARY KEY,
    spec       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
    collection text COLLATE "C" NOT NULL REFERENCES collections (name) ON DELETE CASCADE,
    id         text COLLATE "C" NOT NULL,
    body       jsonb NOT NULL,
    version    bigint NOT NULL,
    expires_at timestamptz,
    PRIMARY KEY (collection, id)
);
CREATE INDEX documents_expires_at ON documents (collection, expires_at) WHERE expires_at IS NOT NULL;
-- Serves the containment prefilter the store adds to `$eq`/`$in` conditions
-- (`body @> '{"ip": "10.0.0.1"}' OR body @> '{"ip": ["10.0.0.1"]}'`, exact
-- test after). Roughly doubles the cost of writing a document.
CREATE INDEX documents_body ON documents USING gin (body jsonb_path_ops);

CREATE TABLE document_keys (
    collection text COLLATE "C" NOT NULL,
    index_no   int NOT NULL,
    key_hash   bytea NOT NULL,
    id         text COLLATE "C" NOT NULL,
    PRIMARY KEY (collection, index_no, key_hash),
    FOREIGN KEY (collection, id) REFERENCES documents (collection, id) ON DELETE CASCADE
);
CREATE INDEX document_keys_document ON document_keys (collection, id);

-- The array index a path segment names (`array_index` in core): ASCII digits
-- that fit a u64, clamped to int (no jsonb array is longer); NULL for a name.
CREATE FUNCTION palisade_doc_array_index(seg text) RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN seg !~ '^[0-9]+$' THEN NULL
        WHEN seg::numeric > 18446744073709551615 THEN NULL
        ELSE least(seg::numeric, 2147483647)::int
    END
$$;

-- What `path` reaches in `doc` (`reach` in core): a named segment applied to
-- an array visits its object elements (an empty array is a missing branch); a
-- numeric segment indexes an array and names a key of an object.
CREATE FUNCTION palisade_doc_reach(doc jsonb, path text[]) RETURNS jsonb[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    cur jsonb[] := ARRAY[doc];
    nxt jsonb[];
    missing boolean := false;
    seg text;
    idx int;
    v jsonb;
    item jsonb;
    child jsonb;
BEGIN
    FOREACH seg IN ARRAY path LOOP
        nxt := '{}';
        idx := palisade_doc_array_index(seg);
        FOREACH v IN ARRAY cur LOOP
            CASE jsonb_typeof(v)
            WHEN 'object' THEN
                child := v -> seg;
                IF child IS NULL THEN missing := true; ELSE nxt := array_append(nxt, child); END IF;
            WHEN 'array' THEN
                IF idx IS NOT NULL THEN
                    child := v -> idx;
                    IF child IS NULL THEN missing := true; ELSE nxt := array_append(nxt, child); END IF;
                ELSE
                    IF jsonb_array_length(v) = 0 THEN missing := true; END IF;
                    FOR item IN SELECT jsonb_array_elements(v) LOOP
                        IF jsonb_typeof(item) = 'object' THEN
                            child := item -> seg;
                            IF child IS NULL THEN missing := true; ELSE nxt := array_append(nxt, child); END IF;
                        END IF;
                    END LOOP;
                END IF;
            ELSE
                missing := true;
            END CASE;
        END LOOP;
        cur := nxt;
    END LOOP;
    IF missing THEN
        cur := array_append(cur, NULL::jsonb);
    END IF;
    RETURN cur;
END $$;

-- The values a condition is tested against: each reached value, plus the
-- elements of reached arrays.
CREATE FUNCTION palisade_doc_candidates(vals jsonb[]) RETURNS SETOF jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT v FROM unnest(vals) AS v WHERE v IS NOT NULL
    UNION ALL
    SELECT e FROM unnest(vals) AS v, jsonb_array_elements(CASE WHEN jsonb_typeof(v) = 'array' THEN v END) AS e
$$;

-- `$eq`: a candidate equals `x` (jsonb equality: numbers by value, objects
-- regardless of key order); `null` also matches a missing field.
CREATE FUNCTION palisade_doc_eq(vals jsonb[], x jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (x = 'null'::jsonb AND (array_position(vals, NULL) IS NOT NULL
                                   OR cardinality(array_remove(vals, NULL)) = 0))
        OR EXISTS (SELECT 1 FROM palisade_doc_candidates(vals) AS c WHERE c = x)
$$;

-- `$in`: `$eq` to any element of the jsonb array `xs`.
CREATE FUNCTION palisade_doc_in(vals jsonb[], xs jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT EXISTS (SELECT 1 FROM jsonb_array_elements(xs) AS x WHERE palisade_doc_eq(vals, x))
$$;

-- `$exists`: the path reaches at least one value.
CREATE FUNCTION palisade_doc_exists(vals jsonb[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT cardinality(array_remove(vals, NULL)) > 0
$$;

-- Compares within a type bracket (`cmp_bracketed` in core): -1, 0 or 1 for two
-- numbers (by value), two strings (by code point) or two booleans; NULL else.
CREATE FUNCTION palisade_doc_cmp(a jsonb, b jsonb) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN jsonb_typeof(a) IS DISTINCT FROM jsonb_typeof(b) THEN NULL
        WHEN jsonb_typeof(a) = 'string' THEN
            CASE WHEN (a #>> '{}') COLLATE "C" < (b #>> '{}') COLLATE "C" THEN -1
                 WHEN (a #>> '{}') COLLATE "C" = (b #>> '{}') COLLATE "C" THEN 0
                 ELSE 1 END
        WHEN jsonb_typeof(a) IN ('number', 'boolean') THEN
            CASE WHEN a < b THEN -1 WHEN a = b THEN 0 ELSE 1 END
    END
$$;

-- `$gt $gte $lt $lte`: some candidate compares to `x` within [lo, hi].
CREATE FUNCTION palisade_doc_compare(vals jsonb[], x jsonb, lo int, hi int) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT EXISTS (
        SELECT 1 FROM palisade_doc_candidates(vals) AS c WHERE palisade_doc_cmp(c, x) BETWEEN lo AND hi
    )
$$;

-- The same for a top-level field, whose reached set is one value `v` (SQL NULL
-- when missing). Plain expressions, so Postgres inlines them; only arrays (and
-- whole-object or whole-array operands) take the general path.
CREATE FUNCTION palisade_doc_eq_top(v jsonb, x jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN v IS NULL THEN x = 'null'::jsonb
        WHEN v = x THEN true
        WHEN jsonb_typeof(v) <> 'array' THEN false
        WHEN jsonb_typeof(x) IN ('object', 'array') THEN palisade_doc_eq(ARRAY[v], x)
        ELSE v @> jsonb_build_array(x)  -- a scalar element equal to x
    END
$$;

CREATE FUNCTION palisade_doc_compare_top(v jsonb, x jsonb, lo int, hi int) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN jsonb_typeof(v) = 'array' THEN palisade_doc_compare(ARRAY[v], x, lo, hi)
        ELSE coalesce(palisade_doc_cmp(v, x) BETWEEN lo AND hi, false)
    END
$$;

-- MongoDB's type order for sorting (`type_rank` in core).
CREATE FUNCTION palisade_doc_rank(v jsonb) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'null' THEN 1 WHEN 'number' THEN 2 WHEN 'string' THEN 3
        WHEN 'object' THEN 4 WHEN 'array' THEN 5 WHEN 'boolean' THEN 8
    END
$$;

-- Order within a scalar type: the number, the string (sort it COLLATE "C") or
-- the boolean; NULL for other types.
CREATE FUNCTION palisade_doc_num(v jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN v::numeric END
$$;

CREATE FUNCTION palisade_doc_str(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'string' THEN v #>> '{}' END
$$;

CREATE FUNCTION palisade_doc_bool(v jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'boolean' THEN v::boolean END
$$;

-- The values a document sorts by: reached values, arrays replaced by their
-- elements (an empty array contributes nothing).
CREATE FUNCTION palisade_doc_sort_values(vals jsonb[]) RETURNS SETOF jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT v FROM unnest(vals) AS v WHERE jsonb_typeof(v) <> 'array'
    UNION ALL
    SELECT e FROM unnest(vals) AS v, jsonb_array_elements(CASE WHEN jsonb_typeof(v) = 'array' THEN v END) AS e
$$;

-- `sort_value` in core: the smallest (ascending) or largest (descending) sort
-- value, `null` when there is none. Exact for scalars; among objects or arrays
-- of one type the pick is arbitrary, so callers re-sort those in Rust.
CREATE FUNCTION palisade_doc_sort_min(vals jsonb[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce((
        SELECT v FROM palisade_doc_sort_values(vals) AS v
        ORDER BY palisade_doc_rank(v), palisade_doc_num(v), palisade_doc_str(v) COLLATE "C", palisade_doc_bool(v)
        LIMIT 1
    ), 'null'::jsonb)
$$;

CREATE FUNCTION palisade_doc_sort_max(vals jsonb[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce((
        SELECT v FROM palisade_doc_sort_values(vals) AS v
        ORDER BY palisade_doc_rank(v) DESC, palisade_doc_num(v) DESC, palisade_doc_str(v) COLLATE "C" DESC,
                 palisade_doc_bool(v) DESC
        LIMIT 1
    ), 'null'::jsonb)
$$;

CREATE FUNCTION palisade_doc_sort_min_top(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'array' THEN palisade_doc_sort_min(ARRAY[v]) ELSE coalesce(v, 'null'::jsonb) END
$$;

CREATE FUNCTION palisade_doc_sort_max_top(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'array' THEN palisade_doc_sort_max(ARRAY[v]) ELSE coalesce(v, 'null'::jsonb) END
$$;
