//! Event types: what a name may look like, the catalogue record (name,
//! description, optional JSON Schema, archived flag), and checking a payload
//! against its type's schema.
//!
//! This module owns the *rules*; storing the catalogue, the gRPC service and
//! the CLI live elsewhere. It does not decide what an archived type means for
//! publishing, nor whether unknown types may be published: both are policy of
//! the caller (see the crate docs).
//!
//! # Names
//!
//! An event type name is one or more *segments* separated by `.`
//! (`order.shipped`, `invoice.payment.failed`):
//! - each segment is 1..=[`MAX_SEGMENT_LEN`] characters of `A-Z a-z 0-9 _ -`;
//! - at most [`MAX_SEGMENTS`] segments, at most [`MAX_NAME_LEN`] bytes in all;
//! - names are case-sensitive (`Order.Shipped` and `order.shipped` differ);
//! - `*` never appears in a name: it is the wildcard of [`crate::pattern`].
//!
//! Schemas are compiled and checked by [`crate::schema`]; its types are
//! re-exported here.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::schema::{PayloadError, PayloadSchema, SchemaError};
use crate::truncate_chars;

/// Longest event type name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest segment of a name (between two dots), in bytes.
pub const MAX_SEGMENT_LEN: usize = 64;
/// Most segments a name may have.
pub const MAX_SEGMENTS: usize = 8;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// Why an event type name (or one segment of a pattern) is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("event type name is empty")]
    Empty,
    #[error("event type name is {len} bytes long; the limit is {MAX_NAME_LEN}")]
    TooLong { len: usize },
    #[error("event type name has {count} segments; the limit is {MAX_SEGMENTS}")]
    TooManySegments { count: usize },
    #[error(
        "event type name has an empty segment at position {position} \
         (a leading, trailing or doubled '.')"
    )]
    EmptySegment { position: usize },
    #[error(
        "segment {position} of the event type name is {len} bytes long; \
         the limit is {MAX_SEGMENT_LEN}"
    )]
    SegmentTooLong { position: usize, len: usize },
    #[error(
        "event type name contains {found:?} at byte {offset}; \
         segments allow only A-Z, a-z, 0-9, '_' and '-'"
    )]
    InvalidChar { found: char, offset: usize },
}

/// Whether `b` may appear in a name segment.
pub(crate) fn is_segment_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Checks the length limits shared by names and patterns, then each segment
/// with `check_segment(position, offset, segment)`.
pub(crate) fn check_segments<E>(
    text: &str,
    too_long: impl FnOnce(usize) -> E,
    too_many: impl FnOnce(usize) -> E,
    mut check_segment: impl FnMut(usize, usize, &str) -> Result<(), E>,
) -> Result<(), E> {
    if text.len() > MAX_NAME_LEN {
        return Err(too_long(text.len()));
    }
    let count = text.split('.').count();
    if count > MAX_SEGMENTS {
        return Err(too_many(count));
    }
    let mut offset = 0;
    for (position, segment) in text.split('.').enumerate() {
        check_segment(position + 1, offset, segment)?;
        offset += segment.len() + 1;
    }
    Ok(())
}

/// Checks one literal segment (1-based `position`, starting at byte `offset`).
pub(crate) fn check_literal_segment(
    position: usize,
    offset: usize,
    segment: &str,
) -> Result<(), NameError> {
    if segment.is_empty() {
        return Err(NameError::EmptySegment { position });
    }
    if let Some((i, found)) = segment
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii() && is_segment_byte(c as u8)))
    {
        return Err(NameError::InvalidChar {
            found,
            offset: offset + i,
        });
    }
    if segment.len() > MAX_SEGMENT_LEN {
        return Err(NameError::SegmentTooLong {
            position,
            len: segment.len(),
        });
    }
    Ok(())
}

/// Checks that `name` is a valid event type name (see the module docs).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    check_segments(
        name,
        |len| NameError::TooLong { len },
        |count| NameError::TooManySegments { count },
        check_literal_segment,
    )
}

/// A valid event type name. Construct with [`EventTypeName::new`] (or
/// `parse`/`TryFrom`); the inner text always satisfies [`validate_name`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventTypeName(String);

