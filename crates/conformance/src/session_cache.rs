//! Conformance cases for [`SessionCache`].
//!
//! Every case gets a cache in a fresh, empty namespace. TTL cases leave wide
//! margins (a key meant to have expired is read at least 200 ms after its
//! expiry; a key meant to be alive has seconds left), so they hold on a loaded
//! machine and over the network.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use chrono::TimeDelta;
use futures::future::join_all;
use serde_json::{json, Value};

use super::{assert_kind, ok};
use palisade_core::error::ErrorKind;
use palisade_core::sessions::{KeyTtl, SetMode, MAX_HISTORY, MAX_KEY_LEN};
use palisade_core::{Expiry, SessionCache};

// ---------------------------------------------------------------- helpers

fn ms(n: i64) -> TimeDelta {
    TimeDelta::milliseconds(n)
}

/// A TTL short enough to watch expire.
fn short() -> Option<Expiry> {
    Some(ms(200).into())
}

/// A TTL no case outlives.
fn long() -> Option<Expiry> {
    Some(TimeDelta::seconds(60).into())
}

/// Sleeps long enough for a [`short`] TTL to have passed, with margin.
async fn past_short_ttl() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

async fn sleep_ms(n: u64) {
    tokio::time::sleep(Duration::from_millis(n)).await;
}

async fn set(cache: &dyn SessionCache, key: &str, value: Value, expiry: Option<Expiry>) {
    assert!(ok(cache.set(key, value, expiry, SetMode::Always).await, "set"), "set(Always) must write");
}

async fn get(cache: &dyn SessionCache, key: &str) -> Option<Value> {
    ok(cache.get(key).await, "get")
}

async fn ttl(cache: &dyn SessionCache, key: &str) -> KeyTtl {
    ok(cache.ttl(key).await, "ttl")
}

async fn range(cache: &dyn SessionCache, key: &str) -> Vec<Value> {
    ok(cache.range(key, MAX_HISTORY).await, "range")
}

/// Asserts that `t` is an expiry in `(min, max]`.
#[track_caller]
fn assert_expires_within(t: KeyTtl, min: TimeDelta, max: TimeDelta) {
    match t {
        KeyTtl::ExpiresIn(d) => assert!(d > min && d <= max, "ttl {d} is not in ({min}, {max}]"),
        other => panic!("expected a ttl in ({min}, {max}], got {other:?}"),
    }
}

/// Keys that break naive escaping, globbing, hashing, path handling or quoting.
/// All distinct as byte strings.
fn hostile_keys() -> Vec<String> {
    let keys = [
        "a",
        "A",
        "a ",
        " a",
        "a b",
        "a\n",
        "a\r\n",
        "\n",
        "\t",
        "a\0",
        "\0",
        "a\0b",
        "*",
        "a*",
        "?",
        "a?",
        "[",
        "[a-z]",
        "]",
        "^",
        "a:b",
        "a:",
        ":a",
        ":",
        "::",
        "{a}",
        "{}",
        "{",
        "}",
        "../a",
        "a/../b",
        "/",
        "./",
        "..",
        "\\",
        "a\\b",
        "'",
        "\"",
        "`",
        "a'); DROP TABLE t; --",
        "%",
        "%s",
        "%%",
        "$1",
        "$",
        "$where",
        "a.b",
        "_id",
        "null",
        "NULL",
        "\u{feff}a",
        "ä",
        "a\u{308}",
        "ﬁ",
        "fi",
        "İ",
        "i̇",
        "🔑",
        "key\u{202e}",
    ];
    let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len(), "hostile key list has repeats");
    keys
}

/// Keys that mimic another namespace's storage prefix or path.
fn escaping_keys() -> Vec<String> {
    [
        "conf_x:key",
        "conf_0000000000000000:key",
        "{conf}:key",
        "{ns}:key",
        "palisade:key",
        "palisade:conf:key",
        "../b/key",
        "../../key",
        "/key",
        "key",
        "*",
        "*:key",
        "conf_*",
        ":",
        "\0key",
        "key\0",
        "{",
        "}:key",
        "..",
        "%",
    ]
    .iter()
    .map(|k| (*k).to_owned())
    .collect()
}

// ---------------------------------------------------------------- set / get

/// A value that was set is returned by `get`.
pub async fn set_then_get_returns_value(cache: &dyn SessionCache) {
    let value = json!({"user": "u-1", "roles": ["admin"], "mfa": true});
    set(cache, "session:1", value.clone(), None).await;
    assert_eq!(get(cache, "session:1").await, Some(value));
}

