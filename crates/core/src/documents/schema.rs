//! The documented JSON Schema subset, checked with the `jsonschema` crate.
//!
//! Allowed keywords: `type`, `required`, `properties`, `additionalProperties`
//! (boolean or schema), `enum`, `minimum`, `maximum`, `minLength`, `maxLength`,
//! `pattern`, `items` (a schema), plus the annotations `title`, `description`
//! and `$schema`. Any other keyword is `InvalidInput` when the collection is
//! ensured, so every backend enforces exactly the same rules.

use std::fmt;

use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};

const ALLOWED: &[&str] = &[
    "type",
    "required",
    "properties",
    "additionalProperties",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "items",
    "title",
    "description",
    "$schema",
];

/// Most schema errors listed in one `SchemaViolation` message.
const MAX_REPORTED: usize = 5;

/// A compiled schema of the documented subset.
pub struct SchemaValidator {
    schema: Value,
    compiled: jsonschema::Validator,
}

impl SchemaValidator {
    /// Checks that `schema` uses only the subset and compiles it.
    pub fn compile(schema: &Value) -> Result<Self> {
        check_subset(schema, "#")?;
        let compiled = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(schema)
            .map_err(|e| Error::invalid(format!("invalid JSON schema: {}", e.masked())).with_op("ensure_collection"))?;
        Ok(SchemaValidator { schema: schema.clone(), compiled })
    }

    /// The schema as given.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// `SchemaViolation` listing (up to five) failed rules with their document
    /// paths; stored values are never echoed.
    pub fn validate(&self, doc: &Value) -> Result<()> {
        let problems: Vec<String> = self
            .compiled
            .iter_errors(doc)
            .take(MAX_REPORTED)
            .map(|e| format!("at `{}`: {}", e.instance_path(), e.masked()))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::SchemaViolation, problems.join("; ")))
        }
    }
}

impl fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaValidator").field("schema", &self.schema).finish()
    }
}

fn check_subset(schema: &Value, at: &str) -> Result<()> {
    let obj = match schema {
        Value::Object(o) => o,
        Value::Bool(_) => return Ok(()),
        _ => return Err(Error::invalid(format!("schema at {at} must be an object or boolean"))),
    };
    for (k, v) in obj {
        if !ALLOWED.contains(&k.as_str()) {
            return Err(Error::invalid(format!("schema keyword `{k}` at {at} is outside the supported subset")));
        }
        match k.as_str() {
            "properties" => {
                let props =
                    v.as_object().ok_or_else(|| Error::invalid(format!("`properties` at {at} must be an object")))?;
                for (name, sub) in props {
                    check_subset(sub, &format!("{at}/properties/{name}"))?;
                }
            }
            "items" | "additionalProperties" => check_subset(v, &format!("{at}/{k}"))?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> SchemaValidator {
        SchemaValidator::compile(&json!({
            "type": "object",
            "required": ["ip"],
            "properties": {
                "ip": {"type": "string", "minLength": 3},
                "score": {"type": "integer", "minimum": 0, "maximum": 100},
                "verdict": {"enum": ["clean", "malicious"]},
                "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn valid_documents_pass() {
        assert!(schema().validate(&json!({"ip": "1.2.3.4", "score": 5, "tags": ["a"]})).is_ok());
    }

    #[test]
    fn violations_are_schema_violation_without_values() {
        let err = schema().validate(&json!({"ip": "secret-value", "score": 500})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SchemaViolation);
        assert!(!err.to_string().contains("secret-value"));
        assert!(schema().validate(&json!({"score": 1})).is_err());
        assert!(schema().validate(&json!({"ip": "1.2.3.4", "tags": ["A"]})).is_err());
    }

    #[test]
    fn keywords_outside_the_subset_are_invalid_input() {
        let err = SchemaValidator::compile(&json!({"type": "object", "oneOf": []})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = SchemaValidator::compile(&json!({"properties": {"a": {"$ref": "#"}}})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}
