//! The idempotency topic's writer and reader on one ingest node.
//!
//! A reader thread follows the topic's only partition from the first record
//! inside its retention and folds every record into the node's [`Ledger`]; [`Claims::acquire`]
//! writes a claim, waits until the reader has folded it (so every earlier
//! claim on the key is known), and answers whether this publish owns the
//! key, must repeat an earlier answer, or conflicts with it.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_core::config::KafkaConfig;
use herald_core::time::now_ms;
use herald_kafka::admin::idempotency_retention_ms;
use herald_kafka::idle::{self, Idle};
use herald_kafka::Producer;
use herald_proto::v1::idempotency_record::Kind;
use herald_proto::v1::IdempotencyRecord;
use herald_telemetry::names;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::ledger::{Answer, Key, Ledger, Lookup, Progress, RequestHash};
use super::records;
use super::writer::Writer;

/// Added to the producer's `message.timeout.ms` for a claim's lease: by
/// then the owner's event writes have either been acknowledged or failed.
const LEASE_MARGIN_MS: i64 = 15_000;

/// Added to `message.timeout.ms` for the lease a claim must have left
/// before its holder writes (so a holder never writes past its lease).
const WRITE_MARGIN_MS: i64 = 2_000;

/// Claims one acquire writes at most (one, plus one per takeover of a
/// released or expired claim it waited for).
const MAX_CLAIMS_PER_ACQUIRE: u32 = 4;

/// Why a key could not be acquired.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The key was used with another request.
    #[error("idempotency_key: this key was already used with a different request (event type, payload, channels or event id) within kafka.idempotency_window; use a new key for a new event")]
    Conflict,
    /// Another node (or a stale claim of this call) holds the key and
    /// neither finished nor gave up in time.
    #[error("idempotency_key: a publish with this key is still in progress on another node; retry with the same key")]
    InProgress,
    /// The node has not read the idempotency topic up to where it ended at
    /// start: it cannot know yet whether another node holds the key.
    #[error("the idempotency ledger is still loading ({applied} of {end} records); retry shortly, on this or another node, with the same idempotency key")]
    Loading {
        /// Records read.
        applied: i64,
        /// Where the topic ended at start.
        end: i64,
    },
    /// The idempotency topic could not be written or read.
    #[error("the idempotency topic: {0}; retry with the same idempotency key")]
    Kafka(#[from] KafkaError),
}

/// A key this node owns until it calls [`Claims::finish`] or
/// [`Claims::release`].
#[derive(Debug, Clone)]
pub struct Claim {
    key: Key,
    request: RequestHash,
    claim_id: String,
    /// How far earlier claims of the same request got with its fan-out.
    pub progress: Option<Progress>,
}

/// What [`Claims::acquire`] found.
#[derive(Debug)]
pub enum Acquired {
    /// Write the events, then [`Claims::finish`] (or [`Claims::release`]).
    Owned(Claim),
    /// Already done with the same request: answer this, write nothing.
    Done(Answer),
}

/// The node's view of the idempotency topic. Cheap to clone.
#[derive(Clone)]
pub struct Claims {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    node: String,
    next_claim: AtomicU64,
    lease_ms: i64,
    ledger: Arc<Mutex<Ledger>>,
    /// Offsets below this have been folded into the ledger.
    applied: watch::Receiver<i64>,
    /// The topic's end when the node started (-1 until known).
    loaded_at: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl Claims {
    /// Starts the reader of `kafka.idempotency_topic` (from the first record
    /// inside its retention) and the batching writer through `producer`;
    /// remembers at most `capacity` keys. Needs a tokio runtime.
    pub fn start(
        kafka: &KafkaConfig,
        capacity: usize,
        producer: Producer,
        node: &str,
    ) -> Result<Self, KafkaError> {
        let client = format!("herald-idempotency-{node}");
        let mut config = herald_kafka::consumer_config(kafka, Some(&client), &client);
        // A claim is waited for by a publish: read it back promptly.
        config.set("fetch.wait.max.ms", "10");
        let quiet = Idle::configured(kafka, idle::fetch_wait(&config));
        let consumer: BaseConsumer = config.create()?;
        let message_timeout = herald_kafka::producer_config(kafka, &client)
            .get("message.timeout.ms")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(300_000);
        let ledger = Arc::new(Mutex::new(Ledger::new(
            kafka.idempotency_window.as_millis() as i64,
            capacity,
            message_timeout + WRITE_MARGIN_MS,
        )));
        let (tx, applied) = watch::channel(0);
        let stop = Arc::new(AtomicBool::new(false));
        let loaded_at = Arc::new(AtomicI64::new(-1));
        let reader = Reader {
            consumer,
            topic: kafka.idempotency_topic.clone(),
            since_ms: now_ms() - idempotency_retention_ms(kafka.idempotency_window),
            ledger: ledger.clone(),
            applied: tx,
            loaded_at: loaded_at.clone(),
            stop: stop.clone(),
            quiet,
        };
        std::thread::Builder::new()
            .name("idempotency-reader".into())
            .spawn(move || reader.run())
            .map_err(|e| KafkaError::ClientCreation(format!("cannot start the reader: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Writer::start(producer, kafka.idempotency_topic.clone()),
                node: node.to_string(),
                next_claim: AtomicU64::new(0),
                lease_ms: message_timeout + LEASE_MARGIN_MS,
                ledger,
                applied,
                loaded_at,
                stop,
            }),
        })
    }

