//! Reading the operations topic (`herald.ops`) the way an operator's tool
//! would: a plain rdkafka consumer assigned every partition of the topic from
//! the beginning (it joins no group and commits nothing). Each record's value
//! is one JSON object: `{"type", "endpoint_id", "at_ms", "node", "detail"}`.
//!
//! [`OpsTail`] reads in a background thread for the whole test; waiting on it
//! is event-driven (every record wakes [`OpsTail::wait_for`]).
//!
//! Not part of `support/mod.rs` (owned elsewhere): a test includes it with
//! `#[path = "support/ops.rs"] mod ops;`.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::watch;

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

struct Shared {
    records: Mutex<Vec<OpsRecord>>,
    changed: watch::Sender<u64>,
}

/// Reads the operations topic in the background from its beginning.
pub struct OpsTail {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn consumer(brokers: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", herald_testkit::fixtures::unique("ops-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("operations-topic consumer");
    let meta = c
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .expect("operations-topic metadata");
    let partitions = meta
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0)
        .max(1);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("assignable partition");
    }
    c.assign(&tpl).expect("assign the operations partitions");
    c
}

impl OpsTail {
    /// Starts reading `topic` at `brokers`.
    pub fn start(brokers: &str, topic: &str) -> Self {
        let shared = Arc::new(Shared {
            records: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let c = consumer(brokers, topic);
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Blocks until a record arrives; the timeout only lets the
                    // loop notice `stop`.
                    match c.poll(Duration::from_millis(200)) {
                        Some(Ok(m)) => {
                            let value = m
                                .payload()
                                .and_then(|p| serde_json::from_slice(p).ok())
                                .unwrap_or(Value::Null);
                            let rec = OpsRecord {
                                partition: m.partition(),
                                offset: m.offset(),
                                key: m
                                    .key()
                                    .map(|k| String::from_utf8_lossy(k).into_owned())
                                    .unwrap_or_default(),
                                value,
                            };
                            shared.records.lock().unwrap().push(rec);
                            shared.changed.send_modify(|v| *v += 1);
                        }
                        Some(Err(e)) => eprintln!("operations-topic reader: {e}"),
                        None => {}
                    }
                }
            })
        };
        Self {
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// Records read so far, in the order read.
    pub fn records(&self) -> Vec<OpsRecord> {
        self.shared.records.lock().unwrap().clone()
    }

    /// Waits until `done(records so far)` holds, re-checking after every
    /// record; fails after `timeout` (a failure guard, never a synchronisation).
    pub async fn wait_for(
        &self,
        mut done: impl FnMut(&[OpsRecord]) -> bool,
        timeout: Duration,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut changes = self.shared.changed.subscribe();
        let check = async {
            loop {
                changes.borrow_and_update();
                if done(&self.shared.records.lock().unwrap()) {
                    return;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, check).await.map_err(|_| {
            format!(
                "condition not met after {:?}; operations records so far: {:?}",
                started.elapsed(),
                self.records()
                    .iter()
                    .map(|r| r.value.to_string())
                    .collect::<Vec<_>>()
            )
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

impl Drop for OpsTail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