/// `get` of a key that was never set is `None`.
pub async fn get_missing_is_none(cache: &dyn SessionCache) {
    set(cache, "present", json!(1), None).await;
    assert_eq!(get(cache, "absent").await, None);
    assert_eq!(get(cache, "presen").await, None, "prefix of a stored key");
}

/// `set` with `Always` replaces an existing value.
pub async fn set_always_overwrites(cache: &dyn SessionCache) {
    set(cache, "k", json!("first"), None).await;
    set(cache, "k", json!({"second": 2}), None).await;
    assert_eq!(get(cache, "k").await, Some(json!({"second": 2})));
}

/// `IfAbsent` writes a missing key and leaves a present one untouched.
pub async fn set_if_absent_writes_only_when_missing(cache: &dyn SessionCache) {
    assert!(ok(cache.set("k", json!(1), None, SetMode::IfAbsent).await, "first IfAbsent"));
    assert_eq!(get(cache, "k").await, Some(json!(1)));
    assert!(!ok(cache.set("k", json!(2), long(), SetMode::IfAbsent).await, "second IfAbsent"), "IfAbsent overwrote");
    assert_eq!(get(cache, "k").await, Some(json!(1)));
    assert_eq!(ttl(cache, "k").await, KeyTtl::Persistent, "a refused IfAbsent changed the TTL");
}

/// `IfAbsent` treats an expired key as absent.
pub async fn set_if_absent_writes_over_expired_key(cache: &dyn SessionCache) {
    set(cache, "k", json!("old"), short()).await;
    past_short_ttl().await;
    assert!(
        ok(cache.set("k", json!("new"), None, SetMode::IfAbsent).await, "IfAbsent"),
        "expired key blocked IfAbsent"
    );
    assert_eq!(get(cache, "k").await, Some(json!("new")));
    assert_eq!(ttl(cache, "k").await, KeyTtl::Persistent, "the new value inherited the old expiry");
}

/// `IfPresent` does not create a missing key, and replaces a present one.
pub async fn set_if_present_writes_only_when_present(cache: &dyn SessionCache) {
    assert!(!ok(cache.set("k", json!(1), None, SetMode::IfPresent).await, "IfPresent on missing"), "IfPresent wrote");
    assert_eq!(get(cache, "k").await, None, "IfPresent created the key");
    set(cache, "k", json!(1), None).await;
    assert!(ok(cache.set("k", json!(2), None, SetMode::IfPresent).await, "IfPresent on present"));
    assert_eq!(get(cache, "k").await, Some(json!(2)));
}

/// `IfPresent` treats an expired key as missing and does not revive it.
pub async fn set_if_present_on_expired_key_does_not_write(cache: &dyn SessionCache) {
    set(cache, "k", json!("old"), short()).await;
    past_short_ttl().await;
    assert!(
        !ok(cache.set("k", json!("new"), None, SetMode::IfPresent).await, "IfPresent"),
        "IfPresent wrote an expired key"
    );
    assert_eq!(get(cache, "k").await, None);
}

/// `set` replaces the TTL along with the value; `None` makes the key persistent.
pub async fn set_replaces_ttl_and_none_persists(cache: &dyn SessionCache) {
    set(cache, "k", json!(1), short()).await;
    set(cache, "k", json!(2), None).await;
    assert_eq!(ttl(cache, "k").await, KeyTtl::Persistent);
    past_short_ttl().await;
    assert_eq!(get(cache, "k").await, Some(json!(2)), "the old TTL survived the set");

    set(cache, "k", json!(3), Some(TimeDelta::seconds(30).into())).await;
    assert_expires_within(ttl(cache, "k").await, TimeDelta::seconds(20), TimeDelta::seconds(30));
}