    /// `Some((records read, topic end at start))` while the ledger loads.
    pub fn loading(&self) -> Option<(i64, i64)> {
        let end = self.inner.loaded_at.load(Ordering::Acquire);
        let applied = *self.inner.applied.borrow();
        (end < 0 || applied < end).then_some((applied, end.max(0)))
    }

    /// Waits until the ledger has read the topic up to where it ended when
    /// the node started.
    pub async fn wait_loaded(&self) {
        let mut applied = self.inner.applied.clone();
        loop {
            if self.loading().is_none() {
                return;
            }
            // Woken by every record read; the topic end is known within a
            // few seconds of start.
            let _ = tokio::time::timeout(Duration::from_millis(500), applied.changed()).await;
        }
    }

    /// The answer for `key` if the ledger already knows it (finished, or
    /// used with another request), without writing anything.
    pub fn peek(&self, key: &Key, request: &RequestHash) -> Option<Result<Answer, ClaimError>> {
        match self.lookup(key, request, None) {
            Lookup::Done(answer) => Some(Ok(answer)),
            Lookup::Conflict => Some(Err(ClaimError::Conflict)),
            Lookup::Free | Lookup::Owned | Lookup::Wait { .. } => None,
        }
    }

    /// Claims `key` for `request`, or finds its earlier answer. Waits for
    /// another node's claim on the key to finish (at most its lease).
    pub async fn acquire(&self, key: Key, request: RequestHash) -> Result<Acquired, ClaimError> {
        let inner = &self.inner;
        // Until the ledger is loaded, claiming would wait for the whole
        // topic to be read: answer at once, so the caller can go elsewhere.
        if let Some((applied, end)) = self.loading() {
            return Err(ClaimError::Loading { applied, end });
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis((2 * inner.lease_ms).max(0) as u64);
        let mut mine: Option<String> = None;
        let mut claims_written = 0;
        let mut applied = inner.applied.clone();
        loop {
            match self.lookup(&key, &request, mine.as_deref()) {
                Lookup::Owned => {
                    let claim_id = mine.expect("owned only with a claim");
                    let progress = self
                        .inner
                        .ledger
                        .lock()
                        .expect("ledger lock")
                        .progress(&key);
                    return Ok(Acquired::Owned(Claim {
                        key,
                        request,
                        claim_id,
                        progress,
                    }));
                }
                Lookup::Done(answer) => return Ok(Acquired::Done(answer)),
                Lookup::Conflict => return Err(ClaimError::Conflict),
                Lookup::Free => {
                    // A claim of ours that was folded but no longer holds the
                    // key (forgotten at once): the ledger is too small.
                    claims_written += 1;
                    if claims_written > MAX_CLAIMS_PER_ACQUIRE {
                        return Err(ClaimError::InProgress);
                    }
                    let claim_id = format!(
                        "{}-{}-{}",
                        inner.node,
                        now_ms(),
                        inner.next_claim.fetch_add(1, Ordering::Relaxed)
                    );
                    self.write_claim(&key, &request, &claim_id, deadline)
                        .await?;
                    mine = Some(claim_id);
                }
                Lookup::Wait { until_ms } => {
                    let lease_left = Duration::from_millis((until_ms - now_ms() + 1).max(1) as u64);
                    let wake = deadline.min(tokio::time::Instant::now() + lease_left);
                    // Woken by any new record, or when the lease ends.
                    let _ = tokio::time::timeout_at(wake, applied.changed()).await;
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ClaimError::InProgress);
                    }
                }
            }
        }
    }

    /// Makes sure `claim` still holds its key with enough lease left for
    /// one more write (a batch waited for its other keys, a fan-out wrote
    /// chunks): renews the lease if it runs short. Fails when another
    /// claim took the key over meanwhile; nothing may be written then.
    pub async fn renew(&self, claim: &Claim) -> Result<(), ClaimError> {
        if self.holds(claim) {
            return Ok(());
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.inner.lease_ms.max(0) as u64);
        self.write_claim(&claim.key, &claim.request, &claim.claim_id, deadline)
            .await?;
        if self.holds(claim) {
            Ok(())
        } else {
            Err(ClaimError::InProgress)
        }
    }

    fn holds(&self, claim: &Claim) -> bool {
        let ledger = self.inner.ledger.lock().expect("ledger lock");
        ledger.holds(&claim.key, &claim.claim_id, now_ms())
    }

    /// Writes a claim (a new one, or a renewal of `claim_id`) and waits
    /// until this node's reader has folded it.
    async fn write_claim(
        &self,
        key: &Key,
        request: &RequestHash,
        claim_id: &str,
        deadline: tokio::time::Instant,
    ) -> Result<(), ClaimError> {
        let at_ms = now_ms();
        let offset = self
            .write(
                key,
                IdempotencyRecord {
                    kind: Kind::Claim as i32,
                    claim_id: claim_id.to_string(),
                    request_hash: request.to_vec(),
                    at_ms,
                    lease_until_ms: at_ms + self.inner.lease_ms,
                    node: self.inner.node.clone(),
                    ..Default::default()
                },
            )
            .await?;
        let mut applied = self.inner.applied.clone();
        let seen = tokio::time::timeout_at(deadline, applied.wait_for(|&n| n > offset));
        if matches!(seen.await, Ok(Ok(_))) {
            Ok(())
        } else {
            Err(ClaimError::InProgress)
        }
    }

    /// Records `answer` for an owned claim (after its events were
    /// acknowledged), so every node answers later publishes with it.
    pub async fn finish(&self, claim: &Claim, answer: &Answer) -> Result<(), KafkaError> {
        let record = IdempotencyRecord {
            kind: Kind::Done as i32,
            claim_id: claim.claim_id.clone(),
            request_hash: claim.request.to_vec(),
            at_ms: now_ms(),
            node: self.inner.node.clone(),
            event_id: answer.event_id.clone(),
            partition: answer.partition,
            offset: answer.offset,
            message_id: answer.message_id.clone(),
            fanned_out: answer.fanned_out,
            deliver_at_ms: answer.deliver_at_ms,
            ..Default::default()
        };
        self.write(&claim.key, record).await.map(|_| ())
    }

    /// Records that a fan-out's targets up to `progress.through` are
    /// acknowledged, once Kafka has acknowledged the record: a later claim
    /// of the same request (after this one fails) writes only the rest.
    pub async fn progress(&self, claim: &Claim, progress: &Progress) -> Result<(), KafkaError> {
        let record = IdempotencyRecord {
            kind: Kind::Progress as i32,
            claim_id: claim.claim_id.clone(),
            at_ms: now_ms(),
            node: self.inner.node.clone(),
            written_through: progress.through.clone(),
            written: progress.written,
            ..Default::default()
        };
        self.write(&claim.key, record).await.map(|_| ())
    }

    /// Gives an owned claim up (its write failed; it may or may not have
    /// landed): the key is free again at once, for the same request only. Best effort: if this write fails too, the key
    /// frees itself when the lease ends.
    pub async fn release(&self, claim: &Claim) {
        let record = IdempotencyRecord {
            kind: Kind::Release as i32,
            claim_id: claim.claim_id.clone(),
            at_ms: now_ms(),
            node: self.inner.node.clone(),
            ..Default::default()
        };
        if let Err(e) = self.write(&claim.key, record).await {
            tracing::warn!(error = %e, claim = %claim.claim_id, "could not release an idempotency claim; it frees itself when its lease ends");
        }
    }

    fn lookup(&self, key: &Key, request: &RequestHash, claim: Option<&str>) -> Lookup {
        let ledger = self.inner.ledger.lock().expect("ledger lock");
        ledger.lookup(key, request, claim, now_ms())
    }

    /// Writes one record (batched with whatever else is ready); returns
    /// the offset of the Kafka record carrying it once Kafka acknowledged it.
    async fn write(&self, key: &Key, record: IdempotencyRecord) -> Result<i64, KafkaError> {
        self.inner.writer.write(*key, record).await
    }
}

