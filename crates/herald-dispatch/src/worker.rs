//! The task that owns one assigned partition: partition N of the events
//! topic and partition N of the retry topic (the consumer group's range
//! assignor keeps them together).
//!
//! It puts each event in its endpoint's [`Lane`], starts deliveries as the
//! lanes allow, keeps short retries in memory, moves an ordered endpoint's
//! backlog to the retry topic when a retry would wait longer than
//! `retry.in_memory_max` (or the lane overflows), reads it back in order
//! (live, or with a [`Scanner`] for records a full lane had to leave in
//! Kafka), dead-letters exhausted events, and marks offsets finished in both
//! topics' [`OffsetTracker`]s. Deliveries and writes run as futures inside
//! this task: no per-event spawn and no locks shared with other partitions.
//! Writes to the retry and dead-letter topics go through one FIFO per
//! worker, so they land in the order they were decided.
//!
//! While *suspended* (partition revoked, the rebalance not settled yet) it
//! starts nothing new; in-flight work finishes. Resumed in place when the
//! partition comes back, it ignores the records the consumer hands it again.
//! Stops when *cancelled* (partition gone to another member: everything is
//! dropped and the next owner re-sends what was unfinished) or *drained*
//! (record channel closed at shutdown: in-flight attempts and writes finish,
//! nothing new starts).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use herald_core::schedule::{Exhaustion, Failure, RetryPolicy, Step};
use herald_core::time::now_ms;
use herald_proto::v1::EventEnvelope;
use herald_registry::{Lookup, Registry};
use herald_telemetry::names;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use herald_core::breaker::{Breaker, BreakerConfig, Permit, Transition};
use herald_core::endpoint::RateLimit;
use herald_registry::RegistryWriter;

use crate::attempt::{AttemptContext, Event, Outcome, Source};
use crate::endpoint::Prepared;
use crate::lane::Lane;
use crate::offsets::OffsetTracker;
use crate::rate::Pacer;
use crate::scanner::{ScanRequest, ScanResult, Scanner};
use crate::sink::{DeadReason, EnqueueError, Sink, Target};
use herald_registry::ops::{kind, Ops};

/// Which topic a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// The events topic.
    Events,
    /// The retry topic.
    Retry,
}

/// One record, detached from the consumer.
#[derive(Debug)]
pub struct Record {
    /// Source topic.
    pub topic: Topic,
    /// Offset in the partition.
    pub offset: i64,
    /// Record key (the endpoint id).
    pub key: Option<Bytes>,
    /// Record value (an `EventEnvelope`).
    pub payload: Option<Bytes>,
}

/// Requests a worker makes of the consumer for its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop fetching the events partition (memory cap reached or catching up).
    PauseEvents,
    /// Fetch the events partition again.
    ResumeEvents,
}

/// A control request tagged with the partition and the worker generation.
pub type ControlMsg = (i32, u64, Control);

/// Offset trackers of the two topics of one partition.
#[derive(Debug, Default)]
pub struct Trackers {
    /// Events topic.
    pub events: OffsetTracker,
    /// Retry topic.
    pub retry: OffsetTracker,
}

/// How much of the retry partition a new worker reads before events flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CatchUp {
    /// Nothing: the retry partition has no records past the committed offset.
    #[default]
    None,
    /// Up to (not including) this offset.
    Until(i64),
    /// Not known yet (the watermark query failed): the worker asks again,
    /// and events wait.
    Unknown,
}

/// Where a newly assigned partition starts (the trackers carry the
/// committed offsets and skip sets).
#[derive(Debug, Clone, Default)]
pub struct Start {
    /// The retry backlog to read before any event (so a durable endpoint's
    /// new events queue behind it).
    pub retry_catch_up: CatchUp,
}

/// Settings of a partition worker.
#[derive(Clone)]
pub struct WorkerSettings {
    /// Attempt machinery shared by the node.
    pub attempts: Arc<AttemptContext>,
    /// The endpoint registry.
    pub registry: Registry,
    /// Writer of the retry and dead-letter topics.
    pub sink: Sink,
    /// The node's retry policy (endpoints may override parts).
    pub policy: RetryPolicy,
    /// Retries due within this wait in memory.
    pub in_memory_max: Duration,
    /// In-flight limit for unordered endpoints without their own.
    pub default_in_flight: u32,
    /// Events held per partition before its events topic is paused.
    pub max_buffered: usize,
    /// Events held per lane before the lane moves to the retry topic.
    pub max_lane: usize,
    /// Rate limit of endpoints without their own (None = unlimited).
    pub default_rate: Option<RateLimit>,
    /// Circuit-breaker settings.
    pub breaker: BreakerConfig,
    /// Disable an endpoint failing continuously this long (zero = never).
    pub disable_after: Duration,
    /// Registry writes (disabling endpoints); None in tools without ingest rights.
    pub writer: Option<RegistryWriter>,
    /// Operational events.
    pub ops: Ops,
    /// Kafka settings (for the retry-partition scanner).
    pub kafka: herald_core::config::KafkaConfig,
    /// This node's name (client ids).
    pub node_id: String,
    /// Where this worker reports its worst endpoints.
    pub worst: herald_telemetry::Worst,
}

/// Identity and plumbing of one worker.
pub struct WorkerIo {
    /// Partition number.
    pub partition: i32,
    /// Generation, so stale control requests are ignored.
    pub generation: u64,
    /// Records of both topics, in offset order per topic.
    pub records: mpsc::Receiver<Record>,
    /// Shared with the consumer's commit path.
    pub trackers: Arc<Mutex<Trackers>>,
    /// Requests to the consumer.
    pub control: mpsc::UnboundedSender<ControlMsg>,
    /// Fired when the partition went to another member.
    pub cancel: CancellationToken,
    /// `true` while the partition is revoked and may come back.
    pub suspended: tokio::sync::watch::Receiver<bool>,
}

type Job = Pin<Box<dyn Future<Output = Done> + Send>>;

/// How an attempt began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// At once.
    None,
    /// After a wait within `retry.in_memory_max`.
    Short,
    /// After a longer wait (a durable lane's head).
    Long,
}

/// One write to the retry or dead-letter topic, in the worker's FIFO.
struct Write {
    endpoint: Arc<str>,
    event: Event,
    target: Target,
    /// A copy of an in-flight head: the original still owns its offset.
    copy: bool,
}

