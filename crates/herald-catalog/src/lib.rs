//! The pure logic of Herald's event catalogue and fan-out: event type names
//! and schemas, subscription patterns and channels, payload filters (CEL),
//! and per-endpoint ids and chunking for fan-out. No Kafka, no gRPC, no I/O,
//! no clock: the ingest path, the endpoint registry and the CLI call into it.
//!
//! # Layout
//! - [`event_type`]: valid event type names and the [`EventType`] record
//!   (name, description, optional schema, archived flag).
//! - [`schema`]: JSON Schemas for payloads, compiled once and offline;
//!   errors name the failing location.
//! - [`pattern`]: subscription patterns (`order.*`, `*`), channels, and the
//!   [`Subscription`] that decides whether an event goes to an endpoint.
//! - [`filter`]: CEL payload filters: compile once, evaluate per event, with
//!   bounded cost and no panics.
//! - [`fanout`]: deterministic per-endpoint event ids, and chunking a fan-out
//!   within record and byte budgets.
//!
//! # Policy left to the caller
//! Whether unknown or archived event types may be published, which endpoints
//! are candidates (same application, enabled), and where a refused filter or
//! schema is reported: this crate only answers the questions precisely.
#![forbid(unsafe_code)]

pub mod event_type;
pub mod fanout;
pub mod filter;
pub mod pattern;
pub mod schema;

pub use event_type::{EventType, EventTypeError, EventTypeName, EventTypeRecord, EventTypeUpdate};
pub use fanout::{fanout_event_id, is_fanout_event_id, plan_chunks, ChunkError, ChunkLimits};
pub use filter::{EvalError, EventInput, Filter, FilterError};
pub use pattern::{Match, NoMatch, Pattern, Subscription, SubscriptionError};
pub use schema::{PayloadError, PayloadSchema, SchemaError};

/// `text` cut to at most `max` characters, marking the cut.
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}
