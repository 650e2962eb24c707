//! The portable filter language: a subset of MongoDB's query operators, parsed
//! once from JSON into a typed AST that every backend translates.
//!
//! Supported: `$eq $ne $gt $gte $lt $lte $in $nin $exists $not $and $or`,
//! implicit equality (`{"a": 5}`), several operators on one field (ANDed), and
//! dotted paths into nested objects and arrays.
//!
//! Restrictions of the portable subset (all `InvalidInput`, before any I/O):
//! - `$gt $gte $lt $lte` take a number, string or boolean operand;
//! - `$exists` takes a boolean; `$in`/`$nin` take an array; `$and`/`$or` a
//!   non-empty array of filter objects; `$not` an operator object;
//! - no operand may contain an object key starting with `$`;
//! - filters nest at most 32 levels and hold at most 1,000 conditions;
//! - `$in`/`$nin` lists hold at most 10,000 values ([`MAX_IN_LIST`]) and
//!   operand values nest at most 64 levels (the input policy's default).

use serde_json::{Map, Value};

use super::path::FieldPath;
use crate::error::{Error, Result};
use crate::policy::{depth_exceeds, DEFAULT_MAX_DEPTH, MAX_IN_LIST};

/// Deepest `$and`/`$or`/`$not` nesting accepted.
pub const MAX_FILTER_DEPTH: usize = 32;
/// Most conditions in one filter.
pub const MAX_CONDITIONS: usize = 1_000;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// All must match (`{}` is `And([])`, which matches everything).
    And(Vec<Filter>),
    /// At least one must match.
    Or(Vec<Filter>),
    /// A condition on one field.
    Field {
        /// The field.
        path: FieldPath,
        /// The condition.
        op: FieldOp,
    },
}

/// A condition on one field, with MongoDB's semantics: a condition holds if any
/// value the path reaches (traversing arrays, and the elements of a reached
/// array) satisfies it; negations (`$ne`, `$nin`, `$not`) hold when the positive
/// form does not — including when the field is missing.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldOp {
    /// Equal (deep; `1 == 1.0`; `null` also matches a missing field).
    Eq(Value),
    /// Not `Eq`.
    Ne(Value),
    /// Greater than, within the operand's type bracket.
    Gt(Value),
    /// Greater or equal, within the operand's type bracket.
    Gte(Value),
    /// Less than, within the operand's type bracket.
    Lt(Value),
    /// Less or equal, within the operand's type bracket.
    Lte(Value),
    /// `Eq` to any of these.
    In(Vec<Value>),
    /// Not `In`.
    Nin(Vec<Value>),
    /// The path reaches at least one value (`true`) or none (`false`).
    Exists(bool),
    /// Not all of these hold.
    Not(Vec<FieldOp>),
}

impl Filter {
    /// Matches every document.
    pub fn all() -> Self {
        Filter::And(Vec::new())
    }

    /// `{path: value}` equality.
    pub fn eq(path: &str, value: Value) -> Result<Self> {
        check_operand_keys(&value)?;
        Ok(Filter::Field { path: FieldPath::parse(path)?, op: FieldOp::Eq(value) })
    }

    /// Parses a MongoDB-style filter document. See the module docs.
    pub fn parse(filter: &Value) -> Result<Self> {
        let mut budget = MAX_CONDITIONS;
        parse_doc(filter, 0, &mut budget).map_err(|e| e.with_op("filter"))
    }

    /// Whether this filter matches everything (an empty conjunction).
    pub fn is_all(&self) -> bool {
        matches!(self, Filter::And(v) if v.is_empty())
    }
}

impl TryFrom<&Value> for Filter {
    type Error = Error;
    fn try_from(v: &Value) -> Result<Self> {
        Filter::parse(v)
    }
}

impl TryFrom<Value> for Filter {
    type Error = Error;
    fn try_from(v: Value) -> Result<Self> {
        Filter::parse(&v)
    }
}

fn spend(budget: &mut usize) -> Result<()> {
    if *budget == 0 {
        return Err(Error::invalid(format!("a filter holds at most {MAX_CONDITIONS} conditions")));
    }
    *budget -= 1;
    Ok(())
}

