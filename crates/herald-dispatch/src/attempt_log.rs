//! The attempt log: every delivery attempt (event, message, attempt number,
//! time, status, latency, error, the start of the response body, node)
//! written to the attempts topic, in the partition of its message
//! ([`herald_core::ids::attempt_partition`]), so operators can answer "what
//! happened to event X", or to every endpoint of fan-out M, by reading one
//! partition (`EventService.ListAttempts`, `herald attempts`).
//!
//! Attempts are written in batches: [`AttemptLog::record`] adds one to a
//! buffer shared by the node's partition workers, and a flusher task writes
//! the buffer [`LINGER`] after its first attempt arrived, one
//! `AttemptBatch` record per attempts-topic partition (readers decode both
//! kinds with [`herald_proto::attempts::decode`]). A full buffer is written
//! at once. One Kafka record per attempt cost the producer, its delivery
//! reports and the broker as much as the event itself (see
//! docs/benchmarks.md).
//!
//! Best effort by design: a batch is handed to the producer and not awaited;
//! when the producer's queue is full its attempts are dropped and counted
//! (`herald_attempt_log_dropped_total`), never slowing deliveries down.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use herald_kafka::Producer;
use herald_proto::v1::{AttemptBatch, AttemptRecord};
use herald_telemetry::names;
use prost::Message as _;
use rdkafka::producer::FutureRecord;
use tokio::sync::Notify;

/// How long an attempt may wait in the buffer for others to share its write.
pub const LINGER: Duration = Duration::from_millis(5);
/// The buffer is written at once when it holds this many attempts...
const FULL_COUNT: usize = 2_000;
/// ... or this many encoded bytes.
const FULL_BYTES: usize = 512 * 1024;
/// The largest batch record (well under Kafka's 1 MB default
/// `message.max.bytes`); a larger partition group is split.
const RECORD_BYTES: usize = 256 * 1024;

/// Writer of attempt records. Cheap to clone; clones share one buffer.
#[derive(Clone)]
pub struct AttemptLog {
    inner: Arc<Inner>,
}

struct Inner {
    producer: Producer,
    topic: String,
    node: String,
    /// The attempts topic's partition count (`None` if it could not be
    /// read: the producer's partitioner then places records by endpoint).
    partitions: Option<usize>,
    pending: Mutex<Pending>,
    /// Wakes the flusher when the buffer gets its first attempt.
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Pending {
    attempts: Vec<AttemptRecord>,
    bytes: usize,
}

/// One attempt, as the attempt code saw it.
pub struct Entry<'a> {
    /// Event id.
    pub event_id: &'a str,
    /// Message id (a fan-out's; empty for a direct publish, whose event id
    /// is its message id).
    pub message_id: &'a str,
    /// Endpoint id.
    pub endpoint_id: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// Attempt number (1 = first).
    pub attempt: u32,
    /// Start, unix ms.
    pub at_ms: i64,
    /// HTTP status, 0 = none.
    pub status: u32,
    /// Duration, ms.
    pub latency_ms: u32,
    /// `success`, `retryable`, `final` or `refused`.
    pub outcome: &'a str,
    /// Failure reason, empty on success.
    pub error: &'a str,
    /// The capped start of the response body.
    pub body: Bytes,
}

impl AttemptLog {
    /// Writes to `topic` (of `partitions` partitions, if known) through
    /// `producer`, naming this `node`. Spawns the flusher: call it within a
    /// Tokio runtime.
    pub fn new(producer: Producer, topic: &str, partitions: Option<usize>, node: &str) -> Self {
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            producer,
            topic: topic.to_owned(),
            node: node.to_owned(),
            partitions,
            pending: Mutex::new(Pending::default()),
            wake: wake.clone(),
        });
        tokio::spawn(flusher(Arc::downgrade(&inner), wake));
        Self { inner }
    }

    /// Adds one attempt to the buffer (written within [`LINGER`], or at
    /// once when the buffer is full).
    pub fn record(&self, e: Entry<'_>) {
        let message_id = if e.message_id.is_empty() {
            e.event_id
        } else {
            e.message_id
        };
        let attempt = AttemptRecord {
            event_id: e.event_id.to_owned(),
            endpoint_id: e.endpoint_id.to_owned(),
            attempt: e.attempt,
            at_ms: e.at_ms,
            status: e.status,
            latency_ms: e.latency_ms,
            outcome: e.outcome.to_owned(),
            error: e.error.to_owned(),
            response_body: e.body,
            node: self.inner.node.clone(),
            event_type: e.event_type.to_owned(),
            message_id: message_id.to_owned(),
        };
        let size = attempt.encoded_len();
        let (first, full) = {
            let mut p = self.inner.lock();
            p.attempts.push(attempt);
            p.bytes += size;
            let full = (p.attempts.len() >= FULL_COUNT || p.bytes >= FULL_BYTES)
                .then(|| std::mem::take(&mut *p));
            (p.attempts.len() == 1, full)
        };
        if let Some(full) = full {
            self.inner.write(full.attempts);
        } else if first {
            self.inner.wake.notify_one();
        }
    }

    /// Writes whatever is buffered now (at shutdown, after the last
    /// attempt).
    pub fn flush(&self) {
        self.inner.flush();
    }
}

