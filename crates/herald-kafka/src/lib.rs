//! Kafka plumbing shared by every Herald role: client configuration, topic
//! creation, the producer every role writes with, and the embedded
//! in-memory broker of `herald dev`.
//!
//! Owns how Herald talks to Kafka in general; what it reads and writes lives
//! with the roles (`herald-ingest`, `herald-dispatch`, `herald-registry`).
// `deny`, not `forbid`: `membership` reads the group generation through
// librdkafka's C API in one audited function.
#![deny(unsafe_code)]

pub mod admin;
pub mod capabilities;
pub mod clients;
pub mod dev;
pub mod idle;
pub mod membership;
pub mod producer;
pub mod quiet;
pub mod scan;
pub mod watch;

pub use admin::{ensure_topics, TopicError};
pub use capabilities::{Capabilities, Gap};
pub use clients::{base_config, consumer_config, group_member_config, producer_config};
pub use dev::DevBroker;
pub use producer::{DeliveryFuture, Producer};

/// Header names Herald puts on Kafka records (events: the event id; retry
/// and dead-letter records: attempt state and provenance; replay markers).
pub mod headers {
    /// The event id (on every record Herald writes).
    pub const EVENT_ID: &str = "herald-event-id";
    /// The endpoint id.
    pub const ENDPOINT_ID: &str = "herald-endpoint-id";
    /// Attempts made so far.
    pub const ATTEMPTS: &str = "herald-attempts";
    /// Unix ms before which the next attempt must not start (retry records).
    pub const NEXT_ATTEMPT_MS: &str = "herald-next-attempt-ms";
    /// Unix ms from which the scheduler may take a scheduled-topic record
    /// (the end of its tier's wait).
    pub const READY_MS: &str = "herald-ready-ms";
    /// Events-topic partition the event was first written to.
    pub const ORIGIN_PARTITION: &str = "herald-origin-partition";
    /// Events-topic offset the event was first written to.
    pub const ORIGIN_OFFSET: &str = "herald-origin-offset";
    /// The events topic.
    pub const ORIGIN_TOPIC: &str = "herald-origin-topic";
    /// Why the event was dead-lettered (`final_answer`, `attempts_exhausted`,
    /// `max_age_exceeded`, `predecessor_dead_lettered`, `endpoint_unknown`,
    /// `poison_record`).
    pub const REASON: &str = "herald-dlq-reason";
    /// HTTP status of the last attempt (absent when there was no answer).
    pub const LAST_STATUS: &str = "herald-last-status";
    /// Reason of the last failed attempt.
    pub const LAST_ERROR: &str = "herald-last-error";
    /// Unix ms of the first attempt.
    pub const FIRST_ATTEMPT_MS: &str = "herald-first-attempt-ms";
    /// Unix ms of the last attempt.
    pub const LAST_ATTEMPT_MS: &str = "herald-last-attempt-ms";
    /// Unix ms when the event was dead-lettered.
    pub const DEAD_LETTERED_MS: &str = "herald-dead-lettered-ms";
    /// On a replay marker: the dead letter (`partition:offset`) it replays.
    pub const REPLAY_OF: &str = "herald-replay-of";
    /// On a replay marker: unix ms of the replay.
    pub const REPLAYED_MS: &str = "herald-replayed-ms";
    /// On a replay marker: the endpoint the dead letter was replayed to.
    pub const REPLAY_TARGET: &str = "herald-replay-target";
}
