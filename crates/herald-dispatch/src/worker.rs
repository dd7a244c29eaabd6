//! The task that owns one assigned partition: partition N of the events
//! topic and partition N of the retry topic (the consumer group's range
//! assignor keeps them together).
//!
//! It puts each event in its endpoint's [`Lane`], starts deliveries as the
//! lanes allow, keeps short retries in memory, moves an ordered endpoint's
//! backlog to the retry topic when a retry would wait longer than
//! `retry.in_memory_max` (or the lane overflows), reads it back in order,
//! dead-letters exhausted events, and marks offsets finished in both
//! topics' [`OffsetTracker`]s. Deliveries and writes run as futures inside
//! this task: no per-event spawn and no locks shared with other partitions.
//!
//! Stops when *cancelled* (partition revoked: everything is dropped and the
//! next owner re-sends what was unfinished) or *drained* (record channel
//! closed at shutdown: in-flight attempts and writes finish, nothing new starts).

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
use herald_registry::Registry;
use herald_telemetry::names;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::attempt::{AttemptContext, Event, Outcome, Source};
use crate::cursor::{Read, RetryCursor};
use crate::endpoint::Prepared;
use crate::lane::Lane;
use crate::offsets::{OffsetTracker, SkipSet};
use crate::sink::{DeadReason, Sink};

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
    /// Re-read the retry partition from this offset.
    SeekRetry(i64),
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

/// Where a newly assigned partition starts.
#[derive(Debug, Clone, Default)]
pub struct Start {
    /// Committed-metadata skip set of the events partition.
    pub events_skip: SkipSet,
    /// Committed-metadata skip set of the retry partition.
    pub retry_skip: SkipSet,
    /// Retry-topic high watermark at assignment: the backlog to read before
    /// any event (so a durable endpoint's new events queue behind it).
    pub retry_catch_up: Option<i64>,
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
    /// Fired on revoke.
    pub cancel: CancellationToken,
}

type Job = Pin<Box<dyn Future<Output = Done> + Send>>;

/// A finished job of the worker.
enum Done {
    /// An attempt ended; `true` when it had waited out a delay first.
    Attempt(Arc<str>, Event, Outcome, bool),
    /// An event was appended to the retry topic at this offset.
    Retried(Arc<str>, Source, i64),
    /// An event was written to the dead-letter topic.
    DeadLettered(Arc<str>, Source, DeadReason),
}

/// Runs the worker until cancelled or drained.
pub async fn run_worker(settings: WorkerSettings, start: Start, io: WorkerIo) {
    let WorkerIo {
        partition,
        generation,
        mut records,
        trackers,
        control,
        cancel,
    } = io;
    let mut w = Worker {
        partition,
        generation,
        control,
        drain: CancellationToken::new(),
        trackers,
        events_skip: start.events_skip,
        retry_skip: start.retry_skip,
        catch_up: start.retry_catch_up,
        stash: Vec::new(),
        settings,
        lanes: HashMap::new(),
        prepared: HashMap::new(),
        prepared_version: u64::MAX,
        parked: HashSet::new(),
        behind: HashSet::new(),
        cursor: RetryCursor::new(),
        replay_from: None,
        events_seen_until: 0,
        held: 0,
        paused: false,
        jobs: FuturesUnordered::new(),
    };
    if w.catch_up.is_some() {
        w.set_paused(true);
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
        }
        if draining {
            if w.jobs.is_empty() {
                break;
            }
        } else {
            w.maintain();
        }
    }
    metrics::gauge!(names::LANE_EVENTS).decrement(w.held as f64);
    metrics::gauge!(names::LANES_OPEN).decrement(w.lanes.len() as f64);
    tracing::debug!(partition, held = w.held, "partition worker stopped");
}

struct Worker {
    partition: i32,
    generation: u64,
    control: mpsc::UnboundedSender<ControlMsg>,
    settings: WorkerSettings,
    /// Fired when draining: aborts attempts still waiting out a backoff.
    drain: CancellationToken,
    trackers: Arc<Mutex<Trackers>>,
    events_skip: SkipSet,
    retry_skip: SkipSet,
    /// Until the retry partition is read up to here, events wait (paused).
    catch_up: Option<i64>,
    /// Events records that arrived while catching up, in order.
    stash: Vec<Record>,
    lanes: HashMap<Arc<str>, Lane>,
    /// Prepared endpoints, valid for `prepared_version` of the registry.
    prepared: HashMap<Arc<str>, Option<Arc<Prepared>>>,
    prepared_version: u64,
    /// Lanes waiting because their endpoint is disabled.
    parked: HashSet<Arc<str>>,
    /// Lanes with retry records not in memory.
    behind: HashSet<Arc<str>>,
    cursor: RetryCursor,
    /// Lowest offset the current replay started from.
    replay_from: Option<i64>,
    /// One past the highest events offset read.
    events_seen_until: i64,
    /// Events held in memory by all lanes.
    held: usize,
    /// Whether the events partition is paused for memory.
    paused: bool,
    jobs: FuturesUnordered<Job>,
}

