-- Document indexes as Postgres indexes.
--
-- `documents` becomes a table partitioned by collection: each collection has
-- its own partition (`documents_<no>`, named from a number, never from user
-- text), so its indexes cover only its documents, are built over an empty
-- table at `ensure_collection`, and go with `DROP TABLE` at
-- `drop_collection`. Reads name the collection, so Postgres prunes to one
-- partition.
--
-- Every `IndexSpec` becomes a btree expression index over
-- `palisade_doc_sort_key` of its fields, which the store's filters use for
-- `$eq $in $gt $gte $lt $lte` on those fields. A unique `IndexSpec` adds an
-- exclusion constraint over a hash index of `palisade_doc_unique_key`:
-- `jsonb =` compares numbers by value (1 = 1.0) and hashes them alike, a
-- missing field gives SQL NULL (never a conflict, like a sparse index), the
-- heap recheck makes it exact at any value size, and DEFERRABLE makes it
-- checked at the end of each statement, so one update may move values
-- between the documents it changes. The functions index expressions call
-- pin `search_path` to the namespace, so ANALYZE, REINDEX, autovacuum and
-- restores work from any search_path. The SQL here quotes every name and
-- path with format('%I'/'%L'); nothing is concatenated unquoted.

DROP TABLE document_keys;
ALTER TABLE documents RENAME TO documents_unpartitioned;
ALTER TABLE documents_unpartitioned RENAME CONSTRAINT documents_pkey TO documents_unpartitioned_pkey;
ALTER INDEX documents_expires_at RENAME TO documents_unpartitioned_expires_at;
ALTER INDEX documents_body RENAME TO documents_unpartitioned_body;

ALTER TABLE collections ADD COLUMN no bigint GENERATED ALWAYS AS IDENTITY UNIQUE;

CREATE TABLE documents (
    collection text COLLATE "C" NOT NULL,
    id         text COLLATE "C" NOT NULL,
    body       jsonb NOT NULL,
    version    bigint NOT NULL,
    expires_at timestamptz,
    PRIMARY KEY (collection, id)
) PARTITION BY LIST (collection);
CREATE INDEX documents_expires_at ON documents (collection, expires_at) WHERE expires_at IS NOT NULL;
-- Serves the containment prefilter of `$eq`/`$in` on any field (see 0003).
CREATE INDEX documents_body ON documents USING gin (body jsonb_path_ops);

-- An order-preserving text form of a number: the 16 hex digits of its float8
-- bits, sign-adjusted. Monotone (a < b gives key(a) <= key(b)), so range
-- bounds stay inclusive and the exact test decides.
CREATE FUNCTION palisade_doc_num_key(n numeric) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT lpad(to_hex(CASE WHEN b < 0 THEN ~b ELSE b | (-9223372036854775808)::bigint END), 16, '0')
    FROM (SELECT ('x' || encode(float8send(least(greatest(n, -1e308), 1e308)::float8 + 0.0), 'hex'))::bit(64)::bigint) AS f(b)
$$;

-- Characters of a string that go into its key (btree entries are bounded;
-- longer strings share a key and the exact test tells them apart).
CREATE FUNCTION palisade_doc_key_chars() RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 64 $$;

