//! Reading the dead-letter topic the way an operator's tool would: a plain
//! rdkafka consumer assigned every partition from the beginning (it joins
//! no group and commits nothing).
//!
//! [`DlqTail`] reads in a background thread for the whole test and bumps a
//! [`Ledger`] on every record, so waits that also count dead letters wake up.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_proto::v1::EventEnvelope;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::ledger::{self, Entry, Ledger};

/// One record of the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Partition of the dead-letter topic.
    pub partition: i32,
    /// Offset there.
    pub offset: i64,
    /// Record key (the endpoint id).
    pub key: String,
    /// Headers (the last value wins for a repeated name).
    pub headers: BTreeMap<String, String>,
    /// The decoded value.
    pub envelope: EventEnvelope,
}

impl DeadLetter {
    /// Header `name`, or `""`.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    /// Header `name` parsed as an integer; panics with context otherwise.
    #[track_caller]
    pub fn int(&self, name: &str) -> i64 {
        self.header(name).parse().unwrap_or_else(|_| {
            panic!(
                "dead letter {} (endpoint {}): header {name} = {:?} is not an integer; headers {:?}",
                self.envelope.event_id,
                self.key,
                self.header(name),
                self.headers
            )
        })
    }
}

fn consumer(brokers: &str, topic: &str, partitions: i32) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", herald_testkit::fixtures::unique("dlq-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("dead-letter consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("assignable partition");
    }
    c.assign(&tpl).expect("assign the dead-letter partitions");
    c
}

fn decode(m: &rdkafka::message::BorrowedMessage<'_>) -> DeadLetter {
    let mut headers = BTreeMap::new();
    if let Some(hs) = m.headers() {
        for h in hs.iter() {
            let v = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
            headers.insert(h.key.to_string(), v.unwrap_or_default());
        }
    }
    let key = m
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    let envelope = EventEnvelope::decode(m.payload().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "dead letter at {}:{} does not decode: {e}",
            m.partition(),
            m.offset()
        )
    });
    DeadLetter {
        partition: m.partition(),
        offset: m.offset(),
        key,
        headers,
        envelope,
    }
}

/// Reads the dead-letter topic in the background from its beginning.
pub struct DlqTail {
    records: Arc<Mutex<Vec<DeadLetter>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DlqTail {
    /// Starts reading `topic` (with `partitions` partitions) at `brokers`;
    /// bumps `ledger` on every record.
    pub fn start(brokers: &str, topic: &str, partitions: i32, ledger: Ledger) -> Self {
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let c = consumer(brokers, topic, partitions);
        let thread = {
            let (records, stop) = (records.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Blocks until a record arrives; the timeout only lets the
                    // loop notice `stop`.
                    match c.poll(Duration::from_millis(200)) {
                        Some(Ok(m)) => {
                            records.lock().unwrap().push(decode(&m));
                            ledger.bump();
                        }
                        Some(Err(e)) => eprintln!("dead-letter reader: {e}"),
                        None => {}
                    }
                }
            })
        };
        Self {
            records,
            stop,
            thread: Some(thread),
        }
    }

    /// Dead letters read so far, in the order read (per partition: offset order).
    pub fn records(&self) -> Vec<DeadLetter> {
        self.records.lock().unwrap().clone()
    }

    /// How many were read so far.
    pub fn len(&self) -> usize {
        self.records.lock().unwrap().len()
    }
}

impl Drop for DlqTail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What became of a run's acknowledged events, once each was answered 2xx
/// by the receiver or is in the dead-letter topic (or the guard passed).
pub struct Settled {
    /// `Err` when the guard passed first.
    pub waited: Result<(), String>,
    /// The receiver's ledger at the end of the wait.
    pub entries: Vec<Entry>,
    /// Ids in the dead-letter topic.
    pub dead: HashSet<String>,
    /// Acknowledged ids neither delivered nor dead-lettered.
    pub lost: Vec<String>,
}

/// Waits (event-driven, up to `guard`) until every id in `acked` was
/// answered 2xx or dead-lettered; see [`Settled`].
pub async fn settle(
    ledger: &Ledger,
    dlq: &DlqTail,
    acked: &HashSet<&str>,
    guard: Duration,
) -> Settled {
    let mut missing: HashSet<String> = acked.iter().map(|s| s.to_string()).collect();
    let (mut seen, mut dlq_seen) = (0, 0);
    let waited = ledger
        .wait_until(
            |entries| {
                for e in &entries[seen..] {
                    if e.ok() {
                        missing.remove(&e.id);
                    }
                }
                seen = entries.len();
                let letters = dlq.records();
                for d in &letters[dlq_seen..] {
                    missing.remove(&d.envelope.event_id);
                }
                dlq_seen = letters.len();
                missing.is_empty()
            },
            guard,
        )
        .await;
    let entries = ledger.entries();
    let dead: HashSet<String> = dlq
        .records()
        .iter()
        .map(|d| d.envelope.event_id.clone())
        .collect();
    let delivered = ledger::delivered(&entries);
    let lost = acked
        .iter()
        .filter(|id| !delivered.contains(**id) && !dead.contains(**id))
        .map(|id| id.to_string())
        .collect();
    Settled {
        waited,
        entries,
        dead,
        lost,
    }
}