fn decode(r: &Record) -> Result<EventEnvelope, String> {
    let payload = r.payload.as_ref().ok_or("record has no value")?;
    let env = EventEnvelope::decode(payload.clone()).map_err(|e| e.to_string())?;
    if env.endpoint_id.is_empty() || r.key.as_deref() != Some(env.endpoint_id.as_bytes()) {
        return Err("record key does not match the envelope's endpoint id".into());
    }
    Ok(env)
}

impl Worker {
    fn trackers(&self) -> MutexGuard<'_, Trackers> {
        self.trackers.lock().expect("tracker lock")
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

    fn hold(&mut self, n: isize) {
        self.held = (self.held as isize + n).max(0) as usize;
        metrics::gauge!(names::LANE_EVENTS).increment(n as f64);
    }

    fn finish(&mut self, source: Source) {
        let mut t = self.trackers();
        match source {
            Source::Events(o) => t.events.finished(o),
            Source::Retry(o) => t.retry.finished(o),
        }
    }

    fn lane(&mut self, endpoint: &Arc<str>) -> &mut Lane {
        if !self.lanes.contains_key(endpoint) {
            metrics::gauge!(names::LANES_OPEN).increment(1.0);
        }
        self.lanes.entry(endpoint.clone()).or_insert_with(Lane::new)
    }

    /// The endpoint prepared for delivery; `None` when it was deleted.
    fn prepared(&mut self, endpoint: &Arc<str>) -> Option<Arc<Prepared>> {
        let version = self.settings.registry.version();
        if version != self.prepared_version {
            self.prepared.clear();
            self.prepared_version = version;
        }
        if let Some(p) = self.prepared.get(endpoint) {
            return p.clone();
        }
        let policy = &self.settings.policy;
        let p = self
            .settings
            .registry
            .get(endpoint)
            .map(|e| Arc::new(Prepared::new(e, policy)));
        self.prepared.insert(endpoint.clone(), p.clone());
        p
    }

    fn ordered(&mut self, endpoint: &Arc<str>) -> bool {
        self.prepared(endpoint).is_none_or(|p| p.endpoint.ordered)
    }

    // ----- records -------------------------------------------------------

    fn on_record(&mut self, r: Record) {
        match r.topic {
            Topic::Events if self.catch_up.is_some() => self.stash.push(r),
            Topic::Events => self.on_event_record(r),
            Topic::Retry => self.on_retry_record(r),
        }
    }

    fn on_event_record(&mut self, r: Record) {
        let offset = r.offset;
        self.events_seen_until = self.events_seen_until.max(offset + 1);
        if self.events_skip.should_skip(offset) {
            self.trackers().events.received_finished(offset);
            return;
        }
        let mut envelope = match decode(&r) {
            Ok(e) => e,
            Err(why) => return self.undecodable(Topic::Events, offset, &why),
        };
        self.trackers().events.received(offset);
        envelope.origin_partition = self.partition;
        envelope.origin_offset = offset;
        let endpoint: Arc<str> = envelope.endpoint_id.as_str().into();
        let event = Event {
            source: Source::Events(offset),
            origin: offset,
            envelope,
        };
        self.hold(1);
        let lane = self.lane(&endpoint);
        if lane.is_duplicate(offset) {
            // A copy of this event already waits in the retry topic.
            drop(event);
            self.hold(-1);
            self.finish(Source::Events(offset));
            return;
        }
        lane.saw(offset);
        if lane.durable {
            self.append(&endpoint, event);
            return;
        }
        lane.queue.push_back(event);
        self.pump(&endpoint);
        if self
            .lanes
            .get(&endpoint)
            .is_some_and(|l| l.held() > self.settings.max_lane)
        {
            self.overflow(&endpoint);
        }
    }

