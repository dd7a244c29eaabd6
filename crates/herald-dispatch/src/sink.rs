//! Writes events out of the dispatcher: to the retry topic (long retries,
//! overflow) and to the dead-letter topic, always to the same partition
//! number the event came from, and keyed by endpoint id.
//!
//! Writes use one idempotent producer per node (`acks=all`) that never gives
//! up on a message, and each worker enqueues its writes in order, so writes
//! to one partition land in the order they were made. The event's source
//! offset is finished only after the write is acknowledged. Writes already
//! handed to the producer when a partition is revoked still land: the next
//! owner may then see a copy it also re-sends (a duplicate, never a loss).

use herald_core::config::KafkaConfig;
use herald_core::schedule::Exhaustion;
use herald_core::time::now_ms;
use herald_kafka::Producer;
use herald_proto::v1::EventEnvelope;
use prost::Message as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;

/// Sorts a synchronous produce error.
pub fn classify(e: KafkaError) -> EnqueueError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => EnqueueError::QueueFull,
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
            EnqueueError::TooLarge
        }
        _ => EnqueueError::Fatal(e),
    }
}

/// Header names on retry and dead-letter records.
pub use herald_kafka::headers as header;

/// Why an event is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// Its own retries ended.
    Exhausted(Exhaustion),
    /// An earlier event of the same ordered endpoint was dead-lettered
    /// (the lane's backlog follows it, see docs/delivery-semantics.md).
    Predecessor,
    /// The endpoint is not in the registry even after it caught up with
    /// everything written before (never created, or its tombstone was
    /// compacted away before this node read it).
    UnknownEndpoint,
    /// The record could not be decoded (or its key does not match its
    /// envelope): written as it was read, payload = the raw record value.
    Poison,
}

impl DeadReason {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Exhausted(e) => e.as_str(),
            DeadReason::Predecessor => "predecessor_dead_lettered",
            DeadReason::UnknownEndpoint => "endpoint_unknown",
            DeadReason::Poison => "poison_record",
        }
    }
}

/// Where a write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The retry topic.
    Retry,
    /// The dead-letter topic, with the reason.
    DeadLetter(DeadReason),
}

/// The retry and dead-letter writer of one node.
///
/// Writes are handed to librdkafka synchronously and in order
/// ([`Sink::enqueue`]); the producer never gives up on a message
/// (`message.timeout.ms=0`) and is idempotent, so writes to one partition
/// land in the order they were enqueued. Callers keep their own FIFO and
/// retry the head when the local queue is full.
#[derive(Clone)]
pub struct Sink {
    producer: Producer,
    events_topic: String,
    retry_topic: String,
    dlq_topic: String,
}

/// Why a write could not be handed to the producer.
#[derive(Debug)]
pub enum EnqueueError {
    /// The producer's local queue is full; try the same write again shortly.
    QueueFull,
    /// The record is larger than the producer or broker accepts; the caller
    /// shrinks what it can (the error text) and tries again.
    TooLarge,
    /// Anything else is a fatal producer state or a misconfiguration (no
    /// such topic or partition): retrying cannot help.
    Fatal(KafkaError),
}

impl Sink {
    /// A writer for the topics named in `cfg`.
    pub fn new(cfg: &KafkaConfig, node_id: &str) -> Result<Self, KafkaError> {
        let mut config =
            herald_kafka::producer_config(cfg, &format!("herald-dispatch-sink-{node_id}"));
        // Never drop a write: librdkafka retries until the broker has it.
        config.set("message.timeout.ms", "0");
        // A write that fails for good stops the producer rather than let
        // later writes land after a gap: the worker then stops, the node
        // restarts from committed offsets, and no retry record of an
        // ordered endpoint is ever stored ahead of an older one that was
        // lost (the partition simulation's failed writes assume this).
        // librdkafka accepts it only with idempotence, which an operator
        // may turn off (`kafka.client`, e.g. for tansu 0.6.0, see
        // docs/topics.md); order then rests on one request in flight.
        if config.get("enable.idempotence") != Some("false") {
            config.set("enable.gapless.guarantee", "true");
        }
        let producer = Producer::new(&config)?;
        Ok(Self {
            producer,
            events_topic: cfg.events_topic.clone(),
            retry_topic: cfg.retry_topic.clone(),
            dlq_topic: cfg.dlq_topic.clone(),
        })
    }

