-- Durable named consumers: one row per consumer of the namespace's events,
-- holding its filter (canonical JSON text, compared as text), its
-- checkpoint (the last acked position, NULL = none yet) and its lease (the
-- holder's token and when the lease runs out, on this server's clock).
CREATE TABLE event_consumers (
    name text PRIMARY KEY,
    filter text NOT NULL,
    position bigint,
    seq integer,
    holder uuid,
    lease_expires timestamptz,
    CHECK ((position IS NULL) = (seq IS NULL)),
    CHECK ((holder IS NULL) = (lease_expires IS NULL))
);
