//! Reading the attempt log (`herald.attempts`) the way an operator's tool
//! would: a plain rdkafka consumer assigned every partition from the
//! beginning (no group, no commits), decoding each value as an
//! `AttemptRecord`.
//!
//! A dispatcher records an attempt's metrics before it hands the attempt to
//! the attempt log, so a record read here also fences that attempt's
//! metrics and log lines. Waiting is event-driven: every record wakes
//! [`AttemptsTail::wait_for`].
//!
//! Not part of `support/mod.rs` (owned elsewhere): a test includes it with
//! `#[path = "support/attempts_tail.rs"] mod attempts_tail;`.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_proto::v1::AttemptRecord;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::watch;

struct Shared {
    records: Mutex<Vec<AttemptRecord>>,
    changed: watch::Sender<u64>,
}

/// Reads the attempts topic in the background from its beginning.
pub struct AttemptsTail {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AttemptsTail {
    /// Starts reading `topic` (with `partitions` partitions) at `brokers`.
    pub fn start(brokers: &str, topic: &str, partitions: i32) -> Self {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set(
                "group.id",
                herald_testkit::fixtures::unique("attempts-reader"),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .expect("attempts-topic consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("assignable partition");
        }
        c.assign(&tpl).expect("assign the attempts partitions");
        let shared = Arc::new(Shared {
            records: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Blocks until a record arrives; the timeout only lets the
                    // loop notice `stop`.
                    match c.poll(Duration::from_millis(200)) {
                        Some(Ok(m)) => {
                            let rec = AttemptRecord::decode(m.payload().unwrap_or_default())
                                .unwrap_or_else(|e| {
                                    panic!(
                                        "attempt record at {}:{} does not decode: {e}",
                                        m.partition(),
                                        m.offset()
                                    )
                                });
                            shared.records.lock().unwrap().push(rec);
                            shared.changed.send_modify(|v| *v += 1);
                        }
                        Some(Err(e)) => eprintln!("attempts-topic reader: {e}"),
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

    /// Records read so far.
    pub fn records(&self) -> Vec<AttemptRecord> {
        self.shared.records.lock().unwrap().clone()
    }

    /// Waits until `done(records so far)` holds, re-checking after every
    /// record; fails after `timeout` (a failure guard, never a synchronisation).
    pub async fn wait_for(
        &self,
        mut done: impl FnMut(&[AttemptRecord]) -> bool,
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
                "attempt-log condition not met after {:?} ({} records read)",
                started.elapsed(),
                self.shared.records.lock().unwrap().len()
            )
        })
    }

    /// Waits until at least `n` records were read.
    pub async fn wait_count(&self, n: usize, timeout: Duration) -> Result<(), String> {
        self.wait_for(|rs| rs.len() >= n, timeout).await
    }
}

impl Drop for AttemptsTail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
