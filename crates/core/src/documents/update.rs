//! Update operators (`$set $unset $inc $push`), parsed once and applied with
//! MongoDB's semantics.

use serde_json::{Map, Number, Value};

use super::path::{array_index, FieldPath};
use super::validate_fields;
use crate::error::{Error, Result};

/// One update operation.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOp {
    /// Sets the field, creating intermediate objects.
    Set(FieldPath, Value),
    /// Removes the field (an array element becomes `null`); missing is a no-op.
    Unset(FieldPath),
    /// Adds a number; a missing field is created with the increment.
    Inc(FieldPath, Number),
    /// Appends to an array; a missing field is created as `[value]`.
    Push(FieldPath, Value),
}

impl UpdateOp {
    /// The field the operation touches.
    pub fn path(&self) -> &FieldPath {
        match self {
            UpdateOp::Set(p, _) | UpdateOp::Unset(p) | UpdateOp::Inc(p, _) | UpdateOp::Push(p, _) => p,
        }
    }
}

/// A validated set of update operations.
///
/// Rules (all `InvalidInput` at parse time): at least one operation; only
/// `$set $unset $inc $push`; no two operations on the same or overlapping paths
/// (`a` and `a.b`); `_id` and `_version` are store-managed and cannot be
/// updated; `$inc` takes a number; values obey the document field-name rules.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateOps(Vec<UpdateOp>);

impl UpdateOps {
    /// Parses `{"$set": {...}, "$inc": {...}, ...}`.
    pub fn parse(v: &Value) -> Result<Self> {
        let obj = v.as_object().ok_or_else(|| Error::invalid("an update must be a JSON object").with_op("update"))?;
        let mut ops = Vec::new();
        for (op, fields) in obj {
            let fields = fields
                .as_object()
                .ok_or_else(|| Error::invalid(format!("`{op}` takes an object of fields")).with_op("update"))?;
            for (path, value) in fields {
                let path = FieldPath::parse(path)?;
                let parsed = match op.as_str() {
                    "$set" => UpdateOp::Set(path, checked(value)?),
                    "$unset" => UpdateOp::Unset(path),
                    "$inc" => match value {
                        Value::Number(n) => UpdateOp::Inc(path, n.clone()),
                        _ => return Err(Error::invalid("`$inc` takes a number").with_op("update")),
                    },
                    "$push" => UpdateOp::Push(path, checked(value)?),
                    other => return Err(Error::invalid(format!("unknown update operator `{other}`")).with_op("update")),
                };
                ops.push(parsed);
            }
        }
        UpdateOps::new(ops)
    }

    /// Validates a list of operations.
    pub fn new(ops: Vec<UpdateOp>) -> Result<Self> {
        if ops.is_empty() {
            return Err(Error::invalid("an update needs at least one operation").with_op("update"));
        }
        for (i, op) in ops.iter().enumerate() {
            if op.path().is_reserved() {
                return Err(Error::invalid("`_id` and `_version` cannot be updated").with_op("update"));
            }
            if ops[..i].iter().any(|o| o.path().overlaps(op.path())) {
                return Err(Error::invalid(format!("update paths conflict at `{}`", op.path())).with_op("update"));
            }
        }
        Ok(UpdateOps(ops))
    }

    /// The operations.
    pub fn ops(&self) -> &[UpdateOp] {
        &self.0
    }

    /// Applies the operations to `doc` (an object). On error `doc` may be half
    /// updated: callers apply to a copy and keep the original on error. Errors
    /// (`InvalidInput`): a path through a non-container, `$inc` on a non-number or
    /// an overflow, `$push` onto a non-array, and a result that breaks the
    /// document nesting rule or `policy` (depth, serialized size).
    pub fn apply(&self, doc: &mut Value, policy: &crate::InputPolicy) -> Result<()> {
        for op in &self.0 {
            apply_one(doc, op).map_err(|e| e.with_op("update"))?;
        }
        validate_fields(doc, 0).and_then(|()| check_without_version(doc, policy)).map_err(|e| e.with_op("update"))
    }
}

/// The size limit counts the body as inserted (without the store-managed
/// `_version`), so a document at the limit stays updatable.
fn check_without_version(doc: &mut Value, policy: &crate::InputPolicy) -> Result<()> {
    let version = doc.as_object_mut().and_then(|m| m.remove("_version"));
    let checked = policy.check_document(doc);
    if let (Some(v), Some(m)) = (version, doc.as_object_mut()) {
        m.insert("_version".to_owned(), v);
    }
    checked
}

impl TryFrom<&Value> for UpdateOps {
    type Error = Error;
    fn try_from(v: &Value) -> Result<Self> {
        UpdateOps::parse(v)
    }
}

fn checked(v: &Value) -> Result<Value> {
    validate_fields(v, 1)?;
    Ok(v.clone())
}

