//! Reading a whole topic in the background the way an operator's tool would:
//! a plain rdkafka consumer assigned every partition from the beginning (it
//! joins no group and commits nothing), decoding each record with a
//! function the caller gives. Waiting is event-driven: every record wakes
//! [`TopicTail::wait_for`]. The operations and attempts readers are built
//! on it (`ops.rs`, `attempts_tail.rs`).

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::watch;

struct Shared<T> {
    records: Mutex<Vec<T>>,
    changed: watch::Sender<u64>,
}

/// Decoded records of one topic, read in a background thread.
pub struct TopicTail<T> {
    what: &'static str,
    shared: Arc<Shared<T>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<T: Clone + Send + 'static> TopicTail<T> {
    /// Starts reading every partition of `topic` at `brokers`; `what` names
    /// the topic in messages.
    pub fn start(
        brokers: &str,
        topic: &str,
        what: &'static str,
        decode: impl Fn(&BorrowedMessage<'_>) -> Vec<T> + Send + 'static,
    ) -> Self {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", herald_testkit::fixtures::unique("tail-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .unwrap_or_else(|e| panic!("{what} consumer: {e}"));
        let partitions = c
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{what} metadata: {e}"))
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len())
            .max(1);
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("assignable partition");
        }
        c.assign(&tpl)
            .unwrap_or_else(|e| panic!("assign the {what} partitions: {e}"));
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
                            let recs = decode(&m);
                            shared.records.lock().unwrap().extend(recs);
                            shared.changed.send_modify(|v| *v += 1);
                        }
                        Some(Err(e)) => eprintln!("{what} reader: {e}"),
                        None => {}
                    }
                }
            })
        };
        Self {
            what,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// Records read so far, in the order read.
    pub fn records(&self) -> Vec<T> {
        self.shared.records.lock().unwrap().clone()
    }

    /// Waits until `done(records so far)` holds, re-checking after every
    /// record; fails after `timeout` (a failure guard, never a synchronisation).
    pub async fn wait_for(
        &self,
        mut done: impl FnMut(&[T]) -> bool,
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
                "{} condition not met after {:?} ({} records read)",
                self.what,
                started.elapsed(),
                self.shared.records.lock().unwrap().len()
            )
        })
    }
}

impl<T> Drop for TopicTail<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
