//! Every operation of every store a service gets from `Stores` runs in a
//! `palisade.<op>` span carrying backend, op and namespace — and never the
//! keys, values or documents it handles.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{TimeDelta, Utc};
use palisade::{
    AppendBatch, CollectionSpec, Cursor, EventFilter, Filter, FindOptions, GroupBy, NewEvent, PageRequest, Period,
    ReputationEvent, SetMode, Stores, Subject, SubjectKind, UpdateOps,
};
use palisade_core::time::TimeRange;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Fields of every span opened, by span name (the last span of a name wins).
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}").trim_matches('"').to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.insert(attrs.metadata().name().to_owned(), fields);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut spans = self.0.lock().unwrap();
        if let Some(fields) = spans.get_mut(span.name()) {
            values.record(&mut Fields(fields));
        }
    }
}

const SECRET: &str = "s3cr3t-attacker-payload";

#[tokio::test(flavor = "current_thread")]
async fn every_operation_of_every_store_emits_its_span_without_stored_values() {
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let ns = palisade::Namespace::new("traced").unwrap();
    let s = Stores::memory(ns);

    let e = NewEvent::new("gatekeeper", "blocked").with_data(json!({ "payload": SECRET }));
    s.events.ping().await.unwrap();
    s.events.append(AppendBatch::new(vec![e])).await.unwrap();
    s.events.read(Cursor::Start, 10).await.unwrap();
    drop(s.events.subscribe(Cursor::Start, EventFilter::all()).await.unwrap());
    s.events.query(EventFilter::all(), PageRequest::newest(10)).await.unwrap();
    s.events.count_by(EventFilter::all(), GroupBy::Kind, 10).await.unwrap();
    s.events.purge(Utc::now() - TimeDelta::days(365)).await.unwrap();

    let ttl = Some(TimeDelta::seconds(60).into());
    s.sessions.set(SECRET, json!(SECRET), ttl, SetMode::Always).await.unwrap();
    s.sessions.get(SECRET).await.unwrap();
    s.sessions.expire(SECRET, TimeDelta::seconds(30).into()).await.unwrap();
    s.sessions.ttl(SECRET).await.unwrap();
    s.sessions.delete(SECRET).await.unwrap();
    s.sessions.push("h", json!(SECRET), 10, None).await.unwrap();
    s.sessions.range("h", 10).await.unwrap();
    s.sessions.incr("c", 1, None).await.unwrap();
    s.sessions.hit("rl", 5, TimeDelta::seconds(10)).await.unwrap();

    let d = &s.documents;
    d.ensure_collection(CollectionSpec::new("reports")).await.unwrap();
    d.insert("reports", json!({"_id": "a", "blob": SECRET})).await.unwrap();
    d.insert_many("reports", vec![json!({"_id": "b"})]).await.unwrap();
    d.get("reports", "a").await.unwrap();
    d.replace("reports", "b", json!({"x": SECRET}), None).await.unwrap();
    let secret_filter = Filter::parse(&json!({"blob": SECRET})).unwrap();
    d.update("reports", secret_filter.clone(), UpdateOps::parse(&json!({"$set": {"y": 1}})).unwrap()).await.unwrap();
    d.find("reports", FindOptions::new(secret_filter.clone())).await.unwrap();
    d.count("reports", secret_filter.clone()).await.unwrap();
    d.delete("reports", secret_filter).await.unwrap();
    d.drop_collection("reports").await.unwrap();

    let alice = Subject::user("alice");
    let r = &s.reputation;
    r.record(ReputationEvent::new(alice.clone(), 3, SECRET)).await.unwrap();
    r.score(&alice).await.unwrap();
    r.history(&alice, TimeRange::all(), 10).await.unwrap();
    r.leaderboard(SubjectKind::User, Period::AllTime, 0, 10).await.unwrap();
    r.rank(&alice, Period::AllTime).await.unwrap();
    r.around(&alice, Period::AllTime, 2).await.unwrap();
    r.rebuild(Period::AllTime).await.unwrap();
    // A failure is recorded on its span.
    assert!(s.sessions.get("").await.is_err());

    let spans = spans.0.lock().unwrap().clone();
    let ops = [
        "ping",
        "append",
        "read",
        "subscribe",
        "query",
        "count_by",
        "purge",
        "set",
        "get",
        "expire",
        "ttl",
        "delete",
        "push",
        "range",
        "incr",
        "hit",
        "ensure_collection",
        "insert",
        "insert_many",
        "replace",
        "update",
        "find",
        "count",
        "drop_collection",
        "record",
        "score",
        "history",
        "leaderboard",
        "rank",
        "around",
        "rebuild",
    ];
    for op in ops {
        let fields = spans.get(&format!("palisade.{op}")).unwrap_or_else(|| panic!("no span for {op}: {spans:?}"));
        assert_eq!(fields.get("op").map(String::as_str), Some(op));
        assert_eq!(fields.get("backend").map(String::as_str), Some("memory"));
        assert_eq!(fields.get("namespace").map(String::as_str), Some("traced"));
    }
    let get = &spans["palisade.get"];
    assert_eq!(get.get("error.kind").map(String::as_str), Some("invalid_input"), "{get:?}");
    let all = format!("{spans:?}");
    assert!(!all.contains(SECRET), "a span carries a stored value: {all}");
}