fn apply_one(doc: &mut Value, op: &UpdateOp) -> Result<()> {
    let segs = op.path().segments();
    let (last, parents) = segs.split_last().ok_or_else(|| Error::invalid("empty path"))?;
    let create = !matches!(op, UpdateOp::Unset(_));
    let Some(parent) = descend(doc, parents, create)? else { return Ok(()) };
    match op {
        UpdateOp::Set(_, v) => put(parent, last, v.clone()),
        UpdateOp::Unset(_) => {
            match parent {
                Value::Object(m) => {
                    m.remove(last);
                }
                Value::Array(a) => {
                    if let Some(slot) = array_index(last).and_then(|i| a.get_mut(i)) {
                        *slot = Value::Null;
                    }
                }
                _ => {}
            }
            Ok(())
        }
        UpdateOp::Inc(_, by) => {
            let current = get_mut(parent, last);
            let next = match current {
                None => Value::Number(by.clone()),
                Some(Value::Number(n)) => Value::Number(add(n, by)?),
                Some(_) => return Err(Error::invalid(format!("`$inc` on non-numeric field `{}`", op.path()))),
            };
            put(parent, last, next)
        }
        UpdateOp::Push(_, v) => match get_mut(parent, last) {
            None => put(parent, last, Value::Array(vec![v.clone()])),
            Some(Value::Array(a)) => {
                a.push(v.clone());
                Ok(())
            }
            Some(_) => Err(Error::invalid(format!("`$push` onto non-array field `{}`", op.path()))),
        },
    }
}

/// Walks to the container that holds the last segment, creating objects when
/// `create` is set. `Ok(None)` when the path is missing and `create` is off.
fn descend<'a>(mut cur: &'a mut Value, segs: &[String], create: bool) -> Result<Option<&'a mut Value>> {
    for seg in segs {
        let exists = get_mut(cur, seg).is_some();
        if !exists {
            if !create {
                return Ok(None);
            }
            put(cur, seg, Value::Object(Map::new()))?;
        }
        cur = match get_mut(cur, seg) {
            Some(next @ (Value::Object(_) | Value::Array(_))) => next,
            Some(_) if !create => return Ok(None),
            _ => return Err(Error::invalid(format!("cannot create field `{seg}` inside a non-object"))),
        };
    }
    Ok(Some(cur))
}

fn get_mut<'a>(v: &'a mut Value, seg: &str) -> Option<&'a mut Value> {
    match v {
        Value::Object(m) => m.get_mut(seg),
        Value::Array(a) => array_index(seg).and_then(move |i| a.get_mut(i)),
        _ => None,
    }
}

/// Largest array index `$set` pads up to.
const MAX_PAD: usize = 10_000;

fn put(v: &mut Value, seg: &str, value: Value) -> Result<()> {
    match v {
        Value::Object(m) => {
            m.insert(seg.to_owned(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = array_index(seg)
                .filter(|i| *i <= MAX_PAD)
                .ok_or_else(|| Error::invalid(format!("cannot use field `{seg}` on an array")))?;
            if i >= a.len() {
                a.resize(i + 1, Value::Null);
            }
            a[i] = value;
            Ok(())
        }
        _ => Err(Error::invalid(format!("cannot create field `{seg}` inside a non-object"))),
    }
}

fn add(a: &Number, b: &Number) -> Result<Number> {
    let overflow = || Error::invalid("`$inc` would overflow a 64-bit integer");
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.checked_add(y).map(Number::from).ok_or_else(overflow);
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x.checked_add(y).map(Number::from).ok_or_else(overflow);
    }
    let sum = a.as_f64().unwrap_or(f64::NAN) + b.as_f64().unwrap_or(f64::NAN);
    Number::from_f64(sum).ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(update: Value, mut doc: Value) -> Result<Value> {
        UpdateOps::parse(&update)?.apply(&mut doc, &crate::InputPolicy::default())?;
        Ok(doc)
    }

    #[test]
    fn set_creates_intermediate_objects() {
        assert_eq!(run(json!({"$set": {"a.b.c": 1}}), json!({})).unwrap(), json!({"a": {"b": {"c": 1}}}));
    }

    #[test]
    fn inc_creates_missing_and_keeps_integers() {
        assert_eq!(run(json!({"$inc": {"n": 2}}), json!({"n": 1})).unwrap(), json!({"n": 3}));
        assert_eq!(run(json!({"$inc": {"n": 2}}), json!({})).unwrap(), json!({"n": 2}));
        assert_eq!(run(json!({"$inc": {"n": 0.5}}), json!({"n": 1})).unwrap(), json!({"n": 1.5}));
        assert!(run(json!({"$inc": {"n": 1}}), json!({"n": "x"})).is_err());
        assert!(run(json!({"$inc": {"n": 1}}), json!({"n": i64::MAX})).is_err());
    }

    #[test]
    fn push_and_unset() {
        assert_eq!(run(json!({"$push": {"l": 2}}), json!({"l": [1]})).unwrap(), json!({"l": [1, 2]}));
        assert_eq!(run(json!({"$push": {"l": 1}}), json!({})).unwrap(), json!({"l": [1]}));
        assert!(run(json!({"$push": {"l": 1}}), json!({"l": 3})).is_err());
        assert_eq!(
            run(json!({"$unset": {"a.b": ""}}), json!({"a": {"b": 1, "c": 2}})).unwrap(),
            json!({"a": {"c": 2}})
        );
        assert_eq!(run(json!({"$unset": {"x.y": ""}}), json!({"a": 1})).unwrap(), json!({"a": 1}));
    }

    #[test]
    fn invalid_updates_are_rejected_at_parse() {
        for bad in [
            json!({}),
            json!({"$rename": {"a": "b"}}),
            json!({"$set": {"_id": "x"}}),
            json!({"$set": {"_version": 3}}),
            json!({"$set": {"a": 1}, "$inc": {"a.b": 1}}),
            json!({"$inc": {"a": "1"}}),
            json!({"$set": {"a": {"$x": 1}}}),
            json!({"$set": 5}),
        ] {
            assert!(UpdateOps::parse(&bad).is_err(), "{bad}");
        }
    }
}