/// A finished job of the worker.
enum Done {
    /// An attempt ended.
    Attempt(Arc<str>, Event, Outcome, Wait),
    /// A write landed (offset) or failed for good.
    Written(Write, Result<i64, rdkafka::error::KafkaError>),
    /// The producer queue had room again: retry the FIFO's head.
    WriteRetry,
    /// A scan of the retry partition for this lane ended.
    Scanned(Arc<str>, Result<ScanResult, String>),
    /// The retry partition's end, for the catch-up.
    CatchUpTarget(i64),
    /// An endpoint's circuit cool-down ended: try its lane again.
    Wake(Arc<str>),
    /// The registry has read everything written before the sync began
    /// (`false`: the sync failed and is asked for again).
    RegistrySynced(Arc<str>, bool),
}

/// A worker stopped because it cannot go on without risking a loss or a
/// reordering; the node must restart from committed offsets.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A retry or dead-letter write failed for good.
    #[error("a retry/dead-letter write failed: {0}")]
    Write(String),
}

/// Runs the worker until cancelled or drained; an error means it stopped
/// on a fatal write error.
pub async fn run_worker(
    settings: WorkerSettings,
    start: Start,
    io: WorkerIo,
) -> Result<(), WorkerError> {
    let WorkerIo {
        partition,
        generation,
        mut records,
        trackers,
        control,
        cancel,
        mut suspended,
    } = io;
    let mut w = Worker {
        partition,
        generation,
        control,
        drain: CancellationToken::new(),
        trackers,
        suspended: false,
        events_read_until: i64::MIN,
        catch_up: start.retry_catch_up,
        stash: Vec::new(),
        settings,
        lanes: HashMap::new(),
        prepared: HashMap::new(),
        prepared_version: u64::MAX,
        syncing: HashSet::new(),
        unknown: HashSet::new(),
        parked: HashSet::new(),
        behind: HashSet::new(),
        scanner: None,
        scan_queue: std::collections::VecDeque::new(),
        scan_running: false,
        writes: std::collections::VecDeque::new(),
        write_blocked: false,
        retry_seen_until: 0,
        events_seen_until: 0,
        held_events: 0,
        held_all: 0,
        paused: false,
        pacers: HashMap::new(),
        breakers: HashMap::new(),
        wakes: HashSet::new(),
        worst_reported: std::time::Instant::now(),
        disabling: HashMap::new(),
        failing_since: HashMap::new(),
        jobs: FuturesUnordered::new(),
        fatal: None,
    };
    match w.catch_up {
        CatchUp::None => {}
        CatchUp::Until(_) => w.paused = true,
        CatchUp::Unknown => {
            w.paused = true;
            w.fetch_catch_up_target();
        }
    }
    let mut registry_changes = w.settings.registry.progress();
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(done) = w.jobs.next(), if !w.jobs.is_empty() => w.on_done(done, draining),
            rec = records.recv(), if !draining => match rec {
                Some(r) => w.on_record(r),
                None => {
                    draining = true;
                    w.drain.cancel();
                }
            },
            Ok(()) = registry_changes.changed(), if !w.parked.is_empty() => w.unpark(),
            Ok(()) = suspended.changed() => {
                let now = *suspended.borrow_and_update();
                w.set_suspended(now);
            }
        }
        if w.fatal.is_some() {
            break;
        }
        if draining {
            // Writes still queued must land before the worker may stop.
            if w.jobs.is_empty() && w.writes.is_empty() {
                break;
            }
            if w.jobs.is_empty() {
                w.write_blocked = false;
                w.flush_writes();
            }
        } else if !w.suspended {
            w.maintain();
        }
    }
    metrics::gauge!(names::LANE_EVENTS).decrement(w.held_all as f64);
    metrics::gauge!(names::LANES_OPEN).decrement(w.lanes.len() as f64);
    w.settings.worst.report(partition, Vec::new());
    tracing::debug!(partition, held = w.held_all, "partition worker stopped");
    match w.fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct Worker {
    partition: i32,
    generation: u64,
    control: mpsc::UnboundedSender<ControlMsg>,
    settings: WorkerSettings,
    /// Fired when draining: aborts attempts still waiting out a delay.
    drain: CancellationToken,
    trackers: Arc<Mutex<Trackers>>,
    /// The partition is revoked: start nothing new.
    suspended: bool,
    /// One past the highest events offset handed to this worker (stashed or
    /// processed): anything below is a repeat after a resume in place.
    events_read_until: i64,
    /// Until the retry partition is read this far, events wait (paused).
    catch_up: CatchUp,
    /// Events records that arrived while catching up, in order.
    stash: Vec<Record>,
    lanes: HashMap<Arc<str>, Lane>,
    /// Prepared endpoints, valid for `prepared_version` of the registry.
    prepared: HashMap<Arc<str>, Option<Arc<Prepared>>>,
    prepared_version: u64,
    /// Endpoints not in the registry, waiting for it to catch up.
    syncing: HashSet<Arc<str>>,
    /// Endpoints still unknown after the registry caught up (cleared on any
    /// registry change): their events are dead-lettered.
    unknown: HashSet<Arc<str>>,
    /// Lanes waiting because their endpoint is disabled.
    parked: HashSet<Arc<str>>,
    /// Lanes with retry records left in Kafka.
    behind: HashSet<Arc<str>>,
    /// Reader for records lanes left behind (created on first use).
    scanner: Option<Scanner>,
    /// Lanes waiting for a scan, in order.
    scan_queue: std::collections::VecDeque<Arc<str>>,
    scan_running: bool,
    /// Writes to the retry and dead-letter topics not yet handed to the
    /// producer, in decision order.
    writes: std::collections::VecDeque<Write>,
    /// The producer queue was full: wait for `Done::WriteRetry`.
    write_blocked: bool,
    /// One past the highest retry offset read live.
    retry_seen_until: i64,
    /// One past the highest events offset read.
    events_seen_until: i64,
    /// Events from the events topic held in memory (the pause cap counts these).
    held_events: usize,
    /// All events held in memory (the gauge).
    held_all: usize,
    /// Whether the events partition is paused.
    paused: bool,
    /// Pacing per endpoint (kept across lane lifetimes).
    pacers: HashMap<Arc<str>, Arc<Pacer>>,
    /// Circuit breakers per endpoint (kept across lane lifetimes).
    breakers: HashMap<Arc<str>, Breaker>,
    /// Endpoints with a wake-up scheduled (open circuit).
    wakes: HashSet<Arc<str>>,
    /// When the worst endpoints were last reported.
    worst_reported: std::time::Instant,
    /// Endpoints this worker disabled, with the registry version
    /// (`updated_at_ms`) they had then: not disabled again until it changes.
    disabling: HashMap<Arc<str>, i64>,
    /// Since when each endpoint has failed without a success (unix ms).
    failing_since: HashMap<Arc<str>, i64>,
    jobs: FuturesUnordered<Job>,
    /// Set when the worker must stop (a write failed for good).
    fatal: Option<WorkerError>,
}