/// Zero, negative and sub-millisecond TTLs are `InvalidInput` on `set`, `push` and `incr`, and change nothing.
pub async fn ttl_zero_or_negative_is_invalid_input_and_changes_nothing(cache: &dyn SessionCache) {
    set(cache, "k", json!("kept"), None).await;
    for bad in [TimeDelta::zero(), ms(-1), TimeDelta::seconds(-60), TimeDelta::microseconds(500)] {
        assert_kind(
            cache.set("k", json!("new"), Some(bad.into()), SetMode::Always).await,
            ErrorKind::InvalidInput,
            "set existing",
        );
        assert_kind(
            cache.set("fresh", json!(1), Some(bad.into()), SetMode::Always).await,
            ErrorKind::InvalidInput,
            "set new",
        );
        assert_kind(cache.push("list", json!(1), 10, Some(bad.into())).await, ErrorKind::InvalidInput, "push");
        assert_kind(cache.incr("counter", 1, Some(bad.into())).await, ErrorKind::InvalidInput, "incr");
    }
    assert_eq!(get(cache, "k").await, Some(json!("kept")));
    assert_eq!(ttl(cache, "k").await, KeyTtl::Persistent);
    for key in ["fresh", "list", "counter"] {
        assert_eq!(ttl(cache, key).await, KeyTtl::Missing, "{key:?} was created");
    }
}

// ---------------------------------------------------------------- expiry

/// A key is invisible to `get` and `ttl` as soon as its TTL has passed, whatever the backend's sweep does later.
pub async fn expired_key_is_invisible_immediately(cache: &dyn SessionCache) {
    let started = tokio::time::Instant::now();
    set(cache, "k", json!("v"), Some(ms(1_000).into())).await;
    assert_eq!(get(cache, "k").await, Some(json!("v")), "key gone before its TTL");
    tokio::time::sleep_until(started + Duration::from_millis(1_400)).await;
    assert_eq!(get(cache, "k").await, None, "expired key still visible");
    assert_eq!(ttl(cache, "k").await, KeyTtl::Missing);
}

/// `ttl` reports `Missing`, `Persistent`, or the remaining lifetime.
pub async fn ttl_reports_missing_persistent_and_remaining(cache: &dyn SessionCache) {
    assert_eq!(ttl(cache, "missing").await, KeyTtl::Missing);
    set(cache, "forever", json!(1), None).await;
    assert_eq!(ttl(cache, "forever").await, KeyTtl::Persistent);
    set(cache, "minute", json!(1), long()).await;
    assert_expires_within(ttl(cache, "minute").await, TimeDelta::seconds(50), TimeDelta::seconds(60));
}

/// `expire` sets a new TTL on an existing key, which then expires by it.
pub async fn expire_sets_ttl_on_existing_key(cache: &dyn SessionCache) {
    set(cache, "k", json!(1), None).await;
    assert!(ok(cache.expire("k", TimeDelta::seconds(60).into()).await, "expire"));
    assert_expires_within(ttl(cache, "k").await, TimeDelta::seconds(50), TimeDelta::seconds(60));
    assert_eq!(get(cache, "k").await, Some(json!(1)), "expire changed the value");
    assert!(ok(cache.expire("k", ms(200).into()).await, "expire shorter"));
    past_short_ttl().await;
    assert_eq!(get(cache, "k").await, None);
}

/// `expire` on a missing or expired key returns false and creates nothing.
pub async fn expire_on_missing_key_returns_false(cache: &dyn SessionCache) {
    assert!(!ok(cache.expire("missing", TimeDelta::seconds(60).into()).await, "expire missing"));
    assert_eq!(ttl(cache, "missing").await, KeyTtl::Missing);
    set(cache, "gone", json!(1), short()).await;
    past_short_ttl().await;
    assert!(
        !ok(cache.expire("gone", TimeDelta::seconds(60).into()).await, "expire expired"),
        "expire revived an expired key"
    );
    assert_eq!(get(cache, "gone").await, None);
}

/// `expire` with a zero or negative TTL is `InvalidInput` and keeps the key (unlike Redis `EXPIRE k 0`).
pub async fn expire_with_zero_ttl_is_invalid_input(cache: &dyn SessionCache) {
    set(cache, "k", json!(1), None).await;
    assert_kind(cache.expire("k", TimeDelta::zero().into()).await, ErrorKind::InvalidInput, "expire 0");
    assert_kind(cache.expire("k", ms(-1).into()).await, ErrorKind::InvalidInput, "expire -1ms");
    assert_eq!(get(cache, "k").await, Some(json!(1)));
    assert_eq!(ttl(cache, "k").await, KeyTtl::Persistent);
}

/// Setting a key again with a TTL restarts its lifetime from the new write.
pub async fn update_refreshes_ttl(cache: &dyn SessionCache) {
    set(cache, "k", json!(1), Some(ms(2_000).into())).await;
    sleep_ms(1_200).await;
    set(cache, "k", json!(2), Some(ms(2_000).into())).await;
    sleep_ms(1_200).await;
    assert_eq!(get(cache, "k").await, Some(json!(2)), "expired by the first write's TTL");
    assert!(matches!(ttl(cache, "k").await, KeyTtl::ExpiresIn(_)), "refreshed key lost its TTL");
}