-- The index key of one value, ordered (COLLATE "C") by MongoDB's type
-- brackets: '1' null, '2'+number, '3'+string (code points), '4' object,
-- '8'+boolean, '9' array (its elements are matched one by one, so an array
-- is always a candidate). SQL NULL for SQL NULL.
CREATE FUNCTION palisade_doc_value_key(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'null' THEN '1'
        WHEN 'number' THEN '2' || palisade_doc_num_key(v::numeric)
        WHEN 'string' THEN '3' || left(v #>> '{}', palisade_doc_key_chars())
        WHEN 'object' THEN '4'
        WHEN 'boolean' THEN CASE WHEN v::boolean THEN '81' ELSE '80' END
        ELSE '9'
    END
$$;

-- What a btree document index stores for `path`: the key of the one value it
-- reaches, '9' when it reaches several (through arrays), NULL when none.
CREATE FUNCTION palisade_doc_sort_key(doc jsonb, path text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
DECLARE
    vals jsonb[];
BEGIN
    IF cardinality(path) = 1 THEN
        RETURN palisade_doc_value_key(doc -> path[1]);
    END IF;
    vals := array_remove(palisade_doc_reach(doc, path), NULL);
    RETURN CASE cardinality(vals) WHEN 0 THEN NULL WHEN 1 THEN palisade_doc_value_key(vals[1]) ELSE '9' END;
END $$;

-- The keys a document matching `$in xs` (scalars) may have: each element's, and '9'.
CREATE FUNCTION palisade_doc_value_keys(xs jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT array_append(array_agg(palisade_doc_value_key(x)), '9') FROM jsonb_array_elements(xs) AS x
$$;

-- A unique index's key (`IndexSpec::key_of` in core): per field (`paths` is
-- a jsonb array of segment arrays) the one value reached, or the array of
-- all values reached; NULL when some field reaches nothing.
CREATE FUNCTION palisade_doc_unique_key(doc jsonb, paths jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
DECLARE
    path jsonb;
    vals jsonb[];
    parts jsonb := '[]';
BEGIN
    FOR path IN SELECT jsonb_array_elements(paths) LOOP
        vals := array_remove(
            palisade_doc_reach(doc, ARRAY(SELECT jsonb_array_elements_text(path))), NULL);
        CASE cardinality(vals)
        WHEN 0 THEN RETURN NULL;
        WHEN 1 THEN parts := parts || jsonb_build_array(vals[1]);
        ELSE parts := parts || jsonb_build_array(to_jsonb(vals));
        END CASE;
    END LOOP;
    RETURN parts;
END $$;

-- Serializes writers of equal unique keys: a transaction-level advisory lock
-- per (namespace, collection, unique index, key) of `docs`, taken in key
-- order, so that two writers claiming one value queue (the second then sees
-- the first's row) instead of deadlocking in the exclusion check. The
-- constraint alone decides what is unique; `indexes` holds each unique
-- index's paths as the constraint's expression does.
CREATE FUNCTION palisade_doc_lock_unique_keys(coll text, docs jsonb[], indexes jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    k bigint;
BEGIN
    FOR k IN
        SELECT DISTINCT jsonb_hash_extended(jsonb_build_array(current_schema(), coll, i.no, u.key), 0)
        FROM unnest(docs) AS d(body)
        CROSS JOIN jsonb_array_elements(indexes) WITH ORDINALITY AS i(paths, no)
        CROSS JOIN LATERAL (SELECT palisade_doc_unique_key(d.body, i.paths)) AS u(key)
        WHERE u.key IS NOT NULL
        ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
END $$;

-- Creates the partition of collection `name` (number `no`) and the indexes
-- of its `spec` (the stored form written by the store): index i is
-- `documents_<no>_index_<i>`, its uniqueness `documents_<no>_unique_<i>`.
CREATE FUNCTION palisade_doc_create_partition(no bigint, name text, spec jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'documents_' || no;
    idx jsonb;
    i bigint;
    cols text;
BEGIN
    EXECUTE format('CREATE TABLE %I PARTITION OF documents FOR VALUES IN (%L)', part, name);
    FOR idx, i IN SELECT e, o - 1 FROM jsonb_array_elements(spec -> 'indexes') WITH ORDINALITY AS t(e, o) LOOP
        SELECT string_agg(format('(palisade_doc_sort_key(body, %L::text[]) COLLATE "C") %s',
                                 ARRAY(SELECT jsonb_array_elements_text(f -> 'path')),
                                 CASE WHEN f ->> 'order' = 'desc' THEN 'DESC' ELSE 'ASC' END), ', ' ORDER BY n)
        INTO cols
        FROM jsonb_array_elements(idx -> 'fields') WITH ORDINALITY AS t(f, n);
        EXECUTE format('CREATE INDEX %I ON %I (%s)', part || '_index_' || i, part, cols);
        IF (idx ->> 'unique')::boolean THEN
            EXECUTE format(
                'ALTER TABLE %I ADD CONSTRAINT %I EXCLUDE USING hash '
                '((palisade_doc_unique_key(body, %L::jsonb)) WITH =) DEFERRABLE INITIALLY IMMEDIATE',
                part, part || '_unique_' || i,
                (SELECT jsonb_agg(f -> 'path' ORDER BY n)
                 FROM jsonb_array_elements(idx -> 'fields') WITH ORDINALITY AS t(f, n)));
        END IF;
    END LOOP;
END $$;

-- A collection's row and its partition come and go together: inserting a
-- row into `collections` (`ensure_collection`) creates the partition and its
-- indexes, deleting it (`drop_collection`, which first waits for writers
-- holding the row) drops them. Adding or dropping a partition locks
-- `documents` exclusively, so document statements of the namespace queue
-- behind it while it waits for running ones; the wait is capped at 500 ms
-- (then lock_not_available, and the store tries again), so a long query
-- never stalls the others for longer than that.
CREATE FUNCTION palisade_doc_collection_created() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('lock_timeout', '500ms', true);
    PERFORM palisade_doc_create_partition(NEW.no, NEW.name, NEW.spec);
    RETURN NULL;
END $$;

CREATE FUNCTION palisade_doc_collection_dropped() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('lock_timeout', '500ms', true);
    EXECUTE format('DROP TABLE IF EXISTS %I', 'documents_' || OLD.no);
    RETURN NULL;
END $$;

-- Existing collections move into their partitions. This fails, changing
-- nothing, if a collection holds two live documents whose unique values
-- 0005's check told apart but jsonb equality does not (integral numbers
-- beyond 9e15 written as float and as integer); dedupe them and re-run.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT no, name, spec FROM collections ORDER BY no LOOP
        PERFORM palisade_doc_create_partition(c.no, c.name, c.spec);
    END LOOP;
END $$;
INSERT INTO documents (collection, id, body, version, expires_at)
SELECT collection, id, body, version, expires_at FROM documents_unpartitioned
WHERE expires_at IS NULL OR expires_at > now();
DROP TABLE documents_unpartitioned;

CREATE TRIGGER collections_partition_created AFTER INSERT ON collections
    FOR EACH ROW EXECUTE FUNCTION palisade_doc_collection_created();
CREATE TRIGGER collections_partition_dropped AFTER DELETE ON collections
    FOR EACH ROW EXECUTE FUNCTION palisade_doc_collection_dropped();
