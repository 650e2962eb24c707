-- EventStore. Applied into the store's namespace (search_path = namespace).
--
-- Global order: appends serialize on the single `event_head` row, which they
-- lock (UPDATE) before assigning positions and hold until commit. A position is
-- therefore only handed out after every lower one has committed or rolled back
-- (rolled back = the counter rolls back too), so readers can never see a
-- position and later a lower one: gap-safe and, in fact, gap-free.
CREATE TABLE event_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_position bigint NOT NULL DEFAULT 0
);
INSERT INTO event_head DEFAULT VALUES;

CREATE TABLE events (
    position    bigint PRIMARY KEY,
    id          uuid NOT NULL UNIQUE,
    source      text NOT NULL,
    kind        text NOT NULL,
    stream      text,
    version     bigint,
    session_id  text,
    client_ip   inet,
    tags        text[] NOT NULL DEFAULT '{}',
    data        jsonb NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX events_stream_version ON events (stream, version) WHERE stream IS NOT NULL;
CREATE INDEX events_session ON events (session_id, position) WHERE session_id IS NOT NULL;
CREATE INDEX events_client_ip ON events USING gist (client_ip inet_ops) WHERE client_ip IS NOT NULL;
CREATE INDEX events_kind_time ON events (kind, occurred_at);
CREATE INDEX events_source_time ON events (source, occurred_at);
CREATE INDEX events_occurred_at ON events USING brin (occurred_at);
CREATE INDEX events_tags ON events USING gin (tags);

CREATE TABLE event_streams (
    stream  text PRIMARY KEY,
    version bigint NOT NULL
);