/// What the registry says about an endpoint, prepared for delivery.
enum Known {
    Ready(Arc<Prepared>),
    /// A tombstone was read.
    Deleted,
    /// Not read (yet).
    Unknown,
}

fn decode(r: &Record) -> Result<EventEnvelope, String> {
    let payload = r.payload.as_ref().ok_or("record has no value")?;
    decode_payload(r.key.as_deref(), payload)
}

fn decode_payload(key: Option<&[u8]>, payload: &Bytes) -> Result<EventEnvelope, String> {
    let env = EventEnvelope::decode(payload.clone()).map_err(|e| e.to_string())?;
    if env.endpoint_id.is_empty() || key.is_some_and(|k| k != env.endpoint_id.as_bytes()) {
        return Err("record key does not match the envelope's endpoint id".into());
    }
    Ok(env)
}

impl Worker {
    fn trackers(&self) -> MutexGuard<'_, Trackers> {
        self.trackers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Suspended on revoke, resumed when the partition comes back.
    fn set_suspended(&mut self, suspended: bool) {
        if self.suspended == suspended {
            return;
        }
        self.suspended = suspended;
        if suspended {
            tracing::debug!(
                partition = self.partition,
                "partition revoked; worker suspended"
            );
            return;
        }
        // The consumer resumed both topics on re-assignment: restate ours.
        if self.paused {
            self.send(Control::PauseEvents);
        }
        let lanes: Vec<Arc<str>> = self.lanes.keys().cloned().collect();
        for ep in lanes {
            self.after_settle(&ep);
        }
    }

    fn send(&self, c: Control) {
        let _ = self.control.send((self.partition, self.generation, c));
    }

    fn set_paused(&mut self, paused: bool) {
        if self.paused != paused {
            self.paused = paused;
            self.send(if paused {
                Control::PauseEvents
            } else {
                Control::ResumeEvents
            });
        }
    }

    /// An event entered (`+1`) or left (`-1`) the worker's custody.
    fn custody(&mut self, source: Source, delta: isize) {
        if matches!(source, Source::Events(_)) {
            self.held_events = (self.held_events as isize + delta).max(0) as usize;
        }
        self.held_all = (self.held_all as isize + delta).max(0) as usize;
        metrics::gauge!(names::LANE_EVENTS).increment(delta as f64);
    }

    /// The event's offset is done with: count it out of custody too.
    fn finish(&mut self, source: Source) {
        {
            let mut t = self.trackers();
            match source {
                Source::Events(o) => t.events.finished(o),
                Source::Retry(o) => t.retry.finished(o),
            }
        }
        self.custody(source, -1);
    }

    fn lane(&mut self, endpoint: &Arc<str>) -> &mut Lane {
        if !self.lanes.contains_key(endpoint) {
            metrics::gauge!(names::LANES_OPEN).increment(1.0);
        }
        self.lanes.entry(endpoint.clone()).or_default()
    }

    /// The endpoint prepared for delivery; `None` when it was deleted or is
    /// not known (yet).
    fn prepared(&mut self, endpoint: &Arc<str>) -> Option<Arc<Prepared>> {
        match self.known(endpoint) {
            Known::Ready(p) => Some(p),
            Known::Deleted | Known::Unknown => None,
        }
    }

    /// What the registry says about `endpoint`, prepared for delivery.
    fn known(&mut self, endpoint: &Arc<str>) -> Known {
        let version = self.settings.registry.version();
        if version != self.prepared_version {
            self.prepared.clear();
            self.unknown.clear();
            self.prepared_version = version;
        }
        if let Some(p) = self.prepared.get(endpoint) {
            return p.clone().map_or(Known::Deleted, Known::Ready);
        }
        let policy = &self.settings.policy;
        match self.settings.registry.lookup(endpoint) {
            Lookup::Found(e) => {
                let p = Arc::new(Prepared::new(e, policy));
                self.prepared.insert(endpoint.clone(), Some(p.clone()));
                Known::Ready(p)
            }
            Lookup::Deleted => {
                self.prepared.insert(endpoint.clone(), None);
                Known::Deleted
            }
            Lookup::Unknown => Known::Unknown,
        }
    }

