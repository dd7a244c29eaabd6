//! JSON Schemas for event payloads: checking and compiling a schema once,
//! and checking a payload against it with an error that names the failing
//! location. The event type record that holds a schema is in
//! [`crate::event_type`].
//!
//! A schema is compiled once ([`PayloadSchema::compile`]) when a type is
//! created or updated, and an invalid one is refused then. Compiling is
//! offline: a `$ref` to anything outside the schema document itself (`https:`,
//! `file:`, another `$id`) is refused rather than fetched. `pattern` and
//! `patternProperties` use the linear-time `regex` engine, so a schema cannot
//! make validation backtrack exponentially. The draft is the one the schema's
//! `$schema` names, else 2020-12; as 2019-09 and 2020-12 specify, `format`
//! is then an annotation and is not asserted (under drafts 4, 6 and 7 the
//! validator does assert the formats it knows, such as `email`).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::truncate_chars;

/// Largest schema, measured as its compact JSON text, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Deepest nesting of arrays and objects in a schema.
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// Longest reason kept in a [`PayloadError`], in characters; longer ones are
/// cut (the reason may quote the offending value, which can be large).
pub const MAX_REASON_CHARS: usize = 300;

/// Why a JSON Schema was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("schema is {len} bytes of JSON; the limit is {MAX_SCHEMA_BYTES}")]
    TooLarge { len: usize },
    #[error("schema nests arrays and objects deeper than {MAX_SCHEMA_DEPTH} levels")]
    TooDeep,
    #[error("schema must be a JSON object or a boolean, not {found}")]
    NotASchema { found: &'static str },
    /// The schema breaks its draft's meta-schema, or cannot be compiled.
    /// `schema_path` is a JSON pointer into the schema (empty = its root).
    #[error("invalid JSON Schema at {}: {reason}", display_pointer(.schema_path))]
    Invalid { schema_path: String, reason: String },
    /// A `$ref` points outside the schema document; Herald never fetches one.
    #[error(
        "schema references {reference:?}, outside the schema itself; \
         remote and file references are not fetched: inline the referenced \
         schema under \"$defs\" and point at it with \"#/$defs/...\""
    )]
    ExternalReference { reference: String },
}

/// Why a payload does not match its event type's schema: the first failing
/// location, as JSON pointers, and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "payload does not match the schema at {}: {reason} (schema keyword at {})",
    display_pointer(.instance_path),
    display_pointer(.schema_path)
)]
pub struct PayloadError {
    /// JSON pointer to the failing value in the payload (`""` = the root,
    /// e.g. `/customer/tier`).
    pub instance_path: String,
    /// JSON pointer to the schema keyword that failed (e.g.
    /// `/properties/amount/minimum`).
    pub schema_path: String,
    /// What is wrong, at most [`MAX_REASON_CHARS`] characters.
    pub reason: String,
    /// How many other errors the payload has beyond this one.
    pub more: usize,
}

/// A pointer as users read it: the root is named, not left blank.
fn display_pointer(pointer: &str) -> String {
    if pointer.is_empty() {
        "the root (\"\")".to_string()
    } else {
        format!("{pointer:?}")
    }
}

/// A compiled JSON Schema for payloads, with the document it came from.
/// Cheap to clone (the compiled form is shared).
#[derive(Clone)]
pub struct PayloadSchema {
    source: Value,
    validator: Arc<jsonschema::Validator>,
}

impl fmt::Debug for PayloadSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayloadSchema")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl PartialEq for PayloadSchema {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// How deep `value` nests, stopping (with `None`) past `limit`; iterative, so
/// any depth is safe to measure.
fn depth_within(value: &Value, limit: usize) -> Option<usize> {
    let mut stack = vec![(value, 1usize)];
    let mut deepest = 0;
    while let Some((v, depth)) = stack.pop() {
        if depth > limit {
            return None;
        }
        deepest = deepest.max(depth);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    Some(deepest)
}

/// A short name for a JSON value's kind, for messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl PayloadSchema {
    /// Checks `schema` (size, depth, meta-schema, references) and compiles it.
    pub fn compile(schema: Value) -> Result<Self, SchemaError> {
        if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
            return Err(SchemaError::NotASchema {
                found: json_kind(&schema),
            });
        }
        // Depth first: serialising a very deep value recurses.
        depth_within(&schema, MAX_SCHEMA_DEPTH).ok_or(SchemaError::TooDeep)?;
        let len = serde_json::to_vec(&schema).map_or(usize::MAX, |bytes| bytes.len());
        if len > MAX_SCHEMA_BYTES {
            return Err(SchemaError::TooLarge { len });
        }
        let validator = jsonschema::options()
            .offline()
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&schema)
            .map_err(|error| classify_build_error(&schema, &error))?;
        Ok(Self {
            source: schema,
            validator: Arc::new(validator),
        })
    }

    /// The schema document as given.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// The schema document as given, by value.
    pub fn into_source(self) -> Value {
        self.source
    }

    /// Checks `payload`; on failure names the first failing location.
    pub fn validate(&self, payload: &Value) -> Result<(), PayloadError> {
        // The fast path for the common case, then the details.
        if self.validator.is_valid(payload) {
            return Ok(());
        }
        let mut errors = self.validator.iter_errors(payload);
        let Some(first) = errors.next() else {
            return Ok(());
        };
        let error = PayloadError {
            instance_path: first.instance_path().to_string(),
            schema_path: first.schema_path().to_string(),
            reason: truncate_chars(&first.to_string(), MAX_REASON_CHARS),
            more: errors.count(),
        };
        Err(error)
    }

    /// Whether `payload` matches, without building an error.
    pub fn is_valid(&self, payload: &Value) -> bool {
        self.validator.is_valid(payload)
    }
}

/// Turns a build failure into a [`SchemaError`] that says what to change.
fn classify_build_error(schema: &Value, error: &jsonschema::ValidationError<'_>) -> SchemaError {
    use jsonschema::error::ValidationErrorKind;
    if let ValidationErrorKind::Referencing(inner) = error.kind() {
        if let Some(reference) = first_external_ref(schema) {
            return SchemaError::ExternalReference { reference };
        }
        return SchemaError::Invalid {
            schema_path: error.instance_path().to_string(),
            reason: truncate_chars(&inner.to_string(), MAX_REASON_CHARS),
        };
    }
    SchemaError::Invalid {
        // The schema is the instance the meta-schema checked.
        schema_path: error.instance_path().to_string(),
        reason: truncate_chars(&error.to_string(), MAX_REASON_CHARS),
    }
}

/// The first `$ref` (or `$dynamicRef`) in `schema` that does not point
/// inside the document (does not start with `#`).
fn first_external_ref(schema: &Value) -> Option<String> {
    let mut stack = vec![schema];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                for key in ["$ref", "$dynamicRef", "$recursiveRef"] {
                    if let Some(Value::String(r)) = map.get(key) {
                        if !r.starts_with('#') {
                            return Some(r.clone());
                        }
                    }
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    None
}

impl Serialize for PayloadSchema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(s)
    }
}

impl<'de> Deserialize<'de> for PayloadSchema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = Value::deserialize(d)?;
        Self::compile(source).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
