//! Helpers shared by the Postgres integration tests (each test crate uses
//! some of them).
#![allow(dead_code)]

use serde_json::Value;

/// Every `"Index Name"` in an `EXPLAIN (FORMAT JSON)` plan.
pub fn index_names(plan: &Value) -> Vec<String> {
    match plan {
        Value::Object(m) => m
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v) {
                ("Index Name", Value::String(name)) => vec![name.clone()],
                _ => index_names(v),
            })
            .collect(),
        Value::Array(a) => a.iter().flat_map(index_names).collect(),
        _ => Vec::new(),
    }
}