/// A key set without a TTL never expires.
pub async fn key_without_ttl_persists(cache: &dyn SessionCache) {
    set(cache, "k", json!(1), None).await;
    set(cache, "short", json!(1), short()).await;
    past_short_ttl().await;
    assert_eq!(get(cache, "short").await, None, "sanity: the short key expired");
    assert_eq!(get(cache, "k").await, Some(json!(1)));
    assert_eq!(ttl(cache, "k").await, KeyTtl::Persistent);
}

/// `delete` removes a key of any type and returns whether it existed.
pub async fn delete_returns_whether_it_existed(cache: &dyn SessionCache) {
    assert!(!ok(cache.delete("k").await, "delete missing"));
    set(cache, "k", json!(1), None).await;
    assert!(ok(cache.delete("k").await, "delete value"));
    assert_eq!(get(cache, "k").await, None);
    assert!(!ok(cache.delete("k").await, "delete again"));

    ok(cache.push("list", json!(1), 10, None).await, "push");
    ok(cache.incr("counter", 1, None).await, "incr");
    assert!(ok(cache.delete("list").await, "delete list"));
    assert!(ok(cache.delete("counter").await, "delete counter"));
    assert!(range(cache, "list").await.is_empty());
    assert_eq!(get(cache, "counter").await, None);
}

/// `delete` of an expired key returns false.
pub async fn delete_of_expired_key_returns_false(cache: &dyn SessionCache) {
    set(cache, "k", json!(1), short()).await;
    past_short_ttl().await;
    assert!(!ok(cache.delete("k").await, "delete expired"), "an expired key counted as existing");
}

/// Values of every JSON type, including awkward strings and field names, come back unchanged.
pub async fn values_of_every_json_type_round_trip(cache: &dyn SessionCache) {
    let values = [
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(-1),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(1.5),
        json!(-0.25),
        json!(""),
        json!("ünïcödé ✓ 🚀"),
        json!("line\nbreak \"quoted\" \\ back\tslash"),
        json!("nul\u{0}inside"),
        json!([]),
        json!([1, "two", null, [true], {"k": 3}]),
        json!({}),
        json!({"nested": {"deep": [{"x": null}]}, "a.b": 1, "$set": 2, "": "empty key", "ключ": "значение"}),
    ];
    for (i, v) in values.iter().enumerate() {
        set(cache, &format!("v{i}"), v.clone(), None).await;
    }
    for (i, v) in values.iter().enumerate() {
        assert_eq!(get(cache, &format!("v{i}")).await.as_ref(), Some(v), "value {i}");
    }
}

// ---------------------------------------------------------------- history

/// `push` keeps only the newest `max_len` entries and returns the new length.
pub async fn push_keeps_newest_max_len_entries(cache: &dyn SessionCache) {
    let mut lengths = Vec::new();
    for n in 1..=7 {
        lengths.push(ok(cache.push("h", json!(n), 5, None).await, "push"));
    }
    assert_eq!(lengths, vec![1, 2, 3, 4, 5, 5, 5]);
    assert_eq!(range(cache, "h").await, vec![json!(7), json!(6), json!(5), json!(4), json!(3)]);
}

/// `range` returns at most `limit` entries, newest first; a missing list is empty; limit 0 is `InvalidInput`.
pub async fn range_is_newest_first_and_respects_limit(cache: &dyn SessionCache) {
    for entry in ["a", "b", "c", "d"] {
        ok(cache.push("h", json!(entry), 10, None).await, "push");
    }
    assert_eq!(ok(cache.range("h", 2).await, "range 2"), vec![json!("d"), json!("c")]);
    assert_eq!(ok(cache.range("h", 10).await, "range 10"), vec![json!("d"), json!("c"), json!("b"), json!("a")]);
    assert!(ok(cache.range("missing", 10).await, "range missing").is_empty());
    assert_kind(cache.range("h", 0).await, ErrorKind::InvalidInput, "range 0");
}

