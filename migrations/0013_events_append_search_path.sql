-- `append_in` runs `palisade_append` on a caller's connection, inside the
-- caller's transaction, whatever that connection's `search_path` is: the
-- call is schema-qualified, and the function now carries the namespace as
-- its own `search_path` (captured here, where the migrator's path is the
-- namespace), set on entry and restored on exit, so the caller's path is
-- neither needed nor changed. Every later `CREATE OR REPLACE` of this
-- function must repeat `SET search_path FROM CURRENT` (it resets SET clauses).
ALTER FUNCTION palisade_append(uuid[], text[], text[], text[], text[], inet[], jsonb[], jsonb[], timestamptz[],
                               text[], bigint[], text)
    SET search_path FROM CURRENT;
