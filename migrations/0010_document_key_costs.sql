-- Document statements are prepared once per connection and should run on a
-- generic plan (see pg-common's `filter.rs`). The planner prices a SQL
-- function it cannot inline at 100 operators a call, so a generic plan that
-- computes an index key from a parameter (`palisade_doc_value_key($n)`)
-- looked dearer than replanning every call with the value folded in, and
-- Postgres replanned every call. Both key functions are a CASE over
-- `jsonb_typeof`: price them as what they are.
ALTER FUNCTION palisade_doc_value_key(jsonb) COST 1;
ALTER FUNCTION palisade_doc_value_keys(jsonb) COST 1;