    /// Hands one write to the producer, in call order. The future resolves
    /// to the offset the record landed at.
    pub fn enqueue(
        &self,
        target: Target,
        partition: i32,
        envelope: &EventEnvelope,
    ) -> Result<
        impl std::future::Future<Output = Result<i64, KafkaError>> + Send + 'static,
        EnqueueError,
    > {
        let value = envelope.encode_to_vec();
        let a = envelope.attempt.clone().unwrap_or_default();
        let attempts = a.attempts.to_string();
        let next = a.next_attempt_ms.to_string();
        let status = a.last_status.to_string();
        let first = a.first_attempt_ms.to_string();
        let last = a.last_attempt_ms.to_string();
        let origin_p = envelope.origin_partition.to_string();
        let origin_o = envelope.origin_offset.to_string();
        let now = now_ms().to_string();
        let mut headers: Vec<(&str, &str)> = vec![
            (header::EVENT_ID, envelope.event_id.as_str()),
            (header::ENDPOINT_ID, envelope.endpoint_id.as_str()),
            (header::ATTEMPTS, attempts.as_str()),
            (header::ORIGIN_TOPIC, self.events_topic.as_str()),
            (header::ORIGIN_PARTITION, origin_p.as_str()),
            (header::ORIGIN_OFFSET, origin_o.as_str()),
        ];
        let topic = match target {
            Target::Retry => {
                headers.push((header::NEXT_ATTEMPT_MS, next.as_str()));
                &self.retry_topic
            }
            Target::DeadLetter(reason) => {
                headers.extend([
                    (header::REASON, reason.as_str()),
                    (header::LAST_ERROR, a.last_error.as_str()),
                    (header::FIRST_ATTEMPT_MS, first.as_str()),
                    (header::LAST_ATTEMPT_MS, last.as_str()),
                    (header::DEAD_LETTERED_MS, now.as_str()),
                ]);
                if a.last_status > 0 {
                    headers.push((header::LAST_STATUS, status.as_str()));
                }
                &self.dlq_topic
            }
        };
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in &headers {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let record = FutureRecord::to(topic)
            .partition(partition)
            .key(envelope.endpoint_id.as_str())
            .payload(&value)
            .headers(h);
        match self.producer.send_result(record) {
            Ok(delivery) => Ok(async move {
                match delivery.await {
                    Ok(Ok(d)) => Ok(d.offset),
                    Ok(Err((e, _))) => Err(e),
                    Err(_) => Err(KafkaError::Canceled),
                }
            }),
            Err((e, _)) => Err(classify(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sink is gapless with idempotence, and still starts when an
    /// operator turned idempotence off (librdkafka refuses gapless then).
    #[test]
    fn the_sink_starts_with_or_without_idempotence() {
        let mut cfg = KafkaConfig::default();
        assert!(Sink::new(&cfg, "sink-test").is_ok());
        cfg.client
            .insert("enable.idempotence".into(), "false".into());
        cfg.client
            .insert("max.in.flight.requests.per.connection".into(), "1".into());
        let sink = Sink::new(&cfg, "sink-test");
        assert!(sink.is_ok(), "{:?}", sink.err());
    }

    #[test]
    fn produce_errors_are_classified_by_code() {
        let e = |c| KafkaError::MessageProduction(c);
        assert!(matches!(
            classify(e(RDKafkaErrorCode::QueueFull)),
            EnqueueError::QueueFull
        ));
        assert!(matches!(
            classify(e(RDKafkaErrorCode::MessageSizeTooLarge)),
            EnqueueError::TooLarge
        ));
        assert!(matches!(
            classify(e(RDKafkaErrorCode::UnknownPartition)),
            EnqueueError::Fatal(_)
        ));
        assert!(matches!(
            classify(e(RDKafkaErrorCode::Fatal)),
            EnqueueError::Fatal(_)
        ));
    }
}