fn parse_doc(v: &Value, depth: usize, budget: &mut usize) -> Result<Filter> {
    if depth > MAX_FILTER_DEPTH {
        return Err(Error::invalid(format!("filter nests deeper than {MAX_FILTER_DEPTH}")));
    }
    let obj = v.as_object().ok_or_else(|| Error::invalid("a filter must be a JSON object"))?;
    let mut parts = Vec::with_capacity(obj.len());
    for (key, value) in obj {
        if let Some(op) = key.strip_prefix('$') {
            let list = match op {
                "and" | "or" => parse_list(key, value, depth, budget)?,
                _ => return Err(Error::invalid(format!("unknown top-level operator `{key}`"))),
            };
            parts.push(if op == "and" { Filter::And(list) } else { Filter::Or(list) });
        } else {
            let path = FieldPath::parse(key)?;
            parts.extend(parse_field(path, value, depth, budget)?);
        }
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::And(parts) })
}

fn parse_list(key: &str, value: &Value, depth: usize, budget: &mut usize) -> Result<Vec<Filter>> {
    let items = value
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Error::invalid(format!("`{key}` needs a non-empty array of filters")))?;
    items.iter().map(|f| parse_doc(f, depth + 1, budget)).collect()
}

fn is_operator_object(m: &Map<String, Value>) -> Result<bool> {
    let dollar = m.keys().filter(|k| k.starts_with('$')).count();
    if dollar > 0 && dollar < m.len() {
        return Err(Error::invalid("an object cannot mix operators and field names"));
    }
    Ok(dollar > 0)
}

fn parse_field(path: FieldPath, value: &Value, depth: usize, budget: &mut usize) -> Result<Vec<Filter>> {
    let ops = match value {
        Value::Object(m) if is_operator_object(m)? => parse_ops(m, depth, budget)?,
        literal => {
            spend(budget)?;
            check_operand_keys(literal)?;
            vec![FieldOp::Eq(literal.clone())]
        }
    };
    Ok(ops.into_iter().map(|op| Filter::Field { path: path.clone(), op }).collect())
}

fn parse_ops(m: &Map<String, Value>, depth: usize, budget: &mut usize) -> Result<Vec<FieldOp>> {
    if depth > MAX_FILTER_DEPTH {
        return Err(Error::invalid(format!("filter nests deeper than {MAX_FILTER_DEPTH}")));
    }
    let mut ops = Vec::with_capacity(m.len());
    for (key, operand) in m {
        spend(budget)?;
        let op = match key.as_str() {
            "$eq" => FieldOp::Eq(literal(operand)?),
            "$ne" => FieldOp::Ne(literal(operand)?),
            "$gt" => FieldOp::Gt(comparable(key, operand)?),
            "$gte" => FieldOp::Gte(comparable(key, operand)?),
            "$lt" => FieldOp::Lt(comparable(key, operand)?),
            "$lte" => FieldOp::Lte(comparable(key, operand)?),
            "$in" => FieldOp::In(list(key, operand)?),
            "$nin" => FieldOp::Nin(list(key, operand)?),
            "$exists" => match operand {
                Value::Bool(b) => FieldOp::Exists(*b),
                _ => return Err(Error::invalid("`$exists` takes true or false")),
            },
            "$not" => match operand {
                Value::Object(inner) if !inner.is_empty() && is_operator_object(inner)? => {
                    FieldOp::Not(parse_ops(inner, depth + 1, budget)?)
                }
                _ => return Err(Error::invalid("`$not` takes an object of operators")),
            },
            other => return Err(Error::invalid(format!("unknown operator `{other}`"))),
        };
        ops.push(op);
    }
    Ok(ops)
}

fn literal(v: &Value) -> Result<Value> {
    check_operand_keys(v)?;
    Ok(v.clone())
}

fn comparable(key: &str, v: &Value) -> Result<Value> {
    match v {
        Value::Number(_) | Value::String(_) | Value::Bool(_) => Ok(v.clone()),
        _ => Err(Error::invalid(format!("`{key}` takes a number, string or boolean"))),
    }
}

