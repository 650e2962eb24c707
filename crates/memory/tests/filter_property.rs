//! Property test: the memory backend's `find`/`count` agree with a
//! straightforward reference evaluation of the JSON filter, written here
//! independently of core's parser and matcher.

use std::cmp::Ordering;

use palisade_core::documents::{CollectionSpec, Filter, FindOptions};
use palisade_core::{DocumentStore, Namespace};
use palisade_memory::{MemoryConfig, MemoryDocumentStore};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

// ---------- reference evaluation, straight from MongoDB's documented rules ----------

/// Values reached by a dotted path (arrays traversed), and whether a branch
/// ran into a missing field.
fn reached(doc: &Value, path: &str) -> (Vec<Value>, bool) {
    let mut frontier = vec![doc.clone()];
    let mut missing = false;
    for seg in path.split('.') {
        let mut next = Vec::new();
        for v in frontier {
            match v {
                Value::Object(m) => match m.get(seg) {
                    Some(c) => next.push(c.clone()),
                    None => missing = true,
                },
                Value::Array(items) => {
                    if let Ok(i) = seg.parse::<usize>() {
                        match items.get(i) {
                            Some(c) => next.push(c.clone()),
                            None => missing = true,
                        }
                    } else {
                        if items.is_empty() {
                            missing = true;
                        }
                        for item in items {
                            if let Value::Object(m) = item {
                                match m.get(seg) {
                                    Some(c) => next.push(c.clone()),
                                    None => missing = true,
                                }
                            }
                        }
                    }
                }
                _ => missing = true,
            }
        }
        frontier = next;
    }
    (frontier, missing)
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn deep_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => num(a) == num(b),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| deep_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| deep_eq(v, w)))
        }
        _ => a == b,
    }
}

fn flattened(vals: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for v in vals {
        out.push(v.clone());
        if let Value::Array(items) = v {
            out.extend(items.iter().cloned());
        }
    }
    out
}

fn equals(doc: &Value, path: &str, x: &Value) -> bool {
    let (vals, missing) = reached(doc, path);
    if x.is_null() && (missing || vals.is_empty()) {
        return true;
    }
    flattened(&vals).iter().any(|c| deep_eq(c, x))
}

fn compare(doc: &Value, path: &str, x: &Value, want: fn(Ordering) -> bool) -> bool {
    let (vals, _) = reached(doc, path);
    flattened(&vals).iter().any(|c| {
        let ord = match (c, x) {
            (Value::Number(_), Value::Number(_)) => num(c).partial_cmp(&num(x)),
            (Value::String(p), Value::String(q)) => Some(p.chars().cmp(q.chars())),
            (Value::Bool(p), Value::Bool(q)) => Some(p.cmp(q)),
            _ => None,
        };
        ord.is_some_and(want)
    })
}

fn op_holds(doc: &Value, path: &str, op: &str, x: &Value) -> bool {
    match op {
        "$eq" => equals(doc, path, x),
        "$ne" => !equals(doc, path, x),
        "$gt" => compare(doc, path, x, |o| o == Ordering::Greater),
        "$gte" => compare(doc, path, x, |o| o != Ordering::Less),
        "$lt" => compare(doc, path, x, |o| o == Ordering::Less),
        "$lte" => compare(doc, path, x, |o| o != Ordering::Greater),
        "$in" => x.as_array().is_some_and(|xs| xs.iter().any(|x| equals(doc, path, x))),
        "$nin" => !x.as_array().is_some_and(|xs| xs.iter().any(|x| equals(doc, path, x))),
        "$exists" => reached(doc, path).0.is_empty() != x.as_bool().unwrap_or(false),
        "$not" => !x.as_object().is_some_and(|m| m.iter().all(|(o, y)| op_holds(doc, path, o, y))),
        other => panic!("reference: unknown operator {other}"),
    }
}

