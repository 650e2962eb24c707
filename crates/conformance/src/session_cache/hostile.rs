//! Hostile input against a [`SessionCache`]: the input policy, U+0000,
//! history expiry and absolute expiry instants (see [`palisade_core::policy`]).

use chrono::TimeDelta;
use serde_json::json;

use super::{assert_expires_within, get, long, ms, past_short_ttl, range, set, short, ttl};
use crate::{assert_kind, nested, ok};
use palisade_core::backend::clock::now_ms;
use palisade_core::error::ErrorKind;
use palisade_core::policy::{DEFAULT_MAX_DEPTH, DEFAULT_MAX_SESSION_VALUE_BYTES};
use palisade_core::sessions::{KeyTtl, SetMode};
use palisade_core::{Expiry, SessionCache};

/// Values and history entries nested deeper than the policy allows are
/// `InvalidInput` and change nothing; at the limit they round-trip.
pub async fn values_nested_beyond_the_depth_limit_are_invalid_input(cache: &dyn SessionCache) {
    set(cache, "k", json!("old"), None).await;
    let deep = nested(DEFAULT_MAX_DEPTH + 1);
    assert_kind(cache.set("k", deep.clone(), None, SetMode::Always).await, ErrorKind::InvalidInput, "set");
    assert_kind(cache.push("h", deep, 10, None).await, ErrorKind::InvalidInput, "push");
    assert_eq!(get(cache, "k").await, Some(json!("old")), "the refused set changed the value");
    assert!(range(cache, "h").await.is_empty(), "the refused push created a list");
    let fine = nested(DEFAULT_MAX_DEPTH);
    set(cache, "k", fine.clone(), None).await;
    assert_eq!(get(cache, "k").await, Some(fine.clone()), "a value at the depth limit round-trips");
    ok(cache.push("h", fine.clone(), 10, None).await, "push at the limit");
    assert_eq!(range(cache, "h").await, vec![fine]);
}

/// A value larger than the policy allows (serialized) is `InvalidInput`.
pub async fn values_over_the_size_limit_are_invalid_input(cache: &dyn SessionCache) {
    let big = json!("x".repeat(DEFAULT_MAX_SESSION_VALUE_BYTES));
    assert_kind(cache.set("k", big.clone(), None, SetMode::Always).await, ErrorKind::InvalidInput, "set");
    assert_kind(cache.push("h", big, 10, None).await, ErrorKind::InvalidInput, "push");
    assert_eq!(get(cache, "k").await, None);
    let mib = json!({"blob": "y".repeat(1 << 20)});
    set(cache, "k", mib.clone(), None).await;
    assert_eq!(get(cache, "k").await, Some(mib), "a 1 MiB value round-trips");
}

/// U+0000 in strings and object keys of values and history entries, and in
/// keys, is stored and returned byte-exact.
pub async fn nul_in_values_and_keys_round_trips_byte_exact(cache: &dyn SessionCache) {
    let v = json!({"cookie\u{0}": "a\u{0}b", "x": ["\u{0}", "\u{1}", "\u{1}\u{1}", "\u{1}\u{2}"]});
    set(cache, "s\u{0}1", v.clone(), None).await;
    assert_eq!(get(cache, "s\u{0}1").await, Some(v.clone()));
    assert_eq!(get(cache, "s").await, None, "a key is not cut at U+0000");
    ok(cache.push("h\u{0}", v.clone(), 10, None).await, "push");
    assert_eq!(range(cache, "h\u{0}").await, vec![v]);
}

/// `push` without an expiry keeps the list's expiry: the list still
/// expires when the first push said, and a push after that starts a new list.
pub async fn push_without_expiry_keeps_the_list_expiry(cache: &dyn SessionCache) {
    ok(cache.push("h", json!(1), 10, short()).await, "push with ttl");
    ok(cache.push("h", json!(2), 10, None).await, "push without ttl");
    assert_expires_within(ttl(cache, "h").await, TimeDelta::zero(), ms(200));
    past_short_ttl().await;
    assert!(range(cache, "h").await.is_empty(), "expired history came back");
    assert_eq!(ok(cache.push("h", json!(3), 10, None).await, "push after expiry"), 1, "a new list starts");
    assert_eq!(ttl(cache, "h").await, KeyTtl::Persistent, "the new list has no expiry");
}

/// `Expiry::At` sets an absolute instant: the key lives until then and is
/// invisible from then on. `expire`, `push` and `incr` take instants too.
pub async fn absolute_expiry_instants_are_honoured(cache: &dyn SessionCache) {
    let at = now_ms() + ms(300);
    assert!(ok(cache.set("k", json!(1), Some(Expiry::At(at)), SetMode::Always).await, "set until"));
    assert_expires_within(ttl(cache, "k").await, TimeDelta::zero(), ms(300));
    ok(cache.push("h", json!(1), 10, Some(Expiry::At(at))).await, "push until");
    ok(cache.incr("c", 1, Some(Expiry::At(at))).await, "incr until");
    set(cache, "e", json!(1), long()).await;
    assert!(ok(cache.expire("e", Expiry::At(at)).await, "expire at"));
    assert_expires_within(ttl(cache, "e").await, TimeDelta::zero(), ms(300));

    tokio::time::sleep((at - now_ms() + ms(200)).to_std().unwrap_or_default()).await;
    for key in ["k", "e"] {
        assert_eq!(get(cache, key).await, None, "{key} outlived its instant");
    }
    assert!(range(cache, "h").await.is_empty(), "history outlived its instant");
    assert_eq!(get(cache, "c").await, None, "counter outlived its instant");
}

/// An instant that has already passed is not an error: the write lands
/// expired (invisible at once), `expire` to it hides the key, and an `incr`
/// on an existing counter still counts (its expiry applies only on create).
/// Instants more than 100 years ahead are `InvalidInput`.
pub async fn past_expiry_instants_write_expired_keys(cache: &dyn SessionCache) {
    let past_at = Expiry::At(now_ms() - ms(1));
    let past = Some(past_at);
    set(cache, "v", json!("old"), None).await;
    assert!(ok(cache.set("v", json!("new"), past, SetMode::Always).await, "set in the past"));
    assert_eq!(get(cache, "v").await, None, "a value set to expire in the past is visible");
    assert_eq!(ttl(cache, "v").await, KeyTtl::Missing);
    set(cache, "e", json!(1), None).await;
    assert!(ok(cache.expire("e", Expiry::At(now_ms() - TimeDelta::days(365 * 80))).await, "expire far back"));
    assert_eq!(get(cache, "e").await, None);
    assert!(!ok(cache.expire("e", past_at).await, "expire missing"));
    assert_eq!(ok(cache.push("h", json!(1), 10, past).await, "push in the past"), 1);
    assert!(range(cache, "h").await.is_empty(), "a list pushed with a past expiry is visible");
    ok(cache.incr("c", 5, None).await, "incr");
    assert_eq!(ok(cache.incr("c", 1, past).await, "incr existing"), 6, "an existing counter still counts");
    assert_eq!(ttl(cache, "c").await, KeyTtl::Persistent);
    let far = Expiry::At(now_ms() + TimeDelta::days(366 * 101));
    assert_kind(cache.set("f", json!(1), Some(far), SetMode::Always).await, ErrorKind::InvalidInput, "too far");
    assert_eq!(get(cache, "f").await, None);
}
