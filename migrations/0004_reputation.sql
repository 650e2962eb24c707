-- ReputationRepo. `reputation_events` is the source of truth; `reputation_scores`
-- holds one row per (period, subject) and is kept in step in the same
-- transaction as each recorded event, and can be rebuilt from the log.
CREATE TABLE reputation_events (
    id           uuid PRIMARY KEY,
    subject_kind text NOT NULL CHECK (subject_kind IN ('user', 'engine')),
    subject_id   text NOT NULL,
    delta        bigint NOT NULL,
    reason       text NOT NULL,
    at           timestamptz NOT NULL
);
CREATE INDEX reputation_events_subject ON reputation_events (subject_kind, subject_id, at DESC, id DESC);

-- period: 'all', 'd2026-11-22', 'w2026-47', 'm2026-11' (see Period::key).
CREATE TABLE reputation_scores (
    period       text NOT NULL,
    subject_kind text NOT NULL,
    subject_id   text NOT NULL,
    score        bigint NOT NULL,
    PRIMARY KEY (period, subject_kind, subject_id)
);
CREATE INDEX reputation_scores_board ON reputation_scores (period, subject_kind, score DESC, subject_id COLLATE "C");
