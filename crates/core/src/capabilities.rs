//! What a store instance guarantees, as plain data.

/// Guarantees of one store instance, off by default: every backend starts
/// from [`Capabilities::none`] and switches on what it guarantees. The
/// conformance suite reads these: a case whose capability is off checks that
/// the backend says `Unsupported` (not silence) and is reported as n/a, never
/// as a pass.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Capabilities {
    /// Data survives a server restart.
    pub durable: bool,
    /// All events of one `append` are stored or none are.
    pub atomic_batch: bool,
    /// Positions are consecutive (1, 2, 3, …) — stronger than the gap-safe
    /// order every event store must provide.
    pub gap_free_order: bool,
    /// `EventStore::subscribe` is offered.
    pub live_tail: bool,
    /// `EventStore::count_by` is offered.
    pub analytics: bool,
    /// The server expires keys/documents itself (reads still hide expired data at once).
    pub native_ttl: bool,
    /// Document writes are checked against the collection's JSON schema.
    pub schema_validation: bool,
    /// Durable named consumers (`EventStore::claim_consumer` and the rest)
    /// are offered.
    pub durable_consumers: bool,
    /// Sessions are kept within a bounded capacity, evicting least recently used.
    pub bounded_capacity: bool,
}

impl Capabilities {
    /// Every capability off.
    pub const fn none() -> Self {
        Capabilities {
            durable: false,
            atomic_batch: false,
            gap_free_order: false,
            live_tail: false,
            analytics: false,
            native_ttl: false,
            schema_validation: false,
            bounded_capacity: false,
            durable_consumers: false,
        }
    }
}
