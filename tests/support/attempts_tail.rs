//! Reading the attempt log (`herald.attempts`) the way an operator's tool
//! would: a plain rdkafka consumer assigned every partition from the
//! beginning (no group, no commits), decoding each value (one
//! `AttemptRecord` or an `AttemptBatch`) with `herald_proto::attempts`.
//!
//! A dispatcher records an attempt's metrics before it hands the attempt to
//! the attempt log, so a record read here also fences that attempt's
//! metrics and log lines. Waiting is event-driven: every record wakes
//! [`AttemptsTail::wait_for`].

#![allow(dead_code)]

use std::time::Duration;

use herald_proto::v1::AttemptRecord;
use rdkafka::message::Message;

use super::topic_tail::TopicTail;

/// Reads the attempts topic in the background from its beginning.
pub struct AttemptsTail(TopicTail<AttemptRecord>);

impl AttemptsTail {
    /// Starts reading `topic` at `brokers` (every partition it has).
    pub fn start(brokers: &str, topic: &str, _partitions: i32) -> Self {
        Self(TopicTail::start(brokers, topic, "attempts-topic", |m| {
            herald_proto::attempts::decode(m.payload().unwrap_or_default()).unwrap_or_else(|e| {
                panic!(
                    "attempt record at {}:{} does not decode: {e}",
                    m.partition(),
                    m.offset()
                )
            })
        }))
    }

    /// Records read so far.
    pub fn records(&self) -> Vec<AttemptRecord> {
        self.0.records()
    }

    /// Waits until `done(records so far)` holds, re-checking after every
    /// record; fails after `timeout` (a failure guard, never a synchronisation).
    pub async fn wait_for(
        &self,
        done: impl FnMut(&[AttemptRecord]) -> bool,
        timeout: Duration,
    ) -> Result<(), String> {
        self.0.wait_for(done, timeout).await
    }

    /// Waits until at least `n` records were read.
    pub async fn wait_count(&self, n: usize, timeout: Duration) -> Result<(), String> {
        self.wait_for(|rs| rs.len() >= n, timeout).await
    }
}