    /// Waits for the registry to read everything written so far, then
    /// pumps `endpoint` again: an endpoint created through another node and
    /// published to at once may not have reached this node's registry yet.
    fn sync_registry(&mut self, endpoint: &Arc<str>) {
        if !self.syncing.insert(endpoint.clone()) {
            return;
        }
        let Some(scanner) = self.scanner() else {
            self.syncing.remove(endpoint);
            return;
        };
        let registry = self.settings.registry.clone();
        let topic = self.settings.kafka.endpoints_topic.clone();
        let ep = endpoint.clone();
        self.jobs.push(Box::pin(async move {
            let partitions = registry.progress().borrow().next_offset.len() as i32;
            let highs = tokio::task::spawn_blocking(move || {
                (0..partitions)
                    .map(|p| scanner.watermark(&topic, p))
                    .collect::<Result<Vec<i64>, _>>()
            })
            .await;
            match highs {
                Ok(Ok(highs)) => {
                    for (p, high) in highs.into_iter().enumerate() {
                        if high > 0 {
                            registry.wait_applied(p as i32, high - 1).await;
                        }
                    }
                    Done::RegistrySynced(ep, true)
                }
                Ok(Err(e)) => {
                    tracing::warn!(endpoint_id = %ep, error = %e, "registry watermarks unavailable; asking again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Done::RegistrySynced(ep, false)
                }
                Err(e) => {
                    tracing::warn!(endpoint_id = %ep, error = %e, "registry watermark query failed; asking again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Done::RegistrySynced(ep, false)
                }
            }
        }));
    }

    fn on_registry_synced(&mut self, endpoint: Arc<str>, ok: bool) {
        self.syncing.remove(&endpoint);
        if ok && matches!(self.known(&endpoint), Known::Unknown) {
            tracing::warn!(endpoint_id = %endpoint, "endpoint not in the registry after it caught up; its events are dead-lettered");
            self.unknown.insert(endpoint.clone());
        }
        self.after_settle(&endpoint);
    }

    /// Dead-letters the queued events of an endpoint the registry does not
    /// know even after catching up, in order.
    fn dead_letter_unknown(&mut self, endpoint: &Arc<str>) {
        let Some(lane) = self.lanes.get_mut(endpoint) else {
            return;
        };
        let queued: Vec<Event> = lane.queue.drain(..).collect();
        lane.in_flight += queued.len();
        for e in queued {
            self.dead_letter(endpoint, e, DeadReason::UnknownEndpoint);
        }
    }

    fn ordered(&mut self, endpoint: &Arc<str>) -> bool {
        self.prepared(endpoint).is_none_or(|p| p.endpoint.ordered)
    }

    // ----- records -------------------------------------------------------

    fn on_record(&mut self, r: Record) {
        // After a resume in place the consumer fetches again from the
        // committed offset: this worker already has those records.
        match r.topic {
            Topic::Events if r.offset < self.events_read_until => return,
            Topic::Events => self.events_read_until = r.offset + 1,
            Topic::Retry if r.offset < self.retry_seen_until => return,
            Topic::Retry => {}
        }
        match r.topic {
            Topic::Events if self.catch_up != CatchUp::None => self.stash.push(r),
            Topic::Events => self.on_event_record(r),
            Topic::Retry => {
                self.on_retry_record(r);
                self.check_catch_up();
            }
        }
    }

    fn on_event_record(&mut self, r: Record) {
        let offset = r.offset;
        self.events_seen_until = self.events_seen_until.max(offset + 1);
        {
            let mut t = self.trackers();
            if t.events.inherited_finished(offset) {
                t.events.received_finished(offset);
                return;
            }
        }
        let mut envelope = match decode(&r) {
            Ok(e) => e,
            Err(why) => return self.poison(&r, &why),
        };
        self.trackers().events.received(offset);
        envelope.origin_partition = self.partition;
        envelope.origin_offset = offset;
        let endpoint: Arc<str> = envelope.endpoint_id.as_str().into();
        let source = Source::Events(offset);
        self.custody(source, 1);
        let event = Event {
            source,
            origin: offset,
            envelope,
        };
        let lane = self.lane(&endpoint);
        lane.saw(offset);
        if lane.durable {
            return self.write(endpoint, event, Target::Retry, false);
        }
        lane.queue.push_back(event);
        self.pump(&endpoint);
        let max_lane = self.settings.max_lane;
        if self
            .lanes
            .get(&endpoint)
            .is_some_and(|l| l.held() > l.window(max_lane))
        {
            self.overflow(&endpoint);
        }
    }

    fn on_retry_record(&mut self, r: Record) {
        let offset = r.offset;
        self.retry_seen_until = self.retry_seen_until.max(offset + 1);
        {
            let mut t = self.trackers();
            if t.retry.inherited_finished(offset) {
                t.retry.received_finished(offset);
                return;
            }
        }
        let envelope = match decode(&r) {
            Ok(e) => e,
            Err(why) => return self.poison(&r, &why),
        };
        self.trackers().retry.received(offset);
        let endpoint: Arc<str> = envelope.endpoint_id.as_str().into();
        let origin = envelope.origin_offset;
        let ordered = self.ordered(&endpoint);
        let max_lane = self.settings.max_lane;
        let lane = self.lane(&endpoint);
        lane.saw(origin);
        // An ordered endpoint with a backlog here queues new events behind it.
        lane.durable |= ordered;
        if lane.settled_copies.remove(&origin) {
            // A copy of a head that was settled while the copy was in flight.
            let source = Source::Retry(offset);
            self.custody(source, 1);
            self.finish(source);
            return self.after_settle(&endpoint);
        }
        if lane.behind.is_some() {
            // Left in Kafka: a scan from `behind` will read it. A scan that
            // already runs stops before this offset, so remember it.
            if lane.scanning {
                lane.ignored_from.get_or_insert(offset);
            }
            return;
        }
        if lane.held() >= lane.window(max_lane) {
            lane.behind = Some(offset);
            self.behind.insert(endpoint);
            return;
        }
        let source = Source::Retry(offset);
        lane.queue.push_back(Event {
            source,
            origin,
            envelope,
        });
        self.custody(source, 1);
        self.pump(&endpoint);
    }

    fn check_catch_up(&mut self) {
        if let CatchUp::Until(target) = self.catch_up {
            if self.retry_seen_until >= target {
                self.catch_up = CatchUp::None;
                tracing::debug!(
                    partition = self.partition,
                    "retry backlog read; events resume"
                );
                self.paused = true;
                self.set_paused(false);
                for r in std::mem::take(&mut self.stash) {
                    self.on_event_record(r);
                }
            }
        }
    }

    fn scanner(&mut self) -> Option<Scanner> {
        if self.scanner.is_none() {
            match Scanner::new(&self.settings.kafka, &self.settings.node_id, self.partition) {
                Ok(s) => self.scanner = Some(s),
                Err(e) => {
                    tracing::error!(partition = self.partition, error = %e, "cannot create the retry scanner")
                }
            }
        }
        self.scanner.clone()
    }

    fn fetch_catch_up_target(&mut self) {
        let Some(scanner) = self.scanner() else {
            return;
        };
        self.jobs.push(Box::pin(async move {
            loop {
                let s = scanner.clone();
                match tokio::task::spawn_blocking(move || s.high_watermark()).await {
                    Ok(Ok(high)) => return Done::CatchUpTarget(high),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "retry watermark unavailable; asking again")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "retry watermark query failed; asking again")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }

    /// A record that cannot be delivered as it is (undecodable, key and
    /// envelope disagree): dead-lettered as it was read, with the reason,
    /// and its offset finished once the dead letter is written. Never
    /// skipped silently.
    fn poison(&mut self, r: &Record, why: &str) {
        tracing::error!(partition = self.partition, topic = ?r.topic, offset = r.offset, error = %why, "poison record; dead-lettering it");
        metrics::counter!(names::EVENTS_SKIPPED, "reason" => "poison").increment(1);
        let source = match r.topic {
            Topic::Events => Source::Events(r.offset),
            Topic::Retry => Source::Retry(r.offset),
        };
        {
            let mut t = self.trackers();
            match r.topic {
                Topic::Events => t.events.received(r.offset),
                Topic::Retry => t.retry.received(r.offset),
            }
        }
        self.custody(source, 1);
        let key = r
            .key
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let envelope = EventEnvelope {
            event_id: format!("poison-{:?}-{}-{}", r.topic, self.partition, r.offset)
                .to_lowercase(),
            endpoint_id: herald_core::text::bounded(&key, 256),
            event_type: "herald.poison_record".into(),
            payload: r.payload.clone().unwrap_or_default(),
            created_at_ms: now_ms(),
            attempt: Some(herald_proto::v1::AttemptState {
                last_error: herald_core::text::bounded(why, 512),
                ..Default::default()
            }),
            origin_partition: self.partition,
            origin_offset: r.offset,
            ..Default::default()
        };
        // No lane owns it: the empty id is never an endpoint's.
        self.write(
            Arc::from(""),
            Event {
                source,
                origin: r.offset,
                envelope,
            },
            Target::DeadLetter(DeadReason::Poison),
            false,
        );
    }

    // ----- starting work ---------------------------------------------------

    /// Starts as many of `endpoint`'s queued events as its lane allows.
    fn pump(&mut self, endpoint: &Arc<str>) {
        if self.suspended {
            return;
        }
        let prepared = match self.known(endpoint) {
            Known::Ready(p) => p,
            Known::Deleted => return self.drop_deleted(endpoint),
            Known::Unknown if self.unknown.contains(endpoint) => {
                return self.dead_letter_unknown(endpoint)
            }
            Known::Unknown => {
                // Registry lag, never deletion: wait until it caught up.
                self.parked.insert(endpoint.clone());
                return self.sync_registry(endpoint);
            }
        };
        let ordered = prepared.endpoint.ordered;
        let enabled = prepared.endpoint.enabled;
        let limit = prepared
            .endpoint
            .effective_in_flight(self.settings.default_in_flight);
        let now = now_ms();
        loop {
            let events_seen_until = self.events_seen_until;
            let Some(lane) = self.lanes.get_mut(endpoint) else {
                return;
            };
            let Some(front) = lane.queue.front() else {
                return;
            };
            // Events behind a dead-lettered one follow it, in order (the
            // write FIFO keeps the order), even when the endpoint is disabled.
            match lane.flush_below {
                Some(f) if ordered && front.origin < f => {
                    let event = lane.queue.pop_front().expect("front exists");
                    lane.in_flight += 1;
                    self.dead_letter(endpoint, event, DeadReason::Predecessor);
                    continue;
                }
                Some(_) if lane.in_flight == 0 => lane.flush_below = None,
                _ => {}
            }
            if !enabled {
                self.parked.insert(endpoint.clone());
                return;
            }
            self.parked.remove(endpoint);
            if !lane.can_start(limit, ordered) {
                return;
            }
            if prepared.policy.expired(front.envelope.created_at_ms, now) {
                let event = lane.queue.pop_front().expect("front exists");
                lane.in_flight += 1;
                if ordered {
                    lane.flush_below = Some(events_seen_until.max(lane.max_origin + 1));
                }
                self.dead_letter(endpoint, event, DeadReason::Exhausted(Exhaustion::Age));
                continue;
            }
            let breaker = self
                .breakers
                .entry(endpoint.clone())
                .or_insert_with(|| Breaker::new(self.settings.breaker));
            match breaker.permit(now) {
                Permit::Go => {}
                Permit::WaitUntil(t) => return self.wake_at(endpoint, t),
                Permit::WaitForProbe => return,
            }
            let Some(lane) = self.lanes.get_mut(endpoint) else {
                return;
            };
            let event = lane.queue.pop_front().expect("front exists");
            lane.in_flight += 1;
            let delay = Duration::from_millis((event.due_ms() - now).max(0) as u64);
            if ordered {
                lane.head = Some((event.origin, event.envelope.clone()));
            }
            self.launch(endpoint.clone(), prepared.clone(), event, delay);
        }
    }

    /// Pumps `endpoint` again at `at_ms` (once, however often asked).
    fn wake_at(&mut self, endpoint: &Arc<str>, at_ms: i64) {
        if !self.wakes.insert(endpoint.clone()) {
            return;
        }
        let ep = endpoint.clone();
        let wait = Duration::from_millis((at_ms - now_ms()).max(0) as u64);
        self.jobs.push(Box::pin(async move {
            tokio::time::sleep(wait).await;
            Done::Wake(ep)
        }));
    }

    /// The pacer of `endpoint`, rebuilt when its rate limit changed.
    fn pacer(&mut self, prepared: &Prepared) -> Arc<Pacer> {
        let limit = prepared.endpoint.rate_limit.or(self.settings.default_rate);
        let key: Arc<str> = prepared.endpoint.id.as_str().into();
        match self.pacers.get(&key) {
            Some(p) if p.base() == limit => p.clone(),
            _ => {
                if self.pacers.len() > 10_000 {
                    // Endpoints without a lane have no pending work: forget them.
                    let lanes = &self.lanes;
                    self.pacers.retain(|k, _| lanes.contains_key(k));
                    self.breakers
                        .retain(|k, b| lanes.contains_key(k) || b.is_open());
                }
                let p = Arc::new(Pacer::new(limit));
                self.pacers.insert(key, p.clone());
                p
            }
        }
    }

    /// Records an attempt's result in the endpoint's breaker; tells operators
    /// about transitions.
    fn breaker_record(&mut self, endpoint: &Arc<str>, success: bool) {
        let now = now_ms();
        let config = self.settings.breaker;
        let breaker = self
            .breakers
            .entry(endpoint.clone())
            .or_insert_with(|| Breaker::new(config));
        match breaker.record(success, now) {
            Some(Transition::Opened) => {
                metrics::counter!(names::CIRCUIT_TRANSITIONS, "state" => "open").increment(1);
                metrics::gauge!(names::CIRCUITS_OPEN).increment(1.0);
                tracing::warn!(endpoint_id = %endpoint, "circuit opened: no requests until the cool-down ends");
                self.settings.ops.emit(
                    kind::CIRCUIT_OPENED,
                    endpoint,
                    serde_json::json!({"cool_down_ms": config.cool_down_ms}),
                );
            }
            Some(Transition::Closed) => {
                metrics::counter!(names::CIRCUIT_TRANSITIONS, "state" => "closed").increment(1);
                metrics::gauge!(names::CIRCUITS_OPEN).decrement(1.0);
                tracing::info!(endpoint_id = %endpoint, "circuit closed");
                self.settings
                    .ops
                    .emit(kind::CIRCUIT_CLOSED, endpoint, serde_json::json!({}));
            }
            None => {}
        }
    }

    /// Disables `endpoint` in the registry (once), telling operators why.
    fn disable(&mut self, endpoint: &Arc<str>, reason: &'static str, detail: String) {
        let Some(writer) = self.settings.writer.clone() else {
            return;
        };
        let Some(current) = self.settings.registry.get(endpoint) else {
            return;
        };
        if !current.enabled || self.disabling.get(endpoint) == Some(&current.updated_at_ms) {
            return;
        }
        self.disabling
            .insert(endpoint.clone(), current.updated_at_ms);
        let registry = self.settings.registry.clone();
        let ops = self.settings.ops.clone();
        let ep = endpoint.clone();
        tokio::spawn(async move {
            let Some(current) = registry.get(&ep) else {
                return;
            };
            if !current.enabled {
                return;
            }
            let mut updated = (*current).clone();
            updated.enabled = false;
            updated.updated_at_ms = now_ms();
            match writer.put(&updated).await {
                Ok(()) => {
                    metrics::counter!(names::ENDPOINTS_AUTO_DISABLED, "reason" => reason)
                        .increment(1);
                    tracing::warn!(endpoint_id = %ep, reason, %detail, "endpoint disabled");
                    ops.emit(
                        kind::ENDPOINT_DISABLED,
                        &ep,
                        serde_json::json!({"reason": reason, "detail": detail}),
                    );
                }
                Err(e) => tracing::error!(endpoint_id = %ep, error = %e, "cannot disable endpoint"),
            }
        });
    }

    fn launch(
        &mut self,
        endpoint: Arc<str>,
        prepared: Arc<Prepared>,
        event: Event,
        delay: Duration,
    ) {
        let wait = if delay.is_zero() {
            Wait::None
        } else if delay > self.settings.in_memory_max {
            Wait::Long
        } else {
            Wait::Short
        };
        if let Some(l) = self.lanes.get_mut(&endpoint) {
            match wait {
                Wait::None => {}
                Wait::Short => l.waiting += 1,
                Wait::Long => {
                    l.waiting += 1;
                    l.waiting_long += 1;
                }
            }
        }
        let ctx = self.settings.attempts.clone();
        let drain = self.drain.clone();
        let pacer = self.pacer(&prepared);
        self.jobs.push(Box::pin(async move {
            let (event, outcome) = ctx.run(prepared, pacer, event, delay, drain).await;
            Done::Attempt(endpoint, event, outcome, wait)
        }));
    }

    /// Queues a write to the retry or dead-letter topic (in decision order).
    fn write(&mut self, endpoint: Arc<str>, mut event: Event, target: Target, copy: bool) {
        if target == Target::Retry {
            self.lane(&endpoint).appends += 1;
        }
        event.envelope.origin_partition = self.partition;
        self.writes.push_back(Write {
            endpoint,
            event,
            target,
            copy,
        });
        self.flush_writes();
    }

    /// Hands queued writes to the producer, in order, until its queue is full.
    fn flush_writes(&mut self) {
        while !self.write_blocked && self.fatal.is_none() {
            let Some(w) = self.writes.front() else { return };
            match self
                .settings
                .sink
                .enqueue(w.target, self.partition, &w.event.envelope)
            {
                Ok(landed) => {
                    let w = self.writes.pop_front().expect("front exists");
                    self.jobs
                        .push(Box::pin(async move { Done::Written(w, landed.await) }));
                }
                Err(EnqueueError::QueueFull) => {
                    self.write_blocked = true;
                    self.jobs.push(Box::pin(async {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Done::WriteRetry
                    }));
                }
                Err(EnqueueError::TooLarge) => {
                    // Only the text a receiver controls can shrink; a payload
                    // that was accepted into the events topic fits again.
                    let w = self.writes.front_mut().expect("front exists");
                    match w.event.envelope.attempt.as_mut() {
                        Some(a) if !a.last_error.is_empty() => {
                            tracing::warn!(partition = self.partition, endpoint_id = %w.endpoint, "retry/dead-letter record too large; dropping its error text");
                            a.last_error.clear();
                        }
                        _ => {
                            self.fatal = Some(WorkerError::Write(format!(
                                "a record for endpoint {} is larger than the broker accepts",
                                w.endpoint
                            )));
                            return;
                        }
                    }
                }
                Err(EnqueueError::Fatal(e)) => {
                    tracing::error!(partition = self.partition, error = %e, "cannot enqueue a retry/dead-letter write");
                    self.fatal = Some(WorkerError::Write(e.to_string()));
                    return;
                }
            }
        }
    }

    /// Writes `event` (counted in flight) to the dead-letter topic.
    fn dead_letter(&mut self, endpoint: &Arc<str>, event: Event, reason: DeadReason) {
        tracing::warn!(event_id = %event.envelope.event_id, endpoint_id = %endpoint, reason = reason.as_str(),
            attempt = event.attempts(), "dead-lettering event");
        self.write(endpoint.clone(), event, Target::DeadLetter(reason), false);
    }

    /// Moves the lane's backlog (with `head` first, when given) to the retry
    /// topic; the lane turns durable.
    fn move_to_retry(&mut self, endpoint: &Arc<str>, head: Option<Event>) {
        let lane = self.lane(endpoint);
        lane.durable = true;
        let queued: Vec<Event> = lane.queue.drain(..).collect();
        tracing::info!(endpoint_id = %endpoint, partition = self.partition, events = queued.len() + usize::from(head.is_some()),
            "moving endpoint backlog to the retry topic");
        for e in head.into_iter().chain(queued) {
            self.write(endpoint.clone(), e, Target::Retry, false);
        }
    }

    /// The lane holds more than it may: its backlog moves to the retry topic.
    /// An ordered lane's in-flight head goes first, as a copy, so it is never
    /// split from its followers; the original keeps running.
    fn overflow(&mut self, endpoint: &Arc<str>) {
        let ordered = self.ordered(endpoint);
        let lane = self.lane(endpoint);
        if ordered && lane.in_flight > 0 {
            if let Some((origin, envelope)) = lane.head.clone() {
                let source = Source::Events(origin);
                self.write(
                    endpoint.clone(),
                    Event {
                        source,
                        origin,
                        envelope,
                    },
                    Target::Retry,
                    true,
                );
            }
        }
        self.move_to_retry(endpoint, None);
    }

    fn drop_deleted(&mut self, endpoint: &Arc<str>) {
        let Some(lane) = self.lanes.get_mut(endpoint) else {
            return;
        };
        let queued: Vec<Event> = lane.queue.drain(..).collect();
        for e in queued {
            tracing::warn!(event_id = %e.envelope.event_id, endpoint_id = %endpoint, "endpoint was deleted; event dropped");
            metrics::counter!(names::EVENTS_SKIPPED, "reason" => "endpoint_deleted").increment(1);
            self.finish(e.source);
        }
    }

    // ----- completions -----------------------------------------------------

    fn on_done(&mut self, done: Done, draining: bool) {
        match done {
            Done::Attempt(ep, event, outcome, wait) => {
                if let Some(l) = self.lanes.get_mut(&ep) {
                    if wait != Wait::None {
                        l.waiting = l.waiting.saturating_sub(1);
                    }
                    if wait == Wait::Long {
                        l.waiting_long = l.waiting_long.saturating_sub(1);
                    }
                }
                self.on_attempt(ep, event, outcome, draining)
            }
            Done::Written(w, Ok(offset)) => self.on_written(w, offset),
            Done::Written(w, Err(e)) => {
                // With the idempotent producer this is fatal: writing it
                // again could land it behind later writes. Stop; the node
                // restarts from committed offsets (the source of this write
                // and of every later one is unfinished, or finished by a
                // landed write).
                tracing::error!(partition = self.partition, endpoint_id = %w.endpoint, error = %e, "a retry/dead-letter write failed for good");
                self.fatal = Some(WorkerError::Write(e.to_string()));
            }
            Done::WriteRetry => {
                self.write_blocked = false;
                self.flush_writes();
            }
            Done::Scanned(ep, r) => self.on_scanned(ep, r),
            Done::RegistrySynced(ep, ok) => self.on_registry_synced(ep, ok),
            Done::Wake(ep) => {
                self.wakes.remove(&ep);
                self.after_settle(&ep);
            }
            Done::CatchUpTarget(high) => {
                if self.catch_up == CatchUp::Unknown {
                    self.catch_up = CatchUp::Until(high);
                    self.check_catch_up();
                }
            }
        }
    }

    fn on_written(&mut self, w: Write, offset: i64) {
        let Write {
            endpoint,
            event,
            target,
            copy,
        } = w;
        match target {
            Target::Retry => {
                metrics::counter!(names::RETRY_WRITES).increment(1);
                if let Some(lane) = self.lanes.get_mut(&endpoint) {
                    lane.appends -= 1;
                    lane.last_append = Some(lane.last_append.map_or(offset, |a| a.max(offset)));
                }
                if !copy {
                    self.finish(event.source);
                }
            }
            Target::DeadLetter(reason) => {
                metrics::counter!(names::DEAD_LETTERS, "reason" => reason.as_str()).increment(1);
                if matches!(
                    reason,
                    DeadReason::Exhausted(_) | DeadReason::UnknownEndpoint
                ) {
                    self.settings.ops.emit(
                        kind::EVENT_EXHAUSTED,
                        &endpoint,
                        serde_json::json!({"event_id": event.envelope.event_id, "reason": reason.as_str()}),
                    );
                }
                if let Some(lane) = self.lanes.get_mut(&endpoint) {
                    lane.in_flight -= 1;
                }
                self.finish(event.source);
            }
        }
        self.after_settle(&endpoint);
    }

    fn on_attempt(
        &mut self,
        endpoint: Arc<str>,
        mut event: Event,
        outcome: Outcome,
        draining: bool,
    ) {
        if outcome == Outcome::Aborted || (draining && outcome != Outcome::Delivered) {
            return;
        }
        // Whether this is an ordered head whose copy already waits in the
        // retry topic (the lane overflowed while it was in flight).
        let copied = self.lanes.get(&endpoint).is_some_and(|l| {
            l.durable
                && l.head.as_ref().is_some_and(|(o, _)| *o == event.origin)
                && matches!(event.source, Source::Events(_))
        });
        if let Some(l) = self.lanes.get_mut(&endpoint) {
            if l.head.as_ref().is_some_and(|(o, _)| *o == event.origin) {
                l.head = None;
            }
        }
        self.breaker_record(&endpoint, outcome == Outcome::Delivered);
        if outcome == Outcome::Delivered {
            self.failing_since.remove(&endpoint);
        }
        if let Outcome::Failed { .. } = outcome {
            let a = event.envelope.attempt.clone().unwrap_or_default();
            let now = now_ms();
            let first = if a.first_attempt_ms > 0 {
                a.first_attempt_ms
            } else {
                now
            };
            let since = *self
                .failing_since
                .entry(endpoint.clone())
                .and_modify(|s| *s = (*s).min(first))
                .or_insert(first);
            let period = self.settings.disable_after.as_millis() as i64;
            if a.last_status == 410 {
                self.disable(&endpoint, "gone", "the endpoint answered 410 Gone".into());
            } else if period > 0 && now - since > period {
                let detail = format!("failing since {} ms ago", now - since);
                self.disable(&endpoint, "failing", detail);
            }
        }
        match outcome {
            Outcome::Aborted => {}
            Outcome::Delivered => {
                self.finish(event.source);
                let lane = self.lane(&endpoint);
                lane.in_flight -= 1;
                if copied {
                    lane.settled_copies.insert(event.origin);
                }
                self.after_settle(&endpoint);
            }
            Outcome::Failed {
                verdict,
                retry_after,
            } => {
                let prepared = match self.known(&endpoint) {
                    Known::Ready(p) => p,
                    Known::Deleted => {
                        metrics::counter!(names::EVENTS_SKIPPED, "reason" => "endpoint_deleted")
                            .increment(1);
                        self.finish(event.source);
                        self.lane(&endpoint).in_flight -= 1;
                        return self.after_settle(&endpoint);
                    }
                    Known::Unknown => {
                        // Back to the front: `pump` waits for the registry.
                        let lane = self.lane(&endpoint);
                        lane.in_flight -= 1;
                        lane.queue.push_front(event);
                        return self.after_settle(&endpoint);
                    }
                };
                let now = now_ms();
                let failure = Failure {
                    verdict,
                    attempts: event.attempts(),
                    created_ms: event.envelope.created_at_ms,
                    now_ms: now,
                    retry_after,
                };
                let ordered = prepared.endpoint.ordered;
                match prepared.policy.after_failure(failure, rand::random()) {
                    Step::GiveUp(why) => {
                        let bound = self.events_seen_until;
                        let lane = self.lane(&endpoint);
                        if ordered {
                            // Everything of this endpoint read so far follows it.
                            lane.flush_below = Some(bound.max(lane.max_origin + 1));
                        }
                        if copied {
                            lane.settled_copies.insert(event.origin);
                        }
                        self.dead_letter(&endpoint, event, DeadReason::Exhausted(why));
                    }
                    Step::RetryIn(_) if copied => {
                        // The copy in the retry topic carries the retries.
                        self.finish(event.source);
                        self.lane(&endpoint).in_flight -= 1;
                        self.after_settle(&endpoint);
                    }
                    Step::RetryIn(delay) => {
                        if let Some(a) = event.envelope.attempt.as_mut() {
                            a.next_attempt_ms = now + delay.as_millis() as i64;
                        }
                        let long = delay > self.settings.in_memory_max;
                        let lane = self.lane(&endpoint);
                        if ordered && long && !lane.durable {
                            lane.in_flight -= 1;
                            self.move_to_retry(&endpoint, Some(event));
                        } else if !ordered && long {
                            lane.in_flight -= 1;
                            self.write(endpoint.clone(), event, Target::Retry, false);
                        } else {
                            // Back to the front of its lane: `pump` starts it
                            // again (at its due time) only if the endpoint is
                            // still enabled and its circuit lets it through.
                            lane.in_flight -= 1;
                            lane.queue.push_front(event);
                            self.pump(&endpoint);
                        }
                    }
                }
            }
        }
    }

    /// After an event of `endpoint` settled: start more, read more, or
    /// retire the lane.
    fn after_settle(&mut self, endpoint: &Arc<str>) {
        if endpoint.is_empty() {
            return; // a poison record's dead letter: no lane
        }
        self.pump(endpoint);
        self.maybe_scan(endpoint);
        let seen = self.retry_seen_until;
        if self.lanes.get(endpoint).is_some_and(|l| l.is_done(seen)) {
            self.lanes.remove(endpoint);
            self.behind.remove(endpoint);
            self.parked.remove(endpoint);
            metrics::gauge!(names::LANES_OPEN).decrement(1.0);
        }
    }

    // ----- reading back what lanes left in Kafka ----------------------------

    /// Queues a scan for `endpoint` if it left records behind and has room.
    fn maybe_scan(&mut self, endpoint: &Arc<str>) {
        let max_lane = self.settings.max_lane;
        let Some(lane) = self.lanes.get_mut(endpoint) else {
            return;
        };
        let Some(_) = lane.behind else { return };
        let window = lane.window(max_lane);
        let room_enough = lane.held() < window && (window == 1 || lane.held() <= window / 2);
        if lane.scanning || !room_enough {
            return;
        }
        lane.scanning = true;
        lane.ignored_from = None;
        self.scan_queue.push_back(endpoint.clone());
        self.start_scan();
    }

    fn start_scan(&mut self) {
        if self.scan_running {
            return;
        }
        let max_lane = self.settings.max_lane;
        while let Some(endpoint) = self.scan_queue.pop_front() {
            let Some(lane) = self.lanes.get(&endpoint) else {
                continue;
            };
            let Some(from) = lane.behind else {
                if let Some(l) = self.lanes.get_mut(&endpoint) {
                    l.scanning = false;
                }
                continue;
            };
            let room = lane.window(max_lane).saturating_sub(lane.held()).max(1);
            let Some(scanner) = self.scanner() else {
                if let Some(l) = self.lanes.get_mut(&endpoint) {
                    l.scanning = false;
                }
                return;
            };
            let req = ScanRequest {
                endpoint: endpoint.clone(),
                from,
                until: self.retry_seen_until,
                room,
            };
            self.scan_running = true;
            self.jobs.push(Box::pin(async move {
                let result = tokio::task::spawn_blocking(move || scanner.scan(req))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                Done::Scanned(endpoint, result)
            }));
            return;
        }
    }

    fn on_scanned(&mut self, endpoint: Arc<str>, result: Result<ScanResult, String>) {
        self.scan_running = false;
        let Some(lane) = self.lanes.get_mut(&endpoint) else {
            return self.start_scan();
        };
        lane.scanning = false;
        let res = match result {
            Ok(r) => r,
            Err(e) => {
                // The lane stays behind (live records it ignored meanwhile
                // are at or after `behind`); `maintain` asks again.
                lane.ignored_from = None;
                tracing::warn!(partition = self.partition, endpoint_id = %endpoint, error = %e, "retry scan failed; will scan again");
                return self.start_scan();
            }
        };
        lane.behind = match res.stopped_at {
            Some(at) => Some(at),
            None => lane.ignored_from.take(),
        };
        for (offset, payload) in res.records {
            if !self.trackers().retry.is_unfinished(offset) {
                continue;
            }
            let envelope = match decode_payload(Some(endpoint.as_bytes()), &payload) {
                Ok(e) => e,
                Err(_) => continue,
            };
            let origin = envelope.origin_offset;
            let source = Source::Retry(offset);
            self.custody(source, 1);
            let lane = self.lane(&endpoint);
            if lane.settled_copies.remove(&origin) {
                self.finish(source);
                continue;
            }
            lane.queue.push_back(Event {
                source,
                origin,
                envelope,
            });
        }
        if self
            .lanes
            .get(&endpoint)
            .is_some_and(|l| l.behind.is_none())
        {
            self.behind.remove(&endpoint);
        }
        self.after_settle(&endpoint);
        self.start_scan();
    }

    /// Re-checks lanes parked on a disabled endpoint after a registry change.
    fn unpark(&mut self) {
        let parked: Vec<Arc<str>> = self.parked.iter().cloned().collect();
        for ep in parked {
            self.pump(&ep);
            self.after_settle(&ep);
        }
    }

    /// Reports this partition's endpoints with the oldest events (at most
    /// once a second).
    fn report_worst(&mut self) {
        let n = self.settings.worst.n();
        let idle_now = self.lanes.is_empty();
        if !idle_now && self.worst_reported.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.worst_reported = std::time::Instant::now();
        let mut oldest: Vec<(String, i64)> = self
            .lanes
            .iter()
            .filter_map(|(ep, lane)| {
                let queued = lane.queue.front().map(|e| e.envelope.created_at_ms);
                let head = lane.head.as_ref().map(|(_, env)| env.created_at_ms);
                let created = match (queued, head) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b)?,
                };
                Some((ep.to_string(), created))
            })
            .collect();
        oldest.sort_by_key(|(_, created)| *created);
        let age = oldest.first().map_or(0.0, |(_, created)| {
            (now_ms() - created).max(0) as f64 / 1000.0
        });
        metrics::gauge!(names::CONSUMER_LAG_SECONDS, "partition" => self.partition.to_string())
            .set(age);
        oldest.truncate(n);
        self.settings.worst.report(self.partition, oldest);
    }

    /// Memory cap (pause/resume the events partition) and scans for lanes
    /// that have room again.
    fn maintain(&mut self) {
        self.report_worst();
        if self.catch_up == CatchUp::None {
            let cap = self.settings.max_buffered;
            if self.held_events >= cap {
                if !self.paused {
                    metrics::counter!(names::PARTITION_PAUSES).increment(1);
                    tracing::warn!(
                        partition = self.partition,
                        held = self.held_events,
                        "lanes are full; pausing the events partition"
                    );
                }
                self.set_paused(true);
            } else if self.held_events <= cap / 2 {
                self.set_paused(false);
            }
        }
        if !self.behind.is_empty() && !self.scan_running {
            let behind: Vec<Arc<str>> = self.behind.iter().cloned().collect();
            for ep in behind {
                self.maybe_scan(&ep);
            }
        }
    }
}