    fn on_retry_record(&mut self, r: Record) {
        let offset = r.offset;
        let read = self.cursor.read(offset);
        if read == Read::Live {
            if self.retry_skip.should_skip(offset) {
                self.trackers().retry.received_finished(offset);
                return self.after_retry_read(read);
            }
        } else if !self.trackers().retry.is_unfinished(offset) {
            return self.after_retry_read(read);
        }
        let envelope = match decode(&r) {
            Ok(e) => e,
            Err(why) => {
                if read == Read::Live {
                    self.undecodable(Topic::Retry, offset, &why);
                }
                return self.after_retry_read(read);
            }
        };
        if read == Read::Live {
            self.trackers().retry.received(offset);
        }
        let endpoint: Arc<str> = envelope.endpoint_id.as_str().into();
        let origin = envelope.origin_offset;
        if read != Read::Live && !self.lanes.contains_key(&endpoint) {
            // Only lanes that are behind take replayed records.
            return self.after_retry_read(read);
        }
        let ordered = self.ordered(&endpoint);
        let max_lane = self.settings.max_lane;
        let lane = self.lane(&endpoint);
        if read == Read::Live {
            lane.saw(origin);
            // An ordered endpoint with a backlog here queues new events behind it.
            lane.durable |= ordered;
        }
        let wanted = match read {
            Read::Live => lane.behind.is_none(),
            Read::Replay { .. } => lane.behind.is_some_and(|b| b <= offset),
        };
        if wanted {
            if lane.held() >= max_lane {
                lane.behind = Some(lane.behind.map_or(offset, |b| b.min(offset)));
                if read != Read::Live {
                    lane.full_in_replay = true;
                }
                self.behind.insert(endpoint.clone());
            } else {
                if read != Read::Live {
                    lane.behind = Some(offset + 1);
                }
                lane.queue.push_back(Event {
                    source: Source::Retry(offset),
                    origin,
                    envelope,
                });
                self.hold(1);
                self.pump(&endpoint);
            }
        }
        self.after_retry_read(read);
    }

    fn after_retry_read(&mut self, read: Read) {
        if let Read::Replay { last: true } = read {
            self.replay_done();
        }
        if let (Some(target), Some(seen)) = (self.catch_up, self.cursor.seen_until()) {
            if seen >= target {
                self.catch_up_done();
            }
        }
    }

    fn catch_up_done(&mut self) {
        self.catch_up = None;
        tracing::debug!(
            partition = self.partition,
            "retry backlog read; events resume"
        );
        self.send(Control::ResumeEvents);
        self.paused = false;
        for r in std::mem::take(&mut self.stash) {
            self.on_event_record(r);
        }
    }

    /// Lanes that re-read their records up to the live position are caught up.
    fn replay_done(&mut self) {
        let from = self.replay_from.take().unwrap_or(i64::MAX);
        let behind: Vec<Arc<str>> = self.behind.iter().cloned().collect();
        for ep in behind {
            let Some(lane) = self.lanes.get_mut(&ep) else {
                self.behind.remove(&ep);
                continue;
            };
            let covered = lane.behind.is_some_and(|b| b >= from);
            if covered && !lane.full_in_replay {
                lane.behind = None;
                self.behind.remove(&ep);
            }
            lane.full_in_replay = false;
        }
    }

    fn undecodable(&mut self, topic: Topic, offset: i64, why: &str) {
        tracing::error!(partition = self.partition, ?topic, offset, error = %why, "undecodable record; skipped");
        metrics::counter!(names::EVENTS_SKIPPED, "reason" => "undecodable").increment(1);
        let mut t = self.trackers();
        match topic {
            Topic::Events => t.events.received_finished(offset),
            Topic::Retry => t.retry.received_finished(offset),
        }
    }

    // ----- starting work ---------------------------------------------------