/// A history pushed with a TTL expires as a whole; a later push starts afresh.
pub async fn push_ttl_expires_history(cache: &dyn SessionCache) {
    ok(cache.push("h", json!(1), 10, None).await, "push");
    ok(cache.push("h", json!(2), 10, short()).await, "push with ttl");
    past_short_ttl().await;
    assert!(range(cache, "h").await.is_empty(), "expired history still visible");
    assert_eq!(ttl(cache, "h").await, KeyTtl::Missing);
    assert_eq!(ok(cache.push("h", json!(3), 10, None).await, "push after expiry"), 1, "expired entries came back");
    assert_eq!(range(cache, "h").await, vec![json!(3)]);
}

/// `push` with `max_len` 0 (or above the maximum) is `InvalidInput` and changes nothing.
pub async fn push_zero_max_len_is_invalid_input(cache: &dyn SessionCache) {
    ok(cache.push("h", json!(1), 10, None).await, "push");
    ok(cache.push("h", json!(2), 10, None).await, "push");
    assert_kind(cache.push("h", json!(3), 0, None).await, ErrorKind::InvalidInput, "max_len 0");
    assert_kind(cache.push("h", json!(3), MAX_HISTORY + 1, None).await, ErrorKind::InvalidInput, "max_len too large");
    assert_kind(cache.push("new", json!(3), 0, None).await, ErrorKind::InvalidInput, "max_len 0 on a new key");
    assert_eq!(range(cache, "h").await, vec![json!(2), json!(1)]);
    assert!(range(cache, "new").await.is_empty(), "the rejected push created a list");
}

/// `push` onto a key holding a value (or counter) is `Conflict` and leaves it as it was.
pub async fn push_onto_value_key_is_conflict(cache: &dyn SessionCache) {
    set(cache, "v", json!({"a": 1}), None).await;
    assert_kind(cache.push("v", json!(1), 10, None).await, ErrorKind::Conflict, "push onto a value");
    assert_eq!(get(cache, "v").await, Some(json!({"a": 1})));
    ok(cache.incr("c", 5, None).await, "incr");
    assert_kind(cache.push("c", json!(1), 10, None).await, ErrorKind::Conflict, "push onto a counter");
    assert_eq!(get(cache, "c").await, Some(json!(5)));
}

/// `get` of a key holding a history list is `Conflict`; the list is untouched.
pub async fn get_of_history_key_is_conflict(cache: &dyn SessionCache) {
    ok(cache.push("h", json!("entry"), 10, None).await, "push");
    assert_kind(cache.get("h").await, ErrorKind::Conflict, "get of a history");
    assert_eq!(range(cache, "h").await, vec![json!("entry")]);
}

// ---------------------------------------------------------------- counters

/// `incr` creates a counter at 0, adds `by` (also negative or zero) and returns the new value.
pub async fn incr_creates_counter_and_returns_new_value(cache: &dyn SessionCache) {
    assert_eq!(ok(cache.incr("c", 5, None).await, "incr"), 5);
    assert_eq!(ok(cache.incr("c", -2, None).await, "decr"), 3);
    assert_eq!(ok(cache.incr("c", 0, None).await, "incr 0"), 3);
    assert_eq!(ok(cache.incr("d", -4, None).await, "create negative"), -4);
}

/// `ttl_on_create` applies only when `incr` creates the key; later calls keep the expiry.
pub async fn incr_ttl_applies_only_on_create(cache: &dyn SessionCache) {
    ok(cache.incr("c", 1, long()).await, "incr create");
    assert_expires_within(ttl(cache, "c").await, TimeDelta::seconds(50), TimeDelta::seconds(60));
    ok(cache.incr("c", 1, short()).await, "incr existing");
    assert_expires_within(ttl(cache, "c").await, TimeDelta::seconds(50), TimeDelta::seconds(60));

    ok(cache.incr("p", 1, None).await, "incr create persistent");
    ok(cache.incr("p", 1, short()).await, "incr persistent with ttl");
    past_short_ttl().await;
    assert_eq!(get(cache, "c").await, Some(json!(2)));
    assert_eq!(get(cache, "p").await, Some(json!(2)));
    assert_eq!(ttl(cache, "p").await, KeyTtl::Persistent);
}

/// `incr` of a value that is not a JSON integer, or of a history, is `Conflict` and leaves it unchanged.
pub async fn incr_on_non_integer_is_conflict(cache: &dyn SessionCache) {
    let values = [json!("abc"), json!("41"), json!(1.5), json!(null), json!(true), json!({"n": 1}), json!([1])];
    for (i, v) in values.iter().enumerate() {
        let key = format!("v{i}");
        set(cache, &key, v.clone(), None).await;
        assert_kind(cache.incr(&key, 1, None).await, ErrorKind::Conflict, &format!("incr of {v}"));
        assert_eq!(get(cache, &key).await.as_ref(), Some(v), "incr changed {v}");
    }
    ok(cache.push("h", json!(1), 10, None).await, "push");
    assert_kind(cache.incr("h", 1, None).await, ErrorKind::Conflict, "incr of a history");
    assert_eq!(range(cache, "h").await, vec![json!(1)]);
}

