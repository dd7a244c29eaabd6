//! Reads a whole topic once: every partition, from the first record written
//! at or after a time, up to the high watermarks seen when the scan starts.
//! Used by tools that have no other store than Kafka (dead-letter listing
//! and replay, the attempt log). Blocking: call from `spawn_blocking`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald_core::config::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// Polls without a record before a scan gives up.
const MAX_IDLE_POLLS: u32 = 60;

/// Calls `visit` for every record of `topic` written at or after `from_ms`
/// (0 = from the start), partition by partition in offset order
/// (partitions interleaved), up to the high watermarks at the start.
pub fn scan_topic(
    kafka: &KafkaConfig,
    client_id: &str,
    topic: &str,
    from_ms: i64,
    visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), KafkaError> {
    scan_topic_until(
        kafka,
        client_id,
        topic,
        from_ms,
        &AtomicBool::new(false),
        visit,
    )
}

/// A consumer for reading `topic` by assignment (never committing; the
/// group id is only required by librdkafka), and the topic's partitions.
pub(crate) fn reader(
    kafka: &KafkaConfig,
    client_id: &str,
    topic: &str,
) -> Result<(BaseConsumer, Vec<i32>), KafkaError> {
    let consumer: BaseConsumer =
        crate::consumer_config(kafka, Some(client_id), client_id).create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = md
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    Ok((consumer, partitions))
}

/// [`scan_topic`] that gives up with `KafkaError::Canceled` as soon as
/// `stop` is set (the caller went away, or its deadline passed), checked
/// between records and polls.
pub fn scan_topic_until(
    kafka: &KafkaConfig,
    client_id: &str,
    topic: &str,
    from_ms: i64,
    stop: &AtomicBool,
    visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), KafkaError> {
    scan_partitions_until(kafka, client_id, topic, from_ms, stop, |_| None, visit)
}

/// [`scan_topic_until`] over one partition only, when `pick(partition
/// count)` names one (`None` = every partition).
pub fn scan_partitions_until(
    kafka: &KafkaConfig,
    client_id: &str,
    topic: &str,
    from_ms: i64,
    stop: &AtomicBool,
    pick: impl FnOnce(usize) -> Option<i32>,
    mut visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), KafkaError> {
    let (consumer, mut partitions) = reader(kafka, client_id, topic)?;
    if let Some(only) = pick(partitions.len()) {
        partitions.retain(|&p| p == only);
    }
    let mut ends = HashMap::new();
    let mut start = HashMap::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        if high > low {
            ends.insert(p, high);
            start.insert(p, Offset::Beginning);
        }
    }
    if from_ms > 0 && !ends.is_empty() {
        let mut times = TopicPartitionList::new();
        for &p in ends.keys() {
            times.add_partition_offset(topic, p, Offset::Offset(from_ms))?;
        }
        for e in consumer
            .offsets_for_times(times, Duration::from_secs(10))?
            .elements()
        {
            match e.offset() {
                Offset::Offset(o) => {
                    start.insert(e.partition(), Offset::Offset(o));
                }
                Offset::End => {
                    ends.remove(&e.partition());
                }
                _ => {}
            }
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    let mut assign = TopicPartitionList::new();
    for (&p, &o) in &start {
        if ends.contains_key(&p) {
            assign.add_partition_offset(topic, p, o)?;
        }
    }
    consumer.assign(&assign)?;
    let mut idle = 0;
    while !ends.is_empty() {
        if stop.load(Ordering::Relaxed) {
            return Err(KafkaError::Canceled);
        }
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            idle += 1;
            if idle > MAX_IDLE_POLLS {
                return Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::OperationTimedOut,
                ));
            }
            continue;
        };
        idle = 0;
        let msg = msg?;
        use rdkafka::Message as _;
        if ends
            .get(&msg.partition())
            .is_some_and(|&end| msg.offset() + 1 >= end)
        {
            ends.remove(&msg.partition());
        }
        visit(&msg);
    }
    Ok(())
}