fn reference(doc: &Value, filter: &Value) -> bool {
    filter.as_object().is_some_and(|m| {
        m.iter().all(|(k, v)| match k.as_str() {
            "$and" => v.as_array().is_some_and(|fs| fs.iter().all(|f| reference(doc, f))),
            "$or" => v.as_array().is_some_and(|fs| fs.iter().any(|f| reference(doc, f))),
            path => match v {
                Value::Object(ops) if ops.keys().all(|o| o.starts_with('$')) && !ops.is_empty() => {
                    ops.iter().all(|(o, x)| op_holds(doc, path, o, x))
                }
                literal => equals(doc, path, literal),
            },
        })
    })
}

// ---------- generators ----------

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..4).prop_map(Value::from),
        prop::sample::select(vec![-1.5f64, 0.5, 2.0, 3.0]).prop_map(Value::from),
        prop::sample::select(vec!["", "a", "B", "é", "ab", "2"]).prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => scalar(),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::from),
        1 => (scalar(), scalar()).prop_map(|(b, c)| json!({"b": b, "c": c})),
        1 => prop::collection::vec((scalar(), scalar()).prop_map(|(b, c)| json!({"b": b, "c": c})), 0..3).prop_map(Value::from),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(vec!["a", "b", "c"]), value()), 0..4).prop_map(|fields| {
        let mut m = Map::new();
        for (k, v) in fields {
            m.insert(k.to_owned(), v);
        }
        Value::Object(m)
    })
}

fn path() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "a.b", "a.c", "b.0", "c.1.b"]).prop_map(str::to_owned)
}

fn condition() -> impl Strategy<Value = Value> {
    let cmp_operand = prop_oneof![
        (-3i64..4).prop_map(Value::from),
        Just(json!(0.5)),
        Just(json!("a")),
        Just(json!("B")),
        any::<bool>().prop_map(Value::from)
    ];
    let op = prop_oneof![
        scalar().prop_map(|x| json!({ "$eq": x })),
        scalar().prop_map(|x| json!({ "$ne": x })),
        cmp_operand.clone().prop_map(|x| json!({ "$gt": x })),
        cmp_operand.clone().prop_map(|x| json!({ "$gte": x })),
        cmp_operand.clone().prop_map(|x| json!({ "$lt": x })),
        cmp_operand.clone().prop_map(|x| json!({ "$lte": x })),
        prop::collection::vec(scalar(), 0..3).prop_map(|xs| json!({ "$in": xs })),
        prop::collection::vec(scalar(), 0..3).prop_map(|xs| json!({ "$nin": xs })),
        any::<bool>().prop_map(|b| json!({ "$exists": b })),
        cmp_operand.prop_map(|x| json!({ "$not": { "$gt": x } })),
    ];
    prop_oneof![3 => op, 1 => value()]
}

fn filter() -> impl Strategy<Value = Value> {
    let leaf = (path(), condition()).prop_map(|(p, c)| json!({ p: c }));
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(|fs| json!({ "$and": fs })),
            prop::collection::vec(inner, 1..3).prop_map(|fs| json!({ "$or": fs })),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn memory_find_agrees_with_reference_evaluation(docs in prop::collection::vec(document(), 1..25), filters in prop::collection::vec(filter(), 1..12)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let store = MemoryDocumentStore::new(Namespace::new("prop").unwrap(), &MemoryConfig::default());
            store.ensure_collection(CollectionSpec::new("docs")).await.unwrap();
            let stored = store.insert_many("docs", docs).await.unwrap();
            for f in &filters {
                let parsed = Filter::parse(f).unwrap();
                let mut got: Vec<String> = store.find("docs", FindOptions::new(parsed.clone())).await.unwrap()
                    .iter().map(|d| d["_id"].as_str().unwrap().to_owned()).collect();
                got.sort();
                let mut want: Vec<String> = stored.iter().filter(|d| reference(d, f))
                    .map(|d| d["_id"].as_str().unwrap().to_owned()).collect();
                want.sort();
                prop_assert_eq!(&got, &want, "filter {}", f);
                prop_assert_eq!(store.count("docs", parsed).await.unwrap(), want.len() as u64, "count for {}", f);
            }
            Ok(())
        })?;
    }
}