    /// Starts as many of `endpoint`'s queued events as its lane allows.
    fn pump(&mut self, endpoint: &Arc<str>) {
        let Some(prepared) = self.prepared(endpoint) else {
            return self.drop_deleted(endpoint);
        };
        if !prepared.endpoint.enabled {
            self.parked.insert(endpoint.clone());
            return;
        }
        self.parked.remove(endpoint);
        let ordered = prepared.endpoint.ordered;
        let limit = prepared
            .endpoint
            .effective_in_flight(self.settings.default_in_flight);
        let now = now_ms();
        loop {
            let Some(lane) = self.lanes.get_mut(endpoint) else {
                return;
            };
            if !lane.can_start(limit, ordered) {
                return;
            }
            let event = lane.queue.pop_front().expect("can_start checked the queue");
            lane.in_flight += 1;
            if ordered {
                match lane.flush_below {
                    Some(f) if event.origin < f => {
                        self.dead_letter(endpoint, event, DeadReason::Predecessor);
                        continue;
                    }
                    Some(_) => lane.flush_below = None,
                    None => {}
                }
            }
            if prepared.policy.expired(event.envelope.created_at_ms, now) {
                self.dead_letter(endpoint, event, DeadReason::Exhausted(Exhaustion::Age));
                continue;
            }
            let delay = Duration::from_millis((event.due_ms() - now).max(0) as u64);
            self.launch(endpoint.clone(), prepared.clone(), event, delay);
        }
    }

    fn launch(
        &mut self,
        endpoint: Arc<str>,
        prepared: Arc<Prepared>,
        event: Event,
        delay: Duration,
    ) {
        if !delay.is_zero() {
            if let Some(l) = self.lanes.get_mut(&endpoint) {
                l.waiting += 1;
            }
        }
        let ctx = self.settings.attempts.clone();
        let drain = self.drain.clone();
        let waited = !delay.is_zero();
        self.jobs.push(Box::pin(async move {
            let (event, outcome) = ctx.run(prepared, event, delay, drain).await;
            Done::Attempt(endpoint, event, outcome, waited)
        }));
    }

    /// Appends `event` to the retry topic (it stays held until acknowledged).
    fn append(&mut self, endpoint: &Arc<str>, event: Event) {
        self.lane(endpoint).appends += 1;
        let sink = self.settings.sink.clone();
        let partition = self.partition;
        let ep = endpoint.clone();
        self.jobs.push(Box::pin(async move {
            let offset = sink.to_retry(partition, &event.envelope).await;
            Done::Retried(ep, event.source, offset)
        }));
    }

    /// Writes `event` (counted in flight) to the dead-letter topic.
    fn dead_letter(&mut self, endpoint: &Arc<str>, mut event: Event, reason: DeadReason) {
        tracing::warn!(event_id = %event.envelope.event_id, endpoint_id = %endpoint, reason = reason.as_str(),
            attempts = event.attempts(), "dead-lettering event");
        event.envelope.origin_partition = self.partition;
        let sink = self.settings.sink.clone();
        let partition = self.partition;
        let ep = endpoint.clone();
        self.jobs.push(Box::pin(async move {
            sink.to_dlq(partition, &event.envelope, reason).await;
            Done::DeadLettered(ep, event.source, reason)
        }));
    }

    /// Moves the lane's backlog (with `head` first, when given) to the retry
    /// topic; the lane turns durable.
    fn move_to_retry(&mut self, endpoint: &Arc<str>, head: Option<Event>) {
        let lane = self.lane(endpoint);
        lane.durable = true;
        lane.move_pending = false;
        let queued: Vec<Event> = lane.queue.drain(..).collect();
        tracing::info!(endpoint_id = %endpoint, partition = self.partition, events = queued.len() + usize::from(head.is_some()),
            "moving endpoint backlog to the retry topic");
        for e in head.into_iter().chain(queued) {
            self.append(endpoint, e);
        }
    }

