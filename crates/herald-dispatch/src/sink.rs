//! Writes events out of the dispatcher: to the retry topic (long retries,
//! overflow) and to the dead-letter topic, always to the same partition
//! number the event came from, and keyed by endpoint id.
//!
//! Writes use one idempotent producer per node (`acks=all`), so two writes
//! to one partition land in the order they were made. A failed write is
//! retried until it lands or the partition is revoked: the event's source
//! offset is finished only after the write is acknowledged.

use std::time::Duration;

use herald_core::config::KafkaConfig;
use herald_core::schedule::Exhaustion;
use herald_core::time::now_ms;
use herald_proto::v1::EventEnvelope;
use prost::Message as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

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
}

impl DeadReason {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Exhausted(e) => e.as_str(),
            DeadReason::Predecessor => "predecessor_dead_lettered",
        }
    }
}

/// The retry and dead-letter writer of one node.
#[derive(Clone)]
pub struct Sink {
    producer: FutureProducer,
    events_topic: String,
    retry_topic: String,
    dlq_topic: String,
}

impl Sink {
    /// A writer for the topics named in `cfg`.
    pub fn new(cfg: &KafkaConfig, node_id: &str) -> Result<Self, KafkaError> {
        let producer =
            herald_kafka::producer_config(cfg, &format!("herald-dispatch-sink-{node_id}"))
                .create()?;
        Ok(Self {
            producer,
            events_topic: cfg.events_topic.clone(),
            retry_topic: cfg.retry_topic.clone(),
            dlq_topic: cfg.dlq_topic.clone(),
        })
    }

    /// The events topic's name.
    pub fn events_topic(&self) -> &str {
        &self.events_topic
    }

    /// Appends `envelope` to partition `partition` of the retry topic;
    /// returns the offset it landed at. Retries until it lands.
    pub async fn to_retry(&self, partition: i32, envelope: &EventEnvelope) -> i64 {
        let value = envelope.encode_to_vec();
        let attempt = envelope.attempt.clone().unwrap_or_default();
        let attempts = attempt.attempts.to_string();
        let next = attempt.next_attempt_ms.to_string();
        let origin_p = envelope.origin_partition.to_string();
        let origin_o = envelope.origin_offset.to_string();
        let headers = [
            (header::EVENT_ID, envelope.event_id.as_str()),
            (header::ATTEMPTS, attempts.as_str()),
            (header::NEXT_ATTEMPT_MS, next.as_str()),
            (header::ORIGIN_PARTITION, origin_p.as_str()),
            (header::ORIGIN_OFFSET, origin_o.as_str()),
        ];
        self.write(
            &self.retry_topic,
            partition,
            &envelope.endpoint_id,
            &value,
            &headers,
        )
        .await
    }

    /// Appends `envelope` to the dead-letter topic with headers saying why.
    pub async fn to_dlq(
        &self,
        partition: i32,
        envelope: &EventEnvelope,
        reason: DeadReason,
    ) -> i64 {
        let value = envelope.encode_to_vec();
        let a = envelope.attempt.clone().unwrap_or_default();
        let attempts = a.attempts.to_string();
        let status = a.last_status.to_string();
        let first = a.first_attempt_ms.to_string();
        let last = a.last_attempt_ms.to_string();
        let origin_p = envelope.origin_partition.to_string();
        let origin_o = envelope.origin_offset.to_string();
        let now = now_ms().to_string();
        let mut headers = vec![
            (header::EVENT_ID, envelope.event_id.as_str()),
            (header::ENDPOINT_ID, envelope.endpoint_id.as_str()),
            (header::REASON, reason.as_str()),
            (header::ATTEMPTS, attempts.as_str()),
            (header::LAST_ERROR, a.last_error.as_str()),
            (header::FIRST_ATTEMPT_MS, first.as_str()),
            (header::LAST_ATTEMPT_MS, last.as_str()),
            (header::ORIGIN_TOPIC, self.events_topic.as_str()),
            (header::ORIGIN_PARTITION, origin_p.as_str()),
            (header::ORIGIN_OFFSET, origin_o.as_str()),
            (header::DEAD_LETTERED_MS, now.as_str()),
        ];
        if a.last_status > 0 {
            headers.push((header::LAST_STATUS, status.as_str()));
        }
        self.write(
            &self.dlq_topic,
            partition,
            &envelope.endpoint_id,
            &value,
            &headers,
        )
        .await
    }

    async fn write(
        &self,
        topic: &str,
        partition: i32,
        key: &str,
        value: &[u8],
        headers: &[(&str, &str)],
    ) -> i64 {
        let mut delay = Duration::from_millis(100);
        loop {
            let mut h = OwnedHeaders::new_with_capacity(headers.len());
            for (k, v) in headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let record = FutureRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(value)
                .headers(h);
            match self.producer.send(record, Duration::from_secs(30)).await {
                Ok(d) => return d.offset,
                Err((e, _)) => {
                    tracing::warn!(topic, partition, error = %e, "write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}
