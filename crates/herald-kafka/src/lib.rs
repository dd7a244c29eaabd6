//! Kafka plumbing shared by every Herald role: client configuration, topic
//! creation, and the embedded in-memory broker of `herald dev`.
//!
//! Owns how Herald talks to Kafka in general; what it reads and writes lives
//! with the roles (`herald-ingest`, `herald-dispatch`, `herald-registry`).
#![forbid(unsafe_code)]

pub mod admin;
pub mod clients;
pub mod dev;

pub use admin::{ensure_topics, TopicError};
pub use clients::{base_config, consumer_config, producer_config};
pub use dev::DevBroker;

/// Header names Herald puts on Kafka records.
pub mod headers {
    /// Set on every event record: the event id (lets tools read it without decoding).
    pub const EVENT_ID: &str = "herald-event-id";
}