    /// The lane holds more than `max_lane` events.
    fn overflow(&mut self, endpoint: &Arc<str>) {
        let ordered = self.ordered(endpoint);
        let lane = self.lane(endpoint);
        if ordered && lane.in_flight > 0 {
            // Never split the head from its followers: move once it settles.
            lane.move_pending = true;
        } else {
            self.move_to_retry(endpoint, None);
        }
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
            self.hold(-1);
        }
        self.after_settle(endpoint);
    }

    // ----- completions -----------------------------------------------------

    fn on_done(&mut self, done: Done, draining: bool) {
        match done {
            Done::Attempt(ep, event, outcome, waited) => {
                if waited {
                    if let Some(l) = self.lanes.get_mut(&ep) {
                        l.waiting = l.waiting.saturating_sub(1);
                    }
                }
                self.on_attempt(ep, event, outcome, draining)
            }
            Done::Retried(ep, source, offset) => {
                metrics::counter!(names::RETRY_WRITES).increment(1);
                self.finish(source);
                self.hold(-1);
                if let Some(lane) = self.lanes.get_mut(&ep) {
                    lane.appends -= 1;
                    lane.last_append = Some(lane.last_append.map_or(offset, |a| a.max(offset)));
                }
                self.after_settle(&ep);
            }
            Done::DeadLettered(ep, source, reason) => {
                metrics::counter!(names::DEAD_LETTERS, "reason" => reason.as_str()).increment(1);
                self.finish(source);
                self.hold(-1);
                if let Some(lane) = self.lanes.get_mut(&ep) {
                    lane.in_flight -= 1;
                }
                self.after_settle(&ep);
            }
        }
    }

    fn on_attempt(
        &mut self,
        endpoint: Arc<str>,
        mut event: Event,
        outcome: Outcome,
        draining: bool,
    ) {
        match outcome {
            Outcome::Aborted => {}
            Outcome::Delivered => {
                self.finish(event.source);
                self.hold(-1);
                self.lane(&endpoint).in_flight -= 1;
                self.after_settle(&endpoint);
            }
            Outcome::Failed { .. } if draining => {}
            Outcome::Failed {
                verdict,
                retry_after,
            } => {
                let Some(prepared) = self.prepared(&endpoint) else {
                    metrics::counter!(names::EVENTS_SKIPPED, "reason" => "endpoint_deleted")
                        .increment(1);
                    self.finish(event.source);
                    self.hold(-1);
                    self.lane(&endpoint).in_flight -= 1;
                    return self.after_settle(&endpoint);
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
                        if ordered {
                            // Everything of this endpoint read so far follows it.
                            let bound = self.events_seen_until;
                            self.lane(&endpoint).flush_below = Some(bound);
                        }
                        self.dead_letter(&endpoint, event, DeadReason::Exhausted(why));
                    }
                    Step::RetryIn(delay) => {
                        if let Some(a) = event.envelope.attempt.as_mut() {
                            a.next_attempt_ms = now + delay.as_millis() as i64;
                        }
                        let long = delay > self.settings.in_memory_max;
                        let lane = self.lane(&endpoint);
                        if ordered && (lane.move_pending || (long && !lane.durable)) {
                            lane.in_flight -= 1;
                            self.move_to_retry(&endpoint, Some(event));
                        } else if !ordered && long {
                            lane.in_flight -= 1;
                            self.append(&endpoint, event);
                        } else {
                            self.launch(endpoint.clone(), prepared, event, delay);
                        }
                    }
                }
            }
        }
    }

    /// After an event of `endpoint` settled: start more, or retire the lane.
    fn after_settle(&mut self, endpoint: &Arc<str>) {
        let pending_move = self
            .lanes
            .get(endpoint)
            .is_some_and(|l| l.move_pending && l.in_flight == 0);
        if pending_move {
            self.move_to_retry(endpoint, None);
        }
        self.pump(endpoint);
        let seen = self.cursor.seen_until();
        if self.lanes.get(endpoint).is_some_and(|l| l.is_done(seen)) {
            self.lanes.remove(endpoint);
            self.behind.remove(endpoint);
            self.parked.remove(endpoint);
            metrics::gauge!(names::LANES_OPEN).decrement(1.0);
        }
    }

    /// Re-checks lanes parked on a disabled endpoint after a registry change.
    fn unpark(&mut self) {
        let parked: Vec<Arc<str>> = self.parked.iter().cloned().collect();
        for ep in parked {
            self.pump(&ep);
        }
    }

    /// Memory cap (pause/resume the events partition) and re-reads for
    /// lanes that have room again.
    fn maintain(&mut self) {
        if self.catch_up.is_none() {
            let cap = self.settings.max_buffered;
            if self.held >= cap {
                if !self.paused {
                    metrics::counter!(names::PARTITION_PAUSES).increment(1);
                    tracing::warn!(
                        partition = self.partition,
                        held = self.held,
                        "lanes are full; pausing the events partition"
                    );
                }
                self.set_paused(true);
            } else if self.held <= cap / 2 {
                self.set_paused(false);
            }
        }
        if self.behind.is_empty() {
            return;
        }
        let half = self.settings.max_lane / 2;
        let from = self
            .behind
            .iter()
            .filter_map(|ep| self.lanes.get(ep))
            .filter(|l| l.held() <= half)
            .filter_map(|l| l.behind)
            .min();
        if let Some(from) = from {
            if let Some(seek) = self.cursor.rewind(from) {
                self.replay_from = Some(self.replay_from.map_or(seek, |r| r.min(seek)));
                self.send(Control::SeekRetry(seek));
            }
        }
    }
}
