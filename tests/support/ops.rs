//! Reading the operations topic (`herald.ops`) the way an operator's tool
//! would: a plain rdkafka consumer assigned every partition of the topic from
//! the beginning (it joins no group and commits nothing). Each record's value
//! is one JSON object: `{"type", "endpoint_id", "at_ms", "node", "detail"}`.
//!
//! [`OpsTail`] reads in a background thread for the whole test (a
//! `TopicTail`); waiting on it is event-driven (every record wakes
//! [`OpsTail::wait_for`]).

#![allow(dead_code)]

use std::time::Duration;

use rdkafka::message::Message;
use serde_json::Value;

use super::topic_tail::TopicTail;

/// One record of the operations topic.
#[derive(Debug, Clone)]
pub struct OpsRecord {
    /// Partition and offset, for messages.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Record key (the endpoint id the event is about).
    pub key: String,
    /// The decoded JSON value (`Value::Null` if it did not parse).
    pub value: Value,
}

impl OpsRecord {
    /// The `type` field, e.g. `circuit.opened`.
    pub fn kind(&self) -> &str {
        self.value["type"].as_str().unwrap_or("")
    }

    /// The `endpoint_id` field.
    pub fn endpoint(&self) -> &str {
        self.value["endpoint_id"].as_str().unwrap_or("")
    }

    /// `detail.<name>` as text (`""` when missing or not a string).
    pub fn detail(&self, name: &str) -> &str {
        self.value["detail"][name].as_str().unwrap_or("")
    }
}

/// Reads the operations topic in the background from its beginning.
pub struct OpsTail(TopicTail<OpsRecord>);

impl OpsTail {
    /// Starts reading `topic` at `brokers`.
    pub fn start(brokers: &str, topic: &str) -> Self {
        Self(TopicTail::start(brokers, topic, "operations-topic", |m| {
            vec![OpsRecord {
                partition: m.partition(),
                offset: m.offset(),
                key: m
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default(),
                value: m
                    .payload()
                    .and_then(|p| serde_json::from_slice(p).ok())
                    .unwrap_or(Value::Null),
            }]
        }))
    }

    /// Records read so far, in the order read.
    pub fn records(&self) -> Vec<OpsRecord> {
        self.0.records()
    }

    /// Waits until `done(records so far)` holds, re-checking after every
    /// record; fails after `timeout` (a failure guard, never a synchronisation).
    pub async fn wait_for(
        &self,
        done: impl FnMut(&[OpsRecord]) -> bool,
        timeout: Duration,
    ) -> Result<(), String> {
        self.0.wait_for(done, timeout).await.map_err(|e| {
            let values: Vec<String> = self.records().iter().map(|r| r.value.to_string()).collect();
            format!("{e}; operations records so far: {values:?}")
        })
    }

    /// Waits for the first record of `kind` about `endpoint`; returns it.
    pub async fn wait_kind(&self, kind: &str, endpoint: &str, timeout: Duration) -> OpsRecord {
        self.wait_for(
            |rs| {
                rs.iter()
                    .any(|r| r.kind() == kind && r.endpoint() == endpoint)
            },
            timeout,
        )
        .await
        .unwrap_or_else(|e| panic!("no {kind} operational event for {endpoint}: {e}"));
        self.records()
            .into_iter()
            .find(|r| r.kind() == kind && r.endpoint() == endpoint)
            .expect("just seen")
    }

    /// Records of `kind` about `endpoint` so far.
    pub fn of(&self, kind: &str, endpoint: &str) -> Vec<OpsRecord> {
        self.records()
            .into_iter()
            .filter(|r| r.kind() == kind && r.endpoint() == endpoint)
            .collect()
    }
}
