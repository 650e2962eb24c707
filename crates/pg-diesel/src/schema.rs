//! diesel `table!` definitions of the tables Palisade's migrations create in
//! each namespace (a Postgres schema, the connections' `search_path`, so the
//! tables are unqualified). A service can read them in its own diesel
//! queries; writes belong to the stores, which keep positions, versions and
//! derived scores consistent. A test holds these to the live catalog of a
//! freshly migrated namespace.
//!
//! Types follow `diesel print-schema`: `text[]` is `Array<Nullable<Text>>`,
//! `bytea` is `Binary`. JSON columns are `Jsonb`; read them with care:
//! U+0000 inside stored strings is encoded (see `palisade_pg_common::json`).

diesel::table! {
    /// Security events, one row per event; `(position, seq)` is the gap-safe
    /// global order (appending transaction's id + offset, place in the batch).
    /// Partitioned by range of `occurred_at` since migration 0013 (see
    /// `event_partitions`); `(position, seq)` is unique by construction, not
    /// by a constraint.
    events (position, seq) {
        position -> BigInt,
        seq -> Integer,
        id -> Uuid,
        source -> Text,
        kind -> Text,
        stream -> Nullable<Text>,
        version -> Nullable<BigInt>,
        session_id -> Nullable<Text>,
        client_ip -> Nullable<Inet>,
        tags -> Array<Nullable<Text>>,
        data -> Jsonb,
        occurred_at -> Timestamptz,
        recorded_at -> Timestamptz,
    }
}

diesel::table! {
    /// The single row holding the namespace's position offset (`xid_offset`,
    /// read by appends and readers in SQL; `last_position` is unused since
    /// migration 0009).
    event_head (singleton) {
        singleton -> Bool,
        last_position -> BigInt,
        xid_offset -> BigInt,
        partition_interval -> Interval,
    }
}

diesel::table! {
    /// The current version of every stream.
    event_streams (stream) {
        stream -> Text,
        version -> BigInt,
    }
}

diesel::table! {
    /// Session values and history lists (UNLOGGED); `key` is the raw key bytes.
    sessions (key) {
        key -> Binary,
        value -> Nullable<Text>,
        list -> Nullable<Array<Nullable<Text>>>,
        expires_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// Document collections and their specs; `no` numbers their partitions.
    collections (name) {
        name -> Text,
        spec -> Jsonb,
        created_at -> Timestamptz,
        no -> BigInt,
    }
}

diesel::table! {
    /// Documents (partitioned by collection).
    documents (collection, id) {
        collection -> Text,
        id -> Text,
        body -> Jsonb,
        version -> BigInt,
        expires_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// The log of reputation changes (the truth; scores derive from it).
    reputation_events (id) {
        id -> Uuid,
        subject_kind -> Text,
        subject_id -> Text,
        delta -> BigInt,
        reason -> Text,
        at -> Timestamptz,
    }
}

diesel::table! {
    /// Scores per period (`all`, `day:…`, `week:…`, `month:…`) and subject.
    reputation_scores (period, subject_kind, subject_id) {
        period -> Text,
        subject_kind -> Text,
        subject_id -> Text,
        score -> BigInt,
    }
}

diesel::table! {
    /// Applied migrations, in the layout sqlx's migrator writes.
    palisade_migrations (version) {
        version -> BigInt,
        description -> Text,
        installed_on -> Timestamptz,
        success -> Bool,
        checksum -> Binary,
        execution_time -> BigInt,
    }
}

diesel::table! {
    /// Every stored event's id (migration 0013): idempotency by id across
    /// partitions, and each id's original outcome.
    event_ids (id) {
        id -> Uuid,
        occurred_at -> Timestamptz,
        position -> BigInt,
        seq -> Integer,
        version -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// The range partitions of `events` and their bounds (`[lower, upper)`),
    /// kept by `palisade_events_premake()` and `palisade_events_purge()`.
    event_partitions (name) {
        name -> Text,
        lower -> Timestamptz,
        upper -> Timestamptz,
    }
}

diesel::table! {
    /// Durable consumers (migration 0012): filter (canonical JSON), checkpoint
    /// (`position`, `seq`; NULL before the first ack) and lease.
    event_consumers (name) {
        name -> Text,
        filter -> Text,
        position -> Nullable<BigInt>,
        seq -> Nullable<Integer>,
        holder -> Nullable<Uuid>,
        lease_expires -> Nullable<Timestamptz>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    events,
    event_head,
    event_streams,
    sessions,
    collections,
    documents,
    reputation_events,
    reputation_scores,
    palisade_migrations,
    event_ids,
    event_partitions,
    event_consumers,
);