/// How often the reader looks at its stop flag (and, paused, for a nudge).
const STOP_CHECK: Duration = Duration::from_millis(100);

/// The reader thread's state.
struct Reader {
    consumer: BaseConsumer,
    topic: String,
    /// Records older than this (unix ms) are past the topic's retention:
    /// the reader starts at the first record written since.
    since_ms: i64,
    ledger: Arc<Mutex<Ledger>>,
    applied: watch::Sender<i64>,
    loaded_at: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    /// When an idle reader pauses fetching.
    quiet: Idle,
}

impl Reader {
    /// Finds where to start, then folds every record into the ledger, in
    /// order, until the node stops.
    fn run(self) {
        let start = loop {
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            match self.start() {
                Ok(start) => break start,
                Err(e) => {
                    tracing::debug!(error = %e, "idempotency topic watermarks");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        };
        self.applied.send_replace(start);
        let mut assign = TopicPartitionList::new();
        let assigned = assign
            .add_partition_offset(&self.topic, 0, Offset::Offset(start))
            .and_then(|()| self.consumer.assign(&assign));
        if let Err(e) = assigned {
            // The ledger stays loading: keyed publishes are refused with a
            // retryable error, and readiness says why.
            tracing::error!(error = %e, topic = %self.topic, "cannot read the idempotency topic");
            return;
        }
        // On a broker that cannot hold a fetch open, an idle reader fetches
        // in probes (kafka.idle_pause_after_ms).
        let mut quiet = self.quiet;
        quiet.assigned(Instant::now());
        let set_fetching = |f| {
            if let Err(e) = idle::set_fetching(&self.consumer, f, |_, _| false) {
                tracing::warn!(request = ?f, error = %e, "idempotency reader: cannot change fetching for idleness");
            }
        };
        while !self.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            if let Some(f) = quiet.tick(now) {
                set_fetching(f);
            }
            // A nudge (a claim this node just wrote) is seen on the next
            // turn: asleep, within STOP_CHECK (each turn costs a poll).
            let mut wait = STOP_CHECK;
            if let Some(deadline) = quiet.deadline() {
                wait = wait.min(deadline.saturating_duration_since(now));
            }
            let polled = self.consumer.poll(wait);
            if let Some(Ok(_)) = &polled {
                if let Some(f) = quiet.record(Instant::now()) {
                    set_fetching(f);
                }
            }
            match polled {
                None => {}
                Some(Err(e)) => tracing::debug!(error = %e, "idempotency topic poll error"),
                Some(Ok(msg)) => {
                    let (entries, skipped) = records::decode(msg.key(), msg.payload());
                    if !entries.is_empty() {
                        let mut ledger = self.ledger.lock().expect("ledger lock");
                        for (key, record) in &entries {
                            ledger.apply(*key, record);
                        }
                    }
                    if skipped > 0 {
                        metrics::counter!(names::RECORDS_UNDECODABLE, "topic" => "idempotency")
                            .increment(skipped as u64);
                    }
                    self.applied.send_replace(msg.offset() + 1);
                }
            }
        }
    }

    /// Where to start reading (see [`read_from`]); marks the ledger
    /// loaded once it has read up to the topic's end now.
    fn start(&self) -> Result<i64, KafkaError> {
        let (low, start, high) = read_from(&self.consumer, &self.topic, self.since_ms)?;
        if start > low {
            tracing::info!(
                skipped = start - low,
                "idempotency topic: starting after the records past its retention"
            );
        }
        self.loaded_at.store(high, Ordering::Release);
        Ok(start)
    }
}

/// Where a node starts reading the idempotency topic: `(low watermark,
/// start, end now)`. The start is the first record written at or after
/// `since_ms` (the topic's retention ago), whether or not the broker has
/// deleted the older ones yet: Kafka deletes whole segments, so a quiet
/// topic can keep records for days past its retention. Records written from
/// now on are at or above the end, so none is missed. A broker that cannot
/// look records up by time is read from its low watermark.
pub fn read_from(
    consumer: &BaseConsumer,
    topic: &str,
    since_ms: i64,
) -> Result<(i64, i64, i64), KafkaError> {
    let (low, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(5))?;
    let mut query = TopicPartitionList::new();
    query.add_partition_offset(topic, 0, Offset::Offset(since_ms))?;
    let start = match consumer.offsets_for_times(query, Duration::from_secs(5)) {
        Ok(found) => match found.find_partition(topic, 0).map(|e| e.offset()) {
            Some(Offset::Offset(n)) => n.clamp(low, high),
            // "No record written since" and "cannot look up by time"
            // (librdkafka's mock cluster) look the same: read it all.
            _ => low,
        },
        Err(e) => {
            tracing::debug!(error = %e, "cannot look the idempotency topic up by time; reading all of it");
            low
        }
    };
    Ok((low, start, high))
}
