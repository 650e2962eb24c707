//! The reference evaluation of [`Filter`]s, sorts and projections over JSON
//! documents. The memory backend runs it; other backends are tested against it.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::filter::{FieldOp, Filter};
use super::path::{array_index, FieldPath};
use super::value::{cmp_bracketed, cmp_total, values_equal};
use super::{Projection, SortKey, SortOrder};

/// What a path reaches in a document.
#[derive(Debug, Default)]
pub struct Reached<'a> {
    /// Every value the path reaches (arrays on the way are traversed).
    pub values: Vec<&'a Value>,
    /// Whether some branch of the path ended at a missing field.
    pub missing: bool,
}

/// Resolves `path` in `doc` with MongoDB's traversal: a named segment applied to
/// an array is applied to each object element; a numeric segment indexes an
/// array.
pub fn reach<'a>(doc: &'a Value, path: &FieldPath) -> Reached<'a> {
    let mut out = Reached::default();
    walk(doc, path.segments(), &mut out);
    out
}

fn walk<'a>(v: &'a Value, segs: &[String], out: &mut Reached<'a>) {
    let Some((seg, rest)) = segs.split_first() else {
        out.values.push(v);
        return;
    };
    match v {
        Value::Object(m) => match m.get(seg) {
            Some(child) => walk(child, rest, out),
            None => out.missing = true,
        },
        Value::Array(items) => match array_index(seg) {
            Some(i) => match items.get(i) {
                Some(child) => walk(child, rest, out),
                None => out.missing = true,
            },
            None => {
                if items.is_empty() {
                    out.missing = true;
                }
                for item in items {
                    if let Value::Object(m) = item {
                        match m.get(seg) {
                            Some(child) => walk(child, rest, out),
                            None => out.missing = true,
                        }
                    }
                }
            }
        },
        _ => out.missing = true,
    }
}

/// Whether `doc` matches `filter`.
pub fn matches(filter: &Filter, doc: &Value) -> bool {
    match filter {
        Filter::And(fs) => fs.iter().all(|f| matches(f, doc)),
        Filter::Or(fs) => fs.iter().any(|f| matches(f, doc)),
        Filter::Field { path, op } => op_holds(op, &reach(doc, path)),
    }
}

/// Each reached value, plus the elements of reached arrays.
fn candidates<'a>(r: &'a Reached<'a>) -> impl Iterator<Item = &'a Value> + 'a {
    r.values.iter().flat_map(|v| {
        let elems: &'a [Value] = match v {
            Value::Array(a) => a.as_slice(),
            _ => &[],
        };
        std::iter::once(*v).chain(elems.iter())
    })
}

fn eq_holds(x: &Value, r: &Reached<'_>) -> bool {
    if x.is_null() && (r.missing || r.values.is_empty()) {
        return true;
    }
    candidates(r).any(|c| values_equal(c, x))
}

fn cmp_holds(x: &Value, r: &Reached<'_>, ok: fn(Ordering) -> bool) -> bool {
    candidates(r).any(|c| cmp_bracketed(c, x).is_some_and(ok))
}

fn op_holds(op: &FieldOp, r: &Reached<'_>) -> bool {
    match op {
        FieldOp::Eq(x) => eq_holds(x, r),
        FieldOp::Ne(x) => !eq_holds(x, r),
        FieldOp::Gt(x) => cmp_holds(x, r, |o| o == Ordering::Greater),
        FieldOp::Gte(x) => cmp_holds(x, r, |o| o != Ordering::Less),
        FieldOp::Lt(x) => cmp_holds(x, r, |o| o == Ordering::Less),
        FieldOp::Lte(x) => cmp_holds(x, r, |o| o != Ordering::Greater),
        FieldOp::In(xs) => xs.iter().any(|x| eq_holds(x, r)),
        FieldOp::Nin(xs) => !xs.iter().any(|x| eq_holds(x, r)),
        FieldOp::Exists(want) => r.values.is_empty() != *want,
        FieldOp::Not(ops) => !ops.iter().all(|o| op_holds(o, r)),
    }
}

/// The value a document sorts by under `key`: for ascending order the smallest
/// reached value (array elements included), for descending the largest, as
/// MongoDB does; missing sorts as `null`.
pub fn sort_value<'a>(doc: &'a Value, key: &SortKey) -> &'a Value {
    static NULL: Value = Value::Null;
    let r = reach(doc, &key.path);
    let flat = r.values.iter().flat_map(|v| match v {
        Value::Array(a) if !a.is_empty() => a.iter().collect::<Vec<_>>(),
        Value::Array(_) => vec![],
        other => vec![*other],
    });
    let picked = match key.order {
        SortOrder::Asc => flat.min_by(|a, b| cmp_total(a, b)),
        SortOrder::Desc => flat.max_by(|a, b| cmp_total(a, b)),
    };
    picked.unwrap_or(&NULL)
}

