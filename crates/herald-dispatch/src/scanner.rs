//! Re-reads one endpoint's records from a retry-topic partition.
//!
//! A lane that had no room for its retry records leaves them in Kafka and
//! remembers the first offset it skipped; when it has room again the
//! worker scans from there, with this separate reader (assigned, never
//! committing), so the main consumer never seeks and nobody else's records
//! are re-processed. A scan stops at the live read position it was given,
//! or as soon as it finds more of the endpoint's records than fit.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_core::config::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// Polls without a record before a scan gives up (and is retried later).
const MAX_IDLE_POLLS: u32 = 30;

/// What one scan asks for.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// The endpoint (record key) to collect.
    pub endpoint: Arc<str>,
    /// First offset to read.
    pub from: i64,
    /// Stop before this offset (the live read position).
    pub until: i64,
    /// Collect at most this many records.
    pub room: usize,
}

/// What one scan found.
#[derive(Debug)]
pub struct ScanResult {
    /// The request.
    pub request: ScanRequest,
    /// The endpoint's records in `from..until`, in order, at most `room`.
    pub records: Vec<(i64, Bytes)>,
    /// Offset of the first record of the endpoint that did not fit; `None`
    /// when the scan reached `until`.
    pub stopped_at: Option<i64>,
}

/// A reader of one retry partition. Cheap to clone.
#[derive(Clone)]
pub struct Scanner {
    consumer: Arc<BaseConsumer>,
    topic: Arc<str>,
    partition: i32,
}

impl Scanner {
    /// A reader of `cfg.retry_topic` partition `partition`.
    pub fn new(cfg: &KafkaConfig, node_id: &str, partition: i32) -> Result<Self, KafkaError> {
        let name = format!("herald-retry-scan-{node_id}-{partition}");
        // Assigned, never committed: the group id only satisfies librdkafka.
        let mut config = herald_kafka::consumer_config(cfg, Some(&name), &name);
        config.set("fetch.wait.max.ms", "10");
        Ok(Self {
            consumer: Arc::new(config.create()?),
            topic: cfg.retry_topic.as_str().into(),
            partition,
        })
    }

    /// Low and high watermarks of the partition (blocking).
    pub fn watermarks(&self) -> Result<(i64, i64), KafkaError> {
        self.consumer
            .fetch_watermarks(&self.topic, self.partition, Duration::from_secs(10))
    }

    /// High watermark of any topic's partition (blocking).
    pub fn watermark(&self, topic: &str, partition: i32) -> Result<i64, KafkaError> {
        self.consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map(|(_, high)| high)
    }

    /// Runs `req` (blocking: call from `spawn_blocking`).
    pub fn scan(&self, req: ScanRequest) -> Result<ScanResult, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(req.from))?;
        self.consumer.assign(&tpl)?;
        let mut records = Vec::new();
        let mut stopped_at = None;
        let mut idle = 0;
        let key = req.endpoint.as_bytes();
        let mut next = req.from;
        while next < req.until {
            let Some(msg) = self.consumer.poll(Duration::from_millis(200)) else {
                idle += 1;
                if idle > MAX_IDLE_POLLS {
                    return Err(KafkaError::MessageConsumption(
                        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                    ));
                }
                continue;
            };
            idle = 0;
            let msg = msg?;
            next = msg.offset() + 1;
            if msg.offset() >= req.until {
                break;
            }
            if msg.key() != Some(key) {
                continue;
            }
            if records.len() >= req.room {
                stopped_at = Some(msg.offset());
                break;
            }
            records.push((
                msg.offset(),
                Bytes::copy_from_slice(msg.payload().unwrap_or_default()),
            ));
        }
        self.consumer.unassign()?;
        Ok(ScanResult {
            request: req,
            records,
            stopped_at,
        })
    }
}
