//! The attempt log: every delivery attempt (event, message, attempt number,
//! time, status, latency, error, the start of the response body, node)
//! written to the attempts topic, keyed by endpoint, in the partition of its
//! message ([`herald_core::ids::attempt_partition`]), so operators can
//! answer "what happened to event X", or to every endpoint of fan-out M, by
//! reading one partition (`EventService.ListAttempts`, `herald attempts`).
//!
//! Best effort by design: a record is handed to the producer and not awaited;
//! when the producer's queue is full the record is dropped and counted
//! (`herald_attempt_log_dropped_total`), never slowing deliveries down.

use std::sync::Arc;

use bytes::Bytes;
use herald_kafka::Producer;
use herald_proto::v1::AttemptRecord;
use herald_telemetry::names;
use prost::Message as _;
use rdkafka::producer::FutureRecord;

/// Writer of attempt records. Cheap to clone.
#[derive(Clone)]
pub struct AttemptLog {
    producer: Producer,
    topic: Arc<str>,
    node: Arc<str>,
    /// The attempts topic's partition count (`None` if it could not be
    /// read: the producer's partitioner then places records by endpoint).
    partitions: Option<usize>,
}

/// One attempt, as the attempt code saw it.
pub struct Entry<'a> {
    /// Event id.
    pub event_id: &'a str,
    /// Message id (a fan-out's; empty for a direct publish, whose event id
    /// is its message id).
    pub message_id: &'a str,
    /// Endpoint id (the record key).
    pub endpoint_id: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// Attempt number (1 = first).
    pub attempt: u32,
    /// Start, unix ms.
    pub at_ms: i64,
    /// HTTP status, 0 = none.
    pub status: u32,
    /// Duration, ms.
    pub latency_ms: u32,
    /// `success`, `retryable`, `final` or `refused`.
    pub outcome: &'a str,
    /// Failure reason, empty on success.
    pub error: &'a str,
    /// The capped start of the response body.
    pub body: Bytes,
}

impl AttemptLog {
    /// Writes to `topic` (of `partitions` partitions, if known) through
    /// `producer`, naming this `node`.
    pub fn new(producer: Producer, topic: &str, partitions: Option<usize>, node: &str) -> Self {
        Self {
            producer,
            topic: topic.into(),
            node: node.into(),
            partitions,
        }
    }

    /// Hands one record to the producer (not awaited).
    pub fn record(&self, e: Entry<'_>) {
        let message_id = if e.message_id.is_empty() {
            e.event_id
        } else {
            e.message_id
        };
        let value = AttemptRecord {
            event_id: e.event_id.to_string(),
            endpoint_id: e.endpoint_id.to_string(),
            attempt: e.attempt,
            at_ms: e.at_ms,
            status: e.status,
            latency_ms: e.latency_ms,
            outcome: e.outcome.to_string(),
            error: e.error.to_string(),
            response_body: e.body,
            node: self.node.to_string(),
            event_type: e.event_type.to_string(),
            message_id: message_id.to_string(),
        }
        .encode_to_vec();
        let mut record = FutureRecord::to(&self.topic)
            .key(e.endpoint_id)
            .payload(&value);
        if let Some(n) = self.partitions {
            record = record.partition(herald_core::ids::attempt_partition(message_id, n));
        }
        if self.producer.send_result(record).is_err() {
            metrics::counter!(names::ATTEMPT_LOG_DROPPED).increment(1);
        }
    }
}
