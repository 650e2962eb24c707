//! MongoDB's value semantics on `serde_json::Value`: equality, type brackets and
//! the total sort order.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// MongoDB's canonical type order for sorting: null < numbers < strings <
/// objects < arrays < booleans.
pub fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Object(_) => 4,
        Value::Array(_) => 5,
        Value::Bool(_) => 8,
    }
}

/// Compares two JSON numbers by value: integers exactly, otherwise as `f64`
/// (so `1 == 1.0` and `2 < 2.5`).
pub fn cmp_numbers(a: &Number, b: &Number) -> Ordering {
    match (as_i128(a), as_i128(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => {
            let x = a.as_f64().unwrap_or(f64::NAN);
            let y = b.as_f64().unwrap_or(f64::NAN);
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
    }
}

fn as_i128(n: &Number) -> Option<i128> {
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
}

/// The total order used by `sort`: type rank first, then within the type
/// (numbers numerically, strings by code point, booleans false < true, arrays
/// element-wise, objects by sorted key/value pairs).
pub fn cmp_total(a: &Value, b: &Value) -> Ordering {
    let (ra, rb) = (type_rank(a), type_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                let o = cmp_total(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            // Field by field in key order, whatever order the maps keep
            // (serde_json's `preserve_order`, which any dependency of a
            // service — bson 2, say — may switch on for the whole build,
            // keeps insertion order).
            let (xs, ys) = (by_key(x), by_key(y));
            for ((ka, va), (kb, vb)) in xs.iter().zip(ys.iter()) {
                let o = ka.cmp(kb).then_with(|| cmp_total(va, vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => Ordering::Equal,
    }
}

/// The entries of `m` in key order (code point order of the keys).
pub(crate) fn by_key(m: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = m.iter().collect();
    if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    entries
}

/// Deep equality with numeric comparison across int/float (`1 == 1.0`) and
/// key-order-insensitive objects.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    type_rank(a) == type_rank(b) && cmp_total(a, b) == Ordering::Equal
}

/// Compares `a` to `b` only when they are in the same comparison bracket
/// (number, string or boolean), as MongoDB's `$gt`/`$lt` do; `None` otherwise.
pub fn cmp_bracketed(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Some(cmp_numbers(x, y)),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ints_and_floats_compare_numerically() {
        assert!(values_equal(&json!(1), &json!(1.0)));
        assert_eq!(cmp_total(&json!(2), &json!(2.5)), Ordering::Less);
        assert_eq!(cmp_total(&json!(u64::MAX), &json!(-1)), Ordering::Greater);
    }

    #[test]
    fn strings_compare_by_code_point() {
        assert_eq!(cmp_total(&json!("Z"), &json!("a")), Ordering::Less);
        assert_eq!(cmp_total(&json!("é"), &json!("z")), Ordering::Greater);
    }

    #[test]
    fn object_comparison_does_not_depend_on_the_maps_key_order() {
        // With serde_json's `preserve_order` on (any dependency of a service
        // may switch it on, bson 2 does) maps keep insertion order; these
        // must hold in either build.
        let ba: Value = serde_json::from_str(r#"{"b": 2, "a": 1}"#).unwrap();
        let ab: Value = serde_json::from_str(r#"{"a": 1, "b": 2}"#).unwrap();
        assert!(values_equal(&ab, &ba));
        assert_eq!(cmp_total(&ab, &ba), Ordering::Equal);
        let bigger: Value = serde_json::from_str(r#"{"b": 1, "a": 3}"#).unwrap();
        assert_eq!(cmp_total(&ab, &bigger), Ordering::Less, "key a decides first: 1 < 3");
        assert_eq!(cmp_total(&bigger, &ab), Ordering::Greater);
    }

    #[test]
    fn type_brackets_do_not_mix() {
        assert_eq!(cmp_bracketed(&json!("10"), &json!(5)), None);
        assert_eq!(cmp_total(&json!(null), &json!(0)), Ordering::Less);
        assert_eq!(cmp_total(&json!([]), &json!(true)), Ordering::Less);
    }
}