/// Orders two documents by `keys`, then by `_id` ascending so results are
/// deterministic.
pub fn cmp_docs(a: &Value, b: &Value, keys: &[SortKey]) -> Ordering {
    for key in keys {
        let o = cmp_total(sort_value(a, key), sort_value(b, key));
        let o = if key.order == SortOrder::Desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    cmp_total(a.get("_id").unwrap_or(&Value::Null), b.get("_id").unwrap_or(&Value::Null))
}

/// Applies a projection. `_id` and `_version` are always kept.
pub fn project(doc: &Value, projection: &Projection) -> Value {
    let Value::Object(m) = doc else { return doc.clone() };
    let mut out = match projection {
        Projection::Include(paths) => {
            let mut out = Map::new();
            for p in paths {
                include(m, p.segments(), &mut out);
            }
            out
        }
        Projection::Exclude(paths) => {
            let mut out = m.clone();
            for p in paths {
                exclude(&mut out, p.segments());
            }
            out
        }
    };
    for reserved in ["_id", "_version"] {
        if let Some(v) = m.get(reserved) {
            out.insert(reserved.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

fn include(src: &Map<String, Value>, segs: &[String], out: &mut Map<String, Value>) {
    let Some((seg, rest)) = segs.split_first() else { return };
    let Some(child) = src.get(seg) else { return };
    if rest.is_empty() {
        out.insert(seg.clone(), child.clone());
        return;
    }
    match child {
        Value::Object(cm) => {
            let slot = out.entry(seg.clone()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(sm) = slot {
                include(cm, rest, sm);
            }
        }
        Value::Array(items) => {
            let projected: Vec<Value> = items
                .iter()
                .filter_map(|item| match item {
                    Value::Object(im) => {
                        let mut o = Map::new();
                        include(im, rest, &mut o);
                        Some(Value::Object(o))
                    }
                    _ => None,
                })
                .collect();
            merge_array(out, seg, projected);
        }
        _ => {}
    }
}

fn merge_array(out: &mut Map<String, Value>, seg: &str, projected: Vec<Value>) {
    match out.get_mut(seg) {
        Some(Value::Array(existing)) if existing.len() == projected.len() => {
            for (e, p) in existing.iter_mut().zip(projected) {
                if let (Value::Object(em), Value::Object(pm)) = (e, p) {
                    em.extend(pm);
                }
            }
        }
        _ => {
            out.insert(seg.to_owned(), Value::Array(projected));
        }
    }
}

fn exclude(m: &mut Map<String, Value>, segs: &[String]) {
    let Some((seg, rest)) = segs.split_first() else { return };
    if rest.is_empty() {
        m.remove(seg);
        return;
    }
    match m.get_mut(seg) {
        Some(Value::Object(cm)) => exclude(cm, rest),
        Some(Value::Array(items)) => {
            for item in items {
                if let Value::Object(im) = item {
                    exclude(im, rest);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(filter: Value, doc: Value) -> bool {
        matches(&Filter::parse(&filter).unwrap(), &doc)
    }

    #[test]
    fn equality_reaches_into_arrays() {
        assert!(m(json!({"tags": "x"}), json!({"tags": ["y", "x"]})));
        assert!(m(json!({"a.b": 2}), json!({"a": [{"b": 1}, {"b": 2}]})));
        assert!(m(json!({"a.1": 5}), json!({"a": [4, 5]})));
        assert!(!m(json!({"a.2": 5}), json!({"a": [4, 5]})));
    }

    #[test]
    fn null_matches_missing_and_ne_matches_missing() {
        assert!(m(json!({"a": null}), json!({})));
        assert!(m(json!({"a": {"$ne": 1}}), json!({})));
        assert!(!m(json!({"a": {"$gt": 0}}), json!({})));
    }

    #[test]
    fn comparisons_respect_type_brackets() {
        assert!(!m(json!({"a": {"$gt": 5}}), json!({"a": "9"})));
        assert!(m(json!({"a": {"$gt": 5}}), json!({"a": 5.5})));
        assert!(m(json!({"a": {"$lt": "b"}}), json!({"a": "B"})));
    }

    #[test]
    fn exists_and_not() {
        assert!(m(json!({"a": {"$exists": true}}), json!({"a": null})));
        assert!(m(json!({"a": {"$exists": false}}), json!({"b": 1})));
        assert!(m(json!({"a": {"$not": {"$gt": 5}}}), json!({"a": 3})));
        assert!(m(json!({"a": {"$not": {"$gt": 5}}}), json!({})));
    }

    #[test]
    fn projection_keeps_id_and_version() {
        let doc = json!({"_id": "1", "_version": 2, "a": {"b": 1, "c": 2}, "d": 3});
        let inc = project(&doc, &Projection::Include(vec![FieldPath::parse("a.b").unwrap()]));
        assert_eq!(inc, json!({"_id": "1", "_version": 2, "a": {"b": 1}}));
        let exc = project(&doc, &Projection::Exclude(vec![FieldPath::parse("a").unwrap()]));
        assert_eq!(exc, json!({"_id": "1", "_version": 2, "d": 3}));
    }
}