async fn flusher(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        tokio::time::sleep(LINGER).await;
        // Gone once every writer is dropped (its drop flushed and woke us).
        let Some(inner) = inner.upgrade() else { return };
        inner.flush();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn flush(&self) {
        let taken = std::mem::take(&mut *self.lock());
        if !taken.attempts.is_empty() {
            self.write(taken.attempts);
        }
    }

    /// One record per attempts-topic partition (per endpoint when the
    /// partition count is unknown), split at [`RECORD_BYTES`].
    fn write(&self, attempts: Vec<AttemptRecord>) {
        let mut groups: BTreeMap<Placement, Vec<AttemptRecord>> = BTreeMap::new();
        for a in attempts {
            let place = match self.partitions {
                Some(n) => {
                    Placement::Partition(herald_core::ids::attempt_partition(&a.message_id, n))
                }
                None => Placement::Key(a.endpoint_id.clone()),
            };
            groups.entry(place).or_default().push(a);
        }
        for (place, group) in groups {
            for chunk in split(group) {
                self.send(&place, chunk);
            }
        }
    }

    fn send(&self, place: &Placement, attempts: Vec<AttemptRecord>) {
        let count = attempts.len() as u64;
        // Keyed by endpoint when every attempt is one endpoint's, so readers
        // filtering by endpoint can skip other endpoints' records unread.
        let key = attempts
            .first()
            .map(|a| a.endpoint_id.clone())
            .filter(|k| attempts.iter().all(|a| &a.endpoint_id == k));
        let value = AttemptBatch { attempts }.encode_to_vec();
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).payload(&value);
        if let Some(k) = &key {
            record = record.key(k.as_str());
        }
        if let Placement::Partition(p) = place {
            record = record.partition(*p);
        }
        if self.producer.send_result(record).is_err() {
            metrics::counter!(names::ATTEMPT_LOG_DROPPED).increment(count);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flush();
        self.wake.notify_one();
    }
}

/// Where a batch record goes.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Placement {
    Partition(i32),
    Key(String),
}

/// `group` cut into runs of at most [`RECORD_BYTES`] encoded bytes (one
/// attempt larger than that is a run of its own), order kept.
fn split(group: Vec<AttemptRecord>) -> Vec<Vec<AttemptRecord>> {
    let mut runs = Vec::new();
    let (mut run, mut bytes) = (Vec::new(), 0);
    for a in group {
        let size = a.encoded_len() + 4;
        if !run.is_empty() && bytes + size > RECORD_BYTES {
            runs.push(std::mem::take(&mut run));
            bytes = 0;
        }
        bytes += size;
        run.push(a);
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(body: usize) -> AttemptRecord {
        AttemptRecord {
            event_id: "ev".into(),
            response_body: Bytes::from(vec![b'x'; body]),
            ..Default::default()
        }
    }

    #[test]
    fn split_keeps_order_and_bounds_every_record() {
        let group: Vec<_> = (0..40).map(|i| attempt(20_000 + i)).collect();
        let runs = split(group.clone());
        assert!(runs.len() > 1);
        for r in &runs {
            let encoded = AttemptBatch {
                attempts: r.clone(),
            }
            .encode_to_vec()
            .len();
            assert!(encoded <= RECORD_BYTES, "{encoded}");
        }
        assert_eq!(runs.concat(), group);
    }

    #[test]
    fn an_oversized_attempt_is_a_run_of_its_own() {
        let group = vec![attempt(10), attempt(RECORD_BYTES + 1), attempt(10)];
        let runs = split(group);
        assert_eq!(runs.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    }
}