impl EventTypeName {
    /// Validates `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        validate_name(&name)?;
        Ok(Self(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name's segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

impl fmt::Display for EventTypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EventTypeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventTypeName {
    type Error = NameError;
    fn try_from(name: String) -> Result<Self, NameError> {
        Self::new(name)
    }
}

impl std::str::FromStr for EventTypeName {
    type Err = NameError;
    fn from_str(name: &str) -> Result<Self, NameError> {
        Self::new(name)
    }
}

impl From<EventTypeName> for String {
    fn from(name: EventTypeName) -> String {
        name.0
    }
}

/// Why an event type could not be created or updated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventTypeError {
    #[error("event type name {name:?} is invalid: {error}")]
    Name { name: String, error: NameError },
    #[error(
        "event type description is {chars} characters long; the limit is {MAX_DESCRIPTION_CHARS}"
    )]
    DescriptionTooLong { chars: usize },
    #[error("event type {name:?} has an invalid schema: {error}")]
    Schema { name: String, error: SchemaError },
}

/// Why a payload was refused for an event type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event type {event_type:?}: {error}")]
pub struct EventPayloadError {
    pub event_type: String,
    pub error: PayloadError,
}

/// One entry of the event type catalogue, checked: the name is valid, the
/// description within bounds and the schema compiled. Serialises as an
/// [`EventTypeRecord`], and deserialising checks it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "EventTypeRecord", into = "EventTypeRecord")]
pub struct EventType {
    name: EventTypeName,
    description: String,
    schema: Option<PayloadSchema>,
    archived: bool,
}

/// An event type as plain data, for storage and the wire; turn it into an
/// [`EventType`] with `EventType::try_from`, which checks everything
/// [`EventType::new`] does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventTypeRecord {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default)]
    pub archived: bool,
}

impl TryFrom<EventTypeRecord> for EventType {
    type Error = EventTypeError;
    fn try_from(record: EventTypeRecord) -> Result<Self, EventTypeError> {
        let mut event_type = EventType::new(&record.name, record.description, record.schema)?;
        event_type.archived = record.archived;
        Ok(event_type)
    }
}

impl From<EventType> for EventTypeRecord {
    fn from(event_type: EventType) -> Self {
        EventTypeRecord {
            name: event_type.name.into(),
            description: event_type.description,
            schema: event_type.schema.map(PayloadSchema::into_source),
            archived: event_type.archived,
        }
    }
}

/// A change to an event type; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventTypeUpdate {
    pub description: Option<String>,
    /// `Some(None)` removes the schema; `Some(Some(s))` replaces it.
    pub schema: Option<Option<Value>>,
    pub archived: Option<bool>,
}

fn check_description(description: &str) -> Result<(), EventTypeError> {
    let chars = description.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(EventTypeError::DescriptionTooLong { chars });
    }
    Ok(())
}

impl EventType {
    /// A new, unarchived event type; refuses an invalid name, an overlong
    /// description or an invalid schema.
    pub fn new(
        name: &str,
        description: impl Into<String>,
        schema: Option<Value>,
    ) -> Result<Self, EventTypeError> {
        let name = EventTypeName::new(name).map_err(|error| EventTypeError::Name {
            name: truncate_chars(name, MAX_NAME_LEN),
            error,
        })?;
        let description = description.into();
        check_description(&description)?;
        let schema = compile_for(&name, schema)?;
        Ok(Self {
            name,
            description,
            schema,
            archived: false,
        })
    }

    /// Applies `update` all at once: on error nothing changes.
    pub fn update(&mut self, update: EventTypeUpdate) -> Result<(), EventTypeError> {
        if let Some(description) = &update.description {
            check_description(description)?;
        }
        let schema = match update.schema {
            Some(schema) => Some(compile_for(&self.name, schema)?),
            None => None,
        };
        if let Some(description) = update.description {
            self.description = description;
        }
        if let Some(schema) = schema {
            self.schema = schema;
        }
        if let Some(archived) = update.archived {
            self.archived = archived;
        }
        Ok(())
    }

    pub fn name(&self) -> &EventTypeName {
        &self.name
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// The compiled schema, if the type has one.
    pub fn schema(&self) -> Option<&PayloadSchema> {
        self.schema.as_ref()
    }

    pub fn archived(&self) -> bool {
        self.archived
    }

    /// Checks `payload` against the type's schema; a type without a schema
    /// accepts any payload.
    pub fn validate_payload(&self, payload: &Value) -> Result<(), EventPayloadError> {
        match &self.schema {
            None => Ok(()),
            Some(schema) => schema.validate(payload).map_err(|error| EventPayloadError {
                event_type: self.name.to_string(),
                error,
            }),
        }
    }
}

fn compile_for(
    name: &EventTypeName,
    schema: Option<Value>,
) -> Result<Option<PayloadSchema>, EventTypeError> {
    schema
        .map(PayloadSchema::compile)
        .transpose()
        .map_err(|error| EventTypeError::Schema {
            name: name.to_string(),
            error,
        })
}

#[cfg(test)]
#[path = "event_type_tests.rs"]
mod tests;