/// An `incr` that would leave the `i64` range is `Conflict` and leaves the counter unchanged.
pub async fn incr_overflow_is_conflict(cache: &dyn SessionCache) {
    assert_eq!(ok(cache.incr("up", i64::MAX, None).await, "incr to max"), i64::MAX);
    assert_kind(cache.incr("up", 1, None).await, ErrorKind::Conflict, "incr past max");
    assert_eq!(get(cache, "up").await, Some(json!(i64::MAX)));
    assert_eq!(ok(cache.incr("down", i64::MIN, None).await, "incr to min"), i64::MIN);
    assert_kind(cache.incr("down", -1, None).await, ErrorKind::Conflict, "incr past min");
    assert_eq!(get(cache, "down").await, Some(json!(i64::MIN)));
}

/// 32 concurrent tasks incrementing one counter lose no update.
pub async fn incr_under_32_concurrent_tasks_loses_no_update(cache: &dyn SessionCache) {
    let tasks = (0..32).map(|_| async move {
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(ok(cache.incr("c", 1, long()).await, "incr"));
        }
        seen
    });
    let mut returned: Vec<i64> = join_all(tasks).await.into_iter().flatten().collect();
    returned.sort_unstable();
    assert_eq!(returned, (1..=160).collect::<Vec<i64>>(), "each increment must see a distinct value");
    assert_eq!(get(cache, "c").await, Some(json!(160)));
}

/// A counter is a plain JSON integer: `get` reads it, and `incr` continues from an integer written by `set`.
pub async fn counter_is_readable_with_get(cache: &dyn SessionCache) {
    ok(cache.incr("c", 7, None).await, "incr");
    assert_eq!(get(cache, "c").await, Some(json!(7)));
    ok(cache.incr("c", -3, None).await, "decr");
    assert_eq!(get(cache, "c").await, Some(json!(4)));
    set(cache, "s", json!(41), None).await;
    assert_eq!(ok(cache.incr("s", 1, None).await, "incr of a set integer"), 42);
    assert_eq!(get(cache, "s").await, Some(json!(42)));
}

// ---------------------------------------------------------------- rate limits

/// `hit` allows `limit` hits, then denies with `retry_after`; denied hits count too (a JSON integer at the key).
pub async fn hit_allows_up_to_limit_then_denies_with_retry_after(cache: &dyn SessionCache) {
    let window = TimeDelta::seconds(60);
    for n in 1..=3u32 {
        let d = ok(cache.hit("rl", 3, window).await, "hit");
        assert!(d.allowed, "hit {n} of 3 denied");
        assert_eq!((d.count, d.remaining, d.retry_after), (u64::from(n), 3 - n, None), "hit {n}");
        assert!(d.reset_after > TimeDelta::zero() && d.reset_after <= window, "reset_after {}", d.reset_after);
    }
    for n in 4..=5u64 {
        let d = ok(cache.hit("rl", 3, window).await, "hit over the limit");
        assert!(!d.allowed, "hit {n} of 3 allowed");
        assert_eq!((d.count, d.remaining), (n, 0));
        let retry = d.retry_after.expect("a denied hit says when to retry");
        assert!(retry > TimeDelta::seconds(50) && retry <= window, "retry_after {retry}");
    }
    assert_eq!(get(cache, "rl").await, Some(json!(5)), "counter under the key");
}

/// The window is fixed (from the first hit, not extended by denied hits); once it ends, hits count from 1 again.
pub async fn hit_window_resets_after_it_expires(cache: &dyn SessionCache) {
    let window = ms(2_000);
    assert!(ok(cache.hit("rl", 1, window).await, "first hit").allowed);
    sleep_ms(1_200).await;
    assert!(!ok(cache.hit("rl", 1, window).await, "hit inside the window").allowed, "limit not enforced");
    sleep_ms(1_200).await;
    let d = ok(cache.hit("rl", 1, window).await, "hit in the next window");
    assert!(d.allowed, "the window did not end 2s after its first hit (sliding window?)");
    assert_eq!(d.count, 1, "the new window must count from 1");
}

