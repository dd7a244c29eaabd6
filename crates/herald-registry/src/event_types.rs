//! The event type catalogue's records in the registry topic. Event types
//! share the endpoints' compacted topic under keys `event-type:<name>` (an
//! endpoint id cannot contain `:`, so the two never collide); their value is
//! an `EventTypeRecord`. Types are archived, never deleted, so a publisher
//! that still names one gets a clear answer.

use herald_catalog::{EventType, EventTypeUpdate};
use herald_proto::v1::EventTypeRecord;

/// Prefix of every event type's key in the registry topic.
pub const KEY_PREFIX: &str = "event-type:";

/// The registry key of event type `name`.
pub fn key(name: &str) -> String {
    format!("{KEY_PREFIX}{name}")
}

/// An event type as the registry holds it: validated, its schema compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEventType {
    /// Name, description, compiled schema, archived flag.
    pub ty: EventType,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds.
    pub updated_at_ms: i64,
}

impl StoredEventType {
    /// Validates a record: its name, description and schema (a record that
    /// fails is skipped by every node alike, keeping the previous version).
    pub fn from_record(rec: EventTypeRecord) -> Result<Self, String> {
        let schema = parse_schema(&rec.schema_json)?;
        let mut ty =
            EventType::new(&rec.name, rec.description, schema).map_err(|e| e.to_string())?;
        ty.update(EventTypeUpdate {
            archived: Some(rec.archived),
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
        Ok(Self {
            ty,
            created_at_ms: rec.created_at_ms,
            updated_at_ms: rec.updated_at_ms,
        })
    }

    /// The record to write.
    pub fn to_record(&self) -> EventTypeRecord {
        EventTypeRecord {
            name: self.ty.name().to_string(),
            description: self.ty.description().to_string(),
            schema_json: self
                .ty
                .schema()
                .map(|s| s.source().to_string())
                .unwrap_or_default(),
            archived: self.ty.archived(),
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        }
    }
}

/// A schema as JSON text: `""` is none; anything else must be JSON.
pub fn parse_schema(text: &str) -> Result<Option<serde_json::Value>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| format!("schema_json is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_keeps_everything() {
        let rec = EventTypeRecord {
            name: "order.shipped".into(),
            description: "an order left the warehouse".into(),
            schema_json: r#"{"type":"object","required":["id"]}"#.into(),
            archived: true,
            created_at_ms: 1,
            updated_at_ms: 2,
        };
        let stored = StoredEventType::from_record(rec.clone()).unwrap();
        assert!(stored.ty.archived());
        assert_eq!(stored.to_record(), rec);
    }

    #[test]
    fn bad_records_are_refused_with_a_reason() {
        let bad_name = EventTypeRecord {
            name: "order..shipped".into(),
            ..Default::default()
        };
        assert!(StoredEventType::from_record(bad_name).is_err());
        let bad_schema = EventTypeRecord {
            name: "a".into(),
            schema_json: "{not json".into(),
            ..Default::default()
        };
        let e = StoredEventType::from_record(bad_schema).unwrap_err();
        assert!(e.contains("schema_json"), "{e}");
    }
}
