//! Waits for a record that has not been written yet: a [`Watch`] notes every
//! partition's end of a topic when it is made, then reads on from there, so
//! a record written after [`Watch::start`] returned is never missed (e.g. a
//! test event's first attempt in the attempt log). Blocking: call from
//! `spawn_blocking`.

use std::time::{Duration, Instant};

use herald_core::config::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};

/// A consumer positioned at a topic's ends as they were at its start.
pub struct Watch {
    consumer: BaseConsumer,
}

impl Watch {
    /// Notes the high watermark of every partition of `topic` and assigns
    /// the consumer there.
    pub fn start(kafka: &KafkaConfig, client_id: &str, topic: &str) -> Result<Self, KafkaError> {
        let (consumer, partitions) = crate::scan::reader(kafka, client_id, topic)?;
        let mut assign = TopicPartitionList::new();
        for p in partitions {
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            assign.add_partition_offset(topic, p, Offset::Offset(high))?;
        }
        consumer.assign(&assign)?;
        Ok(Self { consumer })
    }

    /// Reads records written since [`Watch::start`] until `found` returns
    /// true for one (true) or `wait` has passed (false).
    pub fn until(
        &self,
        wait: Duration,
        mut found: impl FnMut(&BorrowedMessage<'_>) -> bool,
    ) -> Result<bool, KafkaError> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            match self.consumer.poll(left.min(Duration::from_millis(200))) {
                Some(Ok(msg)) if found(&msg) => return Ok(true),
                Some(Ok(_)) | None => {}
                Some(Err(e)) => tracing::debug!(error = %e, "watch poll error"),
            }
        }
    }
}
