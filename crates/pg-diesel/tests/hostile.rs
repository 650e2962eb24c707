//! Rows that today's input policy would refuse — written by a permissive
//! writer or straight into the tables, as older versions could — never make
//! a read fail (see `palisade_conformance::poisoned`), on both Postgres
//! backends: each case runs on pg-sqlx and on pg-diesel.
//! Needs `PALISADE_TEST_POSTGRES_URL`; skipped with a notice without it,
//! unless `PALISADE_REQUIRE` names `postgres`.

mod common;

use palisade_conformance::poisoned::{self, POISON_DEPTH};
use palisade_core::backend::stored::decode_stored_json;
use palisade_core::documents::{CollectionSpec, Filter, FindOptions};
use palisade_core::events::{AppendBatch, Cursor, EventFilter, NewEvent, PageRequest};
use serde_json::json;

use common::{backend, on_both, Ctx};

/// `{"a": … 1}` nested `depth` deep, as JSON text.
fn deep_text(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

/// A backend of the same driver on the case's namespace that accepts what
/// the default policy refuses.
async fn permissive(ctx: &Ctx) -> std::sync::Arc<dyn palisade_core::backend::Backend> {
    backend(ctx.driver, &ctx.url, &ctx.ns, poisoned::permissive()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_event_rows_read_back_intact() {
    on_both(|ctx| async move {
        let permissive = permissive(&ctx).await;
        let (writer, reader) = (permissive.events().unwrap(), ctx.backend.events().unwrap());
        poisoned::deep_event_reads_back_intact(&*writer, &*reader).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_session_rows_read_back_intact() {
    on_both(|ctx| async move {
        let permissive = permissive(&ctx).await;
        let (writer, reader) = (permissive.sessions().unwrap(), ctx.backend.sessions().unwrap());
        poisoned::deep_session_value_reads_back_intact(&*writer, &*reader).await;
    })
    .await;
}

/// A document body written straight into the table, deeper than any write
/// path allows, reads back intact and leaves the other documents readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_document_rows_written_by_sql_read_back_intact() {
    on_both(|ctx| async move {
        let docs = ctx.backend.documents().unwrap();
        docs.ensure_collection(CollectionSpec::new("legacy")).await.unwrap();
        docs.insert("legacy", json!({"_id": "deep", "s": 1})).await.unwrap();
        docs.insert("legacy", json!({"_id": "plain", "s": 1})).await.unwrap();
        let body = format!(r#"{{"_id": "deep", "_version": 1, "s": 1, "d": {}}}"#, deep_text(POISON_DEPTH));
        sqlx::query("UPDATE documents SET body = $1::jsonb WHERE collection = 'legacy' AND id = 'deep'")
            .bind(&body)
            .execute(&ctx.raw)
            .await
            .unwrap();
        let want = decode_stored_json(body.as_bytes()).unwrap();
        assert_eq!(docs.get("legacy", "deep").await.unwrap(), Some(want.clone()));
        let found = docs.find("legacy", FindOptions::new(Filter::parse(&json!({"s": 1})).unwrap())).await.unwrap();
        assert_eq!(found, vec![want, json!({"_id": "plain", "_version": 1, "s": 1})]);
        assert_eq!(docs.count("legacy", Filter::all()).await.unwrap(), 2);
    })
    .await;
}

/// Event data written straight into the table (not through `append`) reads
/// back intact: the binary `jsonb` decoding has no recursion limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_event_data_written_by_sql_reads_back_intact() {
    on_both(|ctx| async move {
        let events = ctx.backend.events().unwrap();
        events.append(AppendBatch::new(vec![NewEvent::new("legacy", "raw")])).await.unwrap();
        let data = deep_text(POISON_DEPTH);
        sqlx::query("UPDATE events SET data = $1::jsonb").bind(&data).execute(&ctx.raw).await.unwrap();
        let read = events.read(Cursor::Start, 10).await.unwrap();
        assert_eq!(read[0].data, decode_stored_json(data.as_bytes()).unwrap());
    })
    .await;
}

/// Migration 0008 re-encodes a bare U+0001 stored before the U+0000 encoding
/// existed, so such rows read back unchanged; escaped backslashes next to it
/// are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_u0001_from_before_the_encoding_reads_back_unchanged() {
    on_both(|ctx| async move {
        let docs = ctx.backend.documents().unwrap();
        docs.ensure_collection(CollectionSpec::new("old")).await.unwrap();
        docs.insert("old", json!({"_id": "d", "s": "x"})).await.unwrap();
        let old =
            json!({"_id": "d", "_version": 1, "k\u{1}": "a\u{1}\u{1}b", "lit": "\\u0001", "mix": "\\\u{1}", "s": "x"});
        // What an older version wrote: the raw value, not encoded.
        sqlx::query("UPDATE documents SET body = palisade_encode_u0001($1::jsonb) WHERE id = 'd'")
            .bind(&old)
            .execute(&ctx.raw)
            .await
            .unwrap();
        assert_eq!(docs.get("old", "d").await.unwrap(), Some(old.clone()));
        let found = docs.find("old", FindOptions::new(Filter::parse(&json!({"mix": "\\\u{1}"})).unwrap())).await;
        assert_eq!(found.unwrap().len(), 1, "filters match the re-encoded value");
    })
    .await;
}

/// Rows written straight into the tables with what no write path produces —
/// a `jsonb` number beyond `f64` (`1e400`), a NULL tag — read back: the
/// number as the string of its text (Postgres stores `numeric` digits in full),
/// the NULL tag dropped; neither fails
/// `read`, `query`, `get` or `find`, nor hides the rows around it. An update,
/// which would write the number back as a string, refuses instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_beyond_f64_and_null_tags_written_by_sql_never_fail_a_read() {
    on_both(|ctx| async move {
        let events = ctx.backend.events().unwrap();
        let batch = (0..3).map(|i| NewEvent::new("legacy", "raw").with_data(json!({"i": i}))).collect();
        events.append(AppendBatch::new(batch)).await.unwrap();
        sqlx::query(
            "UPDATE events SET data = '{\"i\": 1, \"big\": 1e400}'::jsonb, tags = ARRAY['t', NULL] \
             WHERE data = '{\"i\": 1}'::jsonb",
        )
        .execute(&ctx.raw)
        .await
        .unwrap();
        let read = events.read(Cursor::Start, 10).await.unwrap();
        let data: Vec<_> = read.iter().map(|e| e.data.clone()).collect();
        let big = format!("1{}", "0".repeat(400));
        assert_eq!(data, vec![json!({"i": 0}), json!({"i": 1, "big": big}), json!({"i": 2})]);
        assert_eq!(read[1].tags, vec!["t".to_owned()]);
        let page = events.query(EventFilter::default(), PageRequest::newest(10)).await.unwrap();
        assert_eq!(page.items.len(), 3, "query reads past the row as well");

        let docs = ctx.backend.documents().unwrap();
        docs.ensure_collection(CollectionSpec::new("legacy")).await.unwrap();
        docs.insert("legacy", json!({"_id": "big", "s": 1})).await.unwrap();
        docs.insert("legacy", json!({"_id": "plain", "s": 1})).await.unwrap();
        sqlx::query("UPDATE documents SET body = body || '{\"n\": -2e999}'::jsonb WHERE id = 'big'")
            .execute(&ctx.raw)
            .await
            .unwrap();
        let big = json!({"_id": "big", "_version": 1, "s": 1, "n": format!("-2{}", "0".repeat(999))});
        assert_eq!(docs.get("legacy", "big").await.unwrap(), Some(big.clone()));
        let found = docs.find("legacy", FindOptions::new(Filter::parse(&json!({"s": 1})).unwrap())).await.unwrap();
        assert_eq!(found, vec![big.clone(), json!({"_id": "plain", "_version": 1, "s": 1})]);
        // An update would write the body back: it refuses (typed), changing nothing.
        let set = palisade_core::documents::UpdateOps::parse(&json!({"$set": {"t": 1}})).unwrap();
        let refused = docs.update("legacy", Filter::parse(&json!({"s": 1})).unwrap(), set).await.unwrap_err();
        assert_eq!(refused.kind(), palisade_core::ErrorKind::Serialization, "{refused}");
        assert_eq!(docs.get("legacy", "big").await.unwrap(), Some(big));
        assert_eq!(docs.get("legacy", "plain").await.unwrap().unwrap()["_version"], 1, "all or nothing");
    })
    .await;
}

/// Timestamps Postgres stores but chrono cannot hold (`infinity`, years
/// beyond ±262,142), written around the store, never fail a read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_beyond_chrono_written_by_sql_never_fail_a_read() {
    on_both(|ctx| async move {
        let events = ctx.backend.events().unwrap();
        let batch = (0..3).map(|i| NewEvent::new("legacy", "raw").with_data(json!({"i": i}))).collect();
        events.append(AppendBatch::new(batch)).await.unwrap();
        sqlx::query("UPDATE events SET occurred_at = 'infinity' WHERE data = '{\"i\": 0}'::jsonb")
            .execute(&ctx.raw)
            .await
            .unwrap();
        sqlx::query("UPDATE events SET occurred_at = '290000-01-01 00:00:00+00' WHERE data = '{\"i\": 1}'::jsonb")
            .execute(&ctx.raw)
            .await
            .unwrap();
        let read = events.read(Cursor::Start, 10).await.unwrap();
        let at: Vec<_> = read.iter().map(|e| e.occurred_at).collect();
        let max = palisade_core::time::max_instant();
        assert_eq!(at[..2], [max, max], "{}: the nearest instant a store keeps", ctx.driver);
        assert!(at[2] < max);
        let page = events.query(EventFilter::default(), PageRequest::newest(10)).await.unwrap();
        assert_eq!(page.items.len(), 3, "query reads past the rows as well");

        let reputation = ctx.backend.reputation().unwrap();
        let subject = palisade_core::reputation::Subject::user("u1");
        reputation.record(palisade_core::reputation::ReputationEvent::new(subject.clone(), 5, "r")).await.unwrap();
        sqlx::query("UPDATE reputation_events SET at = '-infinity'").execute(&ctx.raw).await.unwrap();
        let history = reputation.history(&subject, palisade_core::time::TimeRange::all(), 10).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].at, palisade_core::time::min_instant());
    })
    .await;
}