fn list(key: &str, v: &Value) -> Result<Vec<Value>> {
    let items = v.as_array().ok_or_else(|| Error::invalid(format!("`{key}` takes an array")))?;
    if items.len() > MAX_IN_LIST {
        return Err(Error::invalid(format!("`{key}` takes at most {MAX_IN_LIST} values")));
    }
    items.iter().map(literal).collect()
}

/// Rejects operand values nested deeper than stored values may be, or that
/// contain `$`-prefixed object keys anywhere.
fn check_operand_keys(v: &Value) -> Result<()> {
    if depth_exceeds(v, DEFAULT_MAX_DEPTH) {
        return Err(Error::invalid(format!("filter operands nest at most {DEFAULT_MAX_DEPTH} levels")));
    }
    check_dollar_keys(v)
}

fn check_dollar_keys(v: &Value) -> Result<()> {
    match v {
        Value::Object(m) => {
            if m.keys().any(|k| k.starts_with('$')) {
                return Err(Error::invalid("operand values cannot contain `$` keys"));
            }
            m.values().try_for_each(check_dollar_keys)
        }
        Value::Array(a) => a.iter().try_for_each(check_dollar_keys),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
    }

    #[test]
    fn implicit_equality_and_multiple_ops_parse() {
        let f = Filter::parse(&json!({"a": 5, "b": {"$gt": 1, "$lt": 9}})).unwrap();
        assert_eq!(
            f,
            Filter::And(vec![
                Filter::Field { path: p("a"), op: FieldOp::Eq(json!(5)) },
                Filter::Field { path: p("b"), op: FieldOp::Gt(json!(1)) },
                Filter::Field { path: p("b"), op: FieldOp::Lt(json!(9)) },
            ])
        );
    }

    #[test]
    fn hostile_operands_are_bounded() {
        let deep = (0..=DEFAULT_MAX_DEPTH).fold(json!(1), |v, _| json!({ "a": v }));
        assert!(Filter::parse(&json!({"a": deep})).is_err(), "operand nested too deep");
        assert!(Filter::parse(&json!({"a": {"$in": [deep]}})).is_err(), "$in element nested too deep");
        let many: Vec<Value> = (0..=MAX_IN_LIST).map(|i| json!(i)).collect();
        assert!(Filter::parse(&json!({"a": {"$nin": many}})).is_err(), "$nin list too long");
        let enough: Vec<Value> = (0..MAX_IN_LIST).map(|i| json!(i)).collect();
        assert!(Filter::parse(&json!({"a": {"$in": enough}})).is_ok());
    }

    #[test]
    fn empty_filter_matches_all() {
        assert!(Filter::parse(&json!({})).unwrap().is_all());
    }

    #[test]
    fn object_literal_is_exact_equality() {
        let f = Filter::parse(&json!({"a": {"x": 1}})).unwrap();
        assert_eq!(f, Filter::Field { path: p("a"), op: FieldOp::Eq(json!({"x": 1})) });
    }

    #[test]
    fn malformed_filters_are_invalid_input() {
        let bad = [
            json!([]),
            json!({"$where": "1"}),
            json!({"a": {"$regex": "x"}}),
            json!({"a": {"$gt": 1, "b": 2}}),
            json!({"$and": []}),
            json!({"$or": {}}),
            json!({"$and": [5]}),
            json!({"a": {"$in": 5}}),
            json!({"a": {"$exists": 1}}),
            json!({"a": {"$not": 5}}),
            json!({"a": {"$not": {}}}),
            json!({"a": {"$gt": {"x": 1}}}),
            json!({"a": {"$gt": null}}),
            json!({"a": {"$eq": {"$gt": 1}}}),
            json!({"a..b": 1}),
            json!({"": 1}),
        ];
        for f in bad {
            let err = Filter::parse(&f).expect_err(&f.to_string());
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{f}");
        }
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let mut f = json!({"a": 1});
        for _ in 0..40 {
            f = json!({ "$and": [f] });
        }
        assert!(Filter::parse(&f).is_err());
    }
}