/// With `limit = 10`, exactly 10 of 32 concurrent hits are allowed and all 32 are counted.
pub async fn hit_under_32_concurrent_tasks_allows_exactly_limit(cache: &dyn SessionCache) {
    let hits = (0..32).map(|_| cache.hit("rl", 10, TimeDelta::seconds(60)));
    let decisions: Vec<_> = join_all(hits).await.into_iter().map(|r| ok(r, "hit")).collect();
    assert_eq!(decisions.iter().filter(|d| d.allowed).count(), 10, "allowed hits");
    let mut counts: Vec<u64> = decisions.iter().map(|d| d.count).collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=32).collect::<Vec<u64>>(), "each hit must see a distinct count");
    assert!(decisions.iter().all(|d| d.allowed == (d.count <= 10)), "allowed must follow the count");
    assert_eq!(get(cache, "rl").await, Some(json!(32)));
}

/// A zero limit or a zero/negative window is `InvalidInput` and counts nothing.
pub async fn hit_zero_limit_or_window_is_invalid_input(cache: &dyn SessionCache) {
    assert_kind(cache.hit("rl", 0, TimeDelta::seconds(60)).await, ErrorKind::InvalidInput, "limit 0");
    assert_kind(cache.hit("rl", 5, TimeDelta::zero()).await, ErrorKind::InvalidInput, "window 0");
    assert_kind(cache.hit("rl", 5, TimeDelta::seconds(-1)).await, ErrorKind::InvalidInput, "negative window");
    assert_eq!(ttl(cache, "rl").await, KeyTtl::Missing, "a rejected hit created the counter");
}

// ---------------------------------------------------------------- keys

/// Keys with spaces, newlines, NUL, glob, path and quote characters or look-alike unicode stay distinct.
pub async fn hostile_keys_stay_distinct(cache: &dyn SessionCache) {
    let keys = hostile_keys();
    for (i, k) in keys.iter().enumerate() {
        set(cache, k, json!(i), None).await;
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(get(cache, k).await, Some(json!(i)), "key {k:?}");
    }
    assert!(ok(cache.delete("*").await, "delete *"));
    for (i, k) in keys.iter().enumerate().filter(|(_, k)| *k != "*") {
        assert_eq!(get(cache, k).await, Some(json!(i)), "deleting `*` touched {k:?}");
    }
    let star = keys.iter().position(|k| k == "a*").expect("`a*` is a hostile key");
    assert_eq!(ok(cache.incr("a*", 1, None).await, "incr a*"), star as i64 + 1);
    assert_eq!(get(cache, "a").await, Some(json!(0)), "incr of `a*` touched `a`");
}

/// Unicode keys (counted in bytes, up to 1024) work with every operation.
pub async fn unicode_keys_round_trip(cache: &dyn SessionCache) {
    let mut keys: Vec<String> =
        ["ключ", "鍵", "🔑🚀", "ä", "a\u{308}", "مفتاح", "\u{10ffff}"].map(String::from).to_vec();
    keys.push("🔑".repeat(MAX_KEY_LEN / 4));
    for (i, k) in keys.iter().enumerate() {
        set(cache, k, json!(i), long()).await;
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(get(cache, k).await, Some(json!(i)), "key {k:?}");
        assert!(matches!(ttl(cache, k).await, KeyTtl::ExpiresIn(_)), "ttl of {k:?}");
    }
    for k in &keys {
        assert!(ok(cache.delete(k).await, "delete"), "delete {k:?}");
        ok(cache.push(k, json!(k), 10, None).await, "push");
        assert_eq!(range(cache, k).await, vec![json!(k)], "history {k:?}");
        assert!(ok(cache.delete(k).await, "delete history"), "delete history {k:?}");
        assert_eq!(ok(cache.incr(k, 2, None).await, "incr"), 2, "counter {k:?}");
    }
}

