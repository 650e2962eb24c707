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
            // serde_json's Map is ordered by key, so iteration is canonical.
            for ((ka, va), (kb, vb)) in x.iter().zip(y.iter()) {
                let o = ka.cmp(kb).then_with(|| cmp_total(va, vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => Ordering::Equal,
    }
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
    fn object_comparison_relies_on_sorted_maps() {
        // `cmp_total` walks objects in key order; serde_json's `preserve_order`
        // feature would break that (and object equality) silently.
        let m: serde_json::Map<String, Value> = serde_json::from_str(r#"{"b": 1, "a": 2}"#).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(values_equal(&json!({"a": 1, "b": 2}), &serde_json::from_str(r#"{"b": 2, "a": 1}"#).unwrap()));
    }

    #[test]
    fn type_brackets_do_not_mix() {
        assert_eq!(cmp_bracketed(&json!("10"), &json!(5)), None);
        assert_eq!(cmp_total(&json!(null), &json!(0)), Ordering::Less);
        assert_eq!(cmp_total(&json!([]), &json!(true)), Ordering::Less);
    }
}