/// A 1024-byte key works; 1025 bytes (or 1024 two-byte chars) is `InvalidInput` on every operation.
pub async fn key_of_1024_bytes_is_accepted_and_1025_rejected(cache: &dyn SessionCache) {
    let ascii = "k".repeat(MAX_KEY_LEN);
    let wide = "🔑".repeat(MAX_KEY_LEN / 4);
    assert_eq!((ascii.len(), wide.len()), (MAX_KEY_LEN, MAX_KEY_LEN));
    for key in [&ascii, &wide] {
        set(cache, key, json!("max"), None).await;
        assert_eq!(get(cache, key).await, Some(json!("max")), "1024-byte key");
    }

    let too_long = [format!("{ascii}k"), format!("{wide}k"), "é".repeat(MAX_KEY_LEN)];
    for key in &too_long {
        assert_invalid_key_everywhere(cache, key).await;
    }
    assert_eq!(get(cache, &ascii).await, Some(json!("max")), "a rejected key reached its 1024-byte prefix");
}

/// The empty key is `InvalidInput` on every operation.
pub async fn empty_key_is_invalid_input(cache: &dyn SessionCache) {
    assert_invalid_key_everywhere(cache, "").await;
}

async fn assert_invalid_key_everywhere(cache: &dyn SessionCache, key: &str) {
    let what = |op: &str| format!("{op} with a key of {} bytes", key.len());
    let minute = TimeDelta::seconds(60);
    assert_kind(cache.set(key, json!(1), None, SetMode::Always).await, ErrorKind::InvalidInput, &what("set"));
    assert_kind(cache.get(key).await, ErrorKind::InvalidInput, &what("get"));
    assert_kind(cache.delete(key).await, ErrorKind::InvalidInput, &what("delete"));
    assert_kind(cache.expire(key, minute.into()).await, ErrorKind::InvalidInput, &what("expire"));
    assert_kind(cache.ttl(key).await, ErrorKind::InvalidInput, &what("ttl"));
    assert_kind(cache.push(key, json!(1), 10, None).await, ErrorKind::InvalidInput, &what("push"));
    assert_kind(cache.range(key, 10).await, ErrorKind::InvalidInput, &what("range"));
    assert_kind(cache.incr(key, 1, None).await, ErrorKind::InvalidInput, &what("incr"));
    assert_kind(cache.hit(key, 5, minute).await, ErrorKind::InvalidInput, &what("hit"));
}

// ---------------------------------------------------------------- namespaces

/// Two namespaces share no values, histories, counters or rate limits.
pub async fn namespaces_are_isolated(a: &dyn SessionCache, b: &dyn SessionCache) {
    set(a, "k", json!("a"), None).await;
    ok(a.push("h", json!("a"), 10, None).await, "push a");
    ok(a.incr("c", 5, None).await, "incr a");
    ok(a.hit("rl", 1, TimeDelta::seconds(60)).await, "hit a");

    assert_eq!(get(b, "k").await, None, "b sees a's value");
    assert!(range(b, "h").await.is_empty(), "b sees a's history");
    assert_eq!(ok(b.incr("c", 1, None).await, "incr b"), 1, "b shares a's counter");
    assert!(ok(b.hit("rl", 1, TimeDelta::seconds(60)).await, "hit b").allowed, "b shares a's rate limit");
    assert!(ok(b.set("k", json!("b"), None, SetMode::IfAbsent).await, "IfAbsent in b"), "b sees a's key");
    assert!(!ok(b.delete("h").await, "delete in b"), "b deleted a's history");

    assert_eq!(get(a, "k").await, Some(json!("a")), "b's write reached a");
    assert_eq!(get(a, "c").await, Some(json!(5)));
    assert_eq!(range(a, "h").await, vec![json!("a")]);
    assert_eq!(get(b, "k").await, Some(json!("b")));
}

/// Keys mimicking other namespaces' prefixes, hash tags or paths stay in their namespace, both ways.
pub async fn hostile_keys_cannot_reach_another_namespace(a: &dyn SessionCache, b: &dyn SessionCache) {
    let mut keys = escaping_keys();
    keys.extend(hostile_keys());
    let keys: Vec<String> = keys.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
    for (i, k) in keys.iter().enumerate() {
        set(a, k, json!(i), None).await;
    }
    for k in &keys {
        assert_eq!(get(b, k).await, None, "b sees a's key {k:?}");
        assert!(!ok(b.delete(k).await, "delete in b"), "b deleted a's key {k:?}");
    }
    for k in &keys {
        set(b, k, json!("b"), None).await;
        ok(b.expire(k, ms(200).into()).await, "expire in b");
    }
    past_short_ttl().await;
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(get(a, k).await, Some(json!(i)), "b's write or expiry reached a's key {k:?}");
        assert_eq!(ttl(a, k).await, KeyTtl::Persistent, "b's expire reached a's key {k:?}");
    }
}

mod hostile;
pub use hostile::*;
