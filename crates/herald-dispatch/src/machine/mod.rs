//! The partition core: everything a partition worker decides, as a state
//! machine with no I/O — no sockets, no Kafka client, no clock, no random
//! source, no tasks. The worker (`worker/`) feeds it [`Input`]s (a record
//! arrived, an attempt ended, a write landed, a scan returned, a timer
//! fired, the registry changed, suspend, drain) with the current time, and
//! executes the [`Action`]s it asks for (attempt, write, scan, wake me,
//! pause, tell operators, disable an endpoint). Tests drive it the same
//! way through any interleaving: `sim.rs` is a deterministic simulation of a
//! whole partition (the core, a simulated Kafka with crashes and zombie
//! writes, simulated receivers, simulated time) and `tests.rs` checks the
//! guarantees over random schedules.
//!
//! # Layout
//! - [`protocol`]: the inputs, actions, settings and registry view.
//! - [`intake`]: records of both topics, skip sets, catch-up, poison records.
//! - [`lanes`]: starting attempts (single events and batches), moves to the
//!   retry topic, dead letters, explicit head copies.
//! - [`outcomes`]: what an attempt's outcome means for its events.
//! - [`writes`]: the custody of events being written to the retry and
//!   dead-letter topics, and what happens when a write lands.
//! - [`scans`]: reading back what lanes left in the retry topic.
//! - [`health`]: circuit breakers and automatic disabling.
//!
//! Custody rules (see docs/delivery-semantics.md): an offset is finished
//! only when its event was delivered, or a write that carries it on landed,
//! or it was dropped because its endpoint's tombstone was read. A head copy
//! (an ordered lane's in-flight head written ahead of its followers) is
//! tracked explicitly in the lane: once a copy exists, the copy alone carries
//! the event forward, and the original's offset is finished only after the
//! copy has landed.

mod health;
mod intake;
mod lanes;
mod outcomes;
mod protocol;
mod scans;
mod writes;

#[cfg(test)]
mod limits;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

// foldhash: endpoint ids hash in a fraction of SipHash's time (see
// docs/benchmarks.md); seeded per process, like the std hasher.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;

use herald_core::breaker::Breaker;
use herald_telemetry::names;

use crate::attempt::Source;
use crate::endpoint::Prepared;
use crate::lane::Lane;

pub use protocol::{
    Action, CatchUp, Config, Control, Ctx, Directory, Input, Known, Record, Topic, Trackers, Wait,
};
pub use writes::WriteMeta;

/// The state of one partition: lanes, custody, writes, scans, health.
pub struct Partition {
    cfg: Config,
    /// Actions not yet taken by the worker.
    actions: Vec<Action>,
    /// Partition revoked: start nothing new.
    suspended: bool,
    /// Shutting down: start nothing new, drop failures.
    draining: bool,
    /// One past the highest events offset handed in (stashed or processed):
    /// anything below is a repeat after a resume in place.
    events_read_until: i64,
    /// One past the highest events offset processed.
    events_seen_until: i64,
    /// One past the highest retry offset read live.
    retry_seen_until: i64,
    /// Until the retry partition is read this far, events wait (paused).
    catch_up: CatchUp,
    /// Events records that arrived while catching up, in order.
    stash: Vec<Record>,
    lanes: HashMap<Arc<str>, Lane>,
    /// Lanes waiting because their endpoint is disabled or not known yet.
    parked: HashSet<Arc<str>>,
    /// Endpoints not in the registry, waiting for it to catch up.
    syncing: HashSet<Arc<str>>,
    /// Endpoints still unknown after the registry caught up (cleared when
    /// the registry changes): their events are dead-lettered.
    unknown: HashSet<Arc<str>>,
    /// The registry version `unknown` was built for.
    directory_version: u64,
    /// Lanes with retry records left in Kafka.
    behind: HashSet<Arc<str>>,
    /// Retry-topic offsets whose events are held (a scan never takes one
    /// of them a second time).
    retry_held: HashSet<i64>,
    /// Lanes waiting for a scan, in order.
    scan_queue: std::collections::VecDeque<Arc<str>>,
    scan_running: bool,
    /// Writes handed out and not landed yet, by id.
    writes: HashMap<u64, WriteMeta>,
    next_write: u64,
    /// Events from the events topic held (the pause cap counts these).
    held_events: usize,
    /// All events held (the gauge).
    held_all: usize,
    /// Whether the events partition is paused.
    paused: bool,
    /// Circuit breakers per endpoint (kept across lane lifetimes).
    breakers: HashMap<Arc<str>, Breaker>,
    /// Endpoints with a wake-up scheduled (open circuit, parked lane's
    /// expiry), with its time.
    wakes: HashMap<Arc<str>, i64>,
    /// Endpoints this worker disabled, with the registry version
    /// (`updated_at_ms`) they had then: not disabled again until it changes.
    disabling: HashMap<Arc<str>, i64>,
    /// Since when each endpoint has failed without a success (unix ms).
    failing_since: HashMap<Arc<str>, i64>,
    /// Jitter source (xorshift64*).
    rng: u64,
}

impl Partition {
    /// A new partition core starting with `catch_up`.
    pub fn new(cfg: Config, catch_up: CatchUp) -> Self {
        let mut p = Self {
            rng: cfg.seed | 1,
            cfg,
            actions: Vec::new(),
            suspended: false,
            draining: false,
            events_read_until: i64::MIN,
            events_seen_until: 0,
            retry_seen_until: 0,
            catch_up,
            stash: Vec::new(),
            lanes: HashMap::new(),
            parked: HashSet::new(),
            syncing: HashSet::new(),
            unknown: HashSet::new(),
            directory_version: u64::MAX,
            behind: HashSet::new(),
            retry_held: HashSet::new(),
            scan_queue: std::collections::VecDeque::new(),
            scan_running: false,
            writes: HashMap::new(),
            next_write: 0,
            held_events: 0,
            held_all: 0,
            paused: false,
            breakers: HashMap::new(),
            wakes: HashMap::new(),
            disabling: HashMap::new(),
            failing_since: HashMap::new(),
        };
        match catch_up {
            CatchUp::None => {}
            CatchUp::Until(_) => p.paused = true,
            CatchUp::Unknown => {
                p.paused = true;
                p.actions.push(Action::FetchCatchUpTarget);
            }
        }
        p
    }

    /// Applies one input.
    pub fn handle(&mut self, input: Input, ctx: &mut Ctx<'_>) {
        match input {
            Input::Record(r) => self.on_record(r, ctx),
            Input::Attempted {
                endpoint,
                event,
                batch,
                outcome,
                wait,
            } => {
                if let Some(l) = self.lanes.get_mut(&endpoint) {
                    if wait != Wait::None {
                        l.waiting = l.waiting.saturating_sub(1);
                    }
                    if wait == Wait::Long {
                        l.waiting_long = l.waiting_long.saturating_sub(1);
                    }
                }
                self.on_attempt(endpoint, event, batch, outcome, ctx);
            }
            Input::Written { id, result } => self.on_written(id, result, ctx),
            Input::Scanned { endpoint, result } => self.on_scanned(endpoint, result, ctx),
            Input::CatchUpTarget { low, high } => {
                if self.catch_up == CatchUp::Unknown {
                    // Records below the committed position (or, with none
                    // committed, below the partition's start) will never be
                    // read again: they count as read. (Without this, a
                    // partition whose retry backlog was empty waited for
                    // records that never came, its events paused for good:
                    // found by the long fleet run on tansu, where the
                    // watermark query in the rebalance callback had timed out.)
                    // With nothing committed, the consumer starts at `low`.
                    ctx.trackers.retry.start_at(low);
                    let start = ctx.trackers.retry.position().unwrap_or(low).max(low);
                    self.retry_seen_until = self.retry_seen_until.max(start);
                    self.catch_up = CatchUp::Until(high);
                    self.check_catch_up(ctx);
                }
            }
            Input::Wake(ep) => {
                self.wakes.remove(&ep);
                self.after_settle(&ep, ctx);
            }
            Input::RegistrySynced(ep, ok) => self.on_registry_synced(ep, ok, ctx),
            Input::RegistryChanged => self.unpark(ctx),
            Input::Maintain => {
                if !self.suspended && !self.draining {
                    self.maintain(ctx);
                }
            }
            Input::Suspend(s) => self.set_suspended(s, ctx),
            Input::Drain => {
                self.draining = true;
                self.actions.push(Action::AbortWaits);
            }
        }
    }

    /// Takes the actions decided so far, in order.
    pub fn poll_actions(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    /// Whether parked lanes wait for a registry change.
    pub fn has_parked(&self) -> bool {
        !self.parked.is_empty()
    }

    /// Writes handed out and not landed yet.
    pub fn writes_in_flight(&self) -> usize {
        self.writes.len()
    }

    /// Events held in memory.
    pub fn held(&self) -> usize {
        self.held_all
    }

    /// Events from the events topic held in memory (the pause cap).
    pub fn held_from_events(&self) -> usize {
        self.held_events
    }

    /// Whether `endpoint` has a lane (pending work) in this partition.
    pub fn has_lane(&self, endpoint: &str) -> bool {
        self.lanes.contains_key(endpoint)
    }

    /// Open lanes.
    pub fn lane_count(&self) -> usize {
        self.lanes.len()
    }

    /// Whether the core is suspended.
    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// Endpoints with the oldest events held (creation time, unix ms),
    /// oldest first, at most `n`; and the oldest overall.
    pub fn oldest(&self, n: usize) -> (Option<i64>, Vec<(String, i64)>) {
        let mut oldest: Vec<(String, i64)> = self
            .lanes
            .iter()
            .filter_map(|(ep, lane)| {
                let queued = lane
                    .queue
                    .front()
                    .map(|e| crate::lane::age_base_ms(&e.envelope));
                let head = lane
                    .head
                    .first()
                    .map(|(_, env)| crate::lane::age_base_ms(env));
                let created = match (queued, head) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b)?,
                };
                Some((ep.to_string(), created))
            })
            .collect();
        oldest.sort_by_key(|(_, created)| *created);
        let first = oldest.first().map(|(_, c)| *c);
        oldest.truncate(n);
        (first, oldest)
    }

    /// Events the lane of `endpoint` holds in memory (0 without a lane).
    #[cfg(test)]
    pub fn lane_held(&self, endpoint: &str) -> usize {
        self.lanes
            .get(endpoint)
            .map_or(0, |l| l.queue.len() + l.in_flight)
    }

    /// Lanes that hold more than one queued event although their endpoint
    /// takes no requests (disabled or open circuit).
    #[cfg(test)]
    pub fn overfull_held_back(&self) -> Vec<String> {
        self.lanes
            .iter()
            .filter(|(_, l)| l.held_back && !l.scanning && l.queue.len() > 1)
            .map(|(ep, l)| format!("{ep}: {} queued", l.queue.len()))
            .collect()
    }

    /// A one-line account of every lane, for test failures.
    #[cfg(test)]
    pub fn describe(&self) -> String {
        let mut out: Vec<String> = self
            .lanes
            .iter()
            .map(|(ep, l)| {
                format!(
                    "{ep}: queue {} in_flight {} waiting {} appends {} durable {} behind {:?} scanning {} copies {:?} flush_below {:?} parked {} head {:?} last_append {:?}",
                    l.queue.len(), l.in_flight, l.waiting, l.appends, l.durable, l.behind, l.scanning,
                    l.copies, l.flush_below, self.parked.contains(ep), l.head.iter().map(|h| h.0).collect::<Vec<_>>(), l.last_append
                )
            })
            .collect();
        out.sort();
        format!(
            "held {} (events {}), catch_up {:?}, paused {}, scan_running {}, scan_queue {:?}, behind {:?}, writes {}, retry_seen_until {}\n{}",
            self.held_all, self.held_events, self.catch_up, self.paused, self.scan_running, self.scan_queue,
            self.behind, self.writes.len(), self.retry_seen_until, out.join("\n")
        )
    }

    /// Lanes and held events leave the gauges (the worker stops).
    pub fn release_gauges(&self) {
        metrics::gauge!(names::LANE_EVENTS).decrement(self.held_all as f64);
        metrics::gauge!(names::LANES_OPEN).decrement(self.lanes.len() as f64);
    }

    // ----- shared helpers ---------------------------------------------------

    fn set_suspended(&mut self, suspended: bool, ctx: &mut Ctx<'_>) {
        if self.suspended == suspended {
            return;
        }
        self.suspended = suspended;
        if suspended {
            tracing::debug!(
                partition = self.cfg.partition,
                "partition revoked; suspended"
            );
            return;
        }
        // The consumer resumed both topics on re-assignment: restate ours.
        if self.paused {
            self.actions.push(Action::Control(Control::PauseEvents));
        }
        let lanes: Vec<Arc<str>> = self.lanes.keys().cloned().collect();
        for ep in lanes {
            self.after_settle(&ep, ctx);
        }
    }

    fn set_paused(&mut self, paused: bool) {
        if self.paused != paused {
            self.paused = paused;
            self.actions.push(Action::Control(if paused {
                Control::PauseEvents
            } else {
                Control::ResumeEvents
            }));
        }
    }

    /// An event entered (`+1`) or left (`-1`) custody.
    fn custody(&mut self, source: Source, delta: isize) {
        if matches!(source, Source::Events(_)) {
            self.held_events = (self.held_events as isize + delta).max(0) as usize;
        }
        self.held_all = (self.held_all as isize + delta).max(0) as usize;
        metrics::gauge!(names::LANE_EVENTS).increment(delta as f64);
    }

    /// The event's offset is done with: count it out of custody too.
    fn finish(&mut self, source: Source, ctx: &mut Ctx<'_>) {
        match source {
            Source::Events(o) => ctx.trackers.events.finished(o),
            Source::Retry(o) => {
                ctx.trackers.retry.finished(o);
                self.retry_held.remove(&o);
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

    /// What the registry says about `endpoint`.
    fn known(&mut self, endpoint: &Arc<str>, ctx: &mut Ctx<'_>) -> Known {
        let version = ctx.directory.version();
        if version != self.directory_version {
            self.unknown.clear();
            self.directory_version = version;
        }
        ctx.directory.lookup(endpoint)
    }

    fn prepared(&mut self, endpoint: &Arc<str>, ctx: &mut Ctx<'_>) -> Option<Arc<Prepared>> {
        match self.known(endpoint, ctx) {
            Known::Ready(p) => Some(p),
            Known::Deleted | Known::Unknown => None,
        }
    }

    fn ordered(&mut self, endpoint: &Arc<str>, ctx: &mut Ctx<'_>) -> bool {
        self.prepared(endpoint, ctx)
            .is_none_or(|p| p.endpoint.ordered)
    }

    /// A uniform number in [0, 1) for jitter.
    fn unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// After an event of `endpoint` settled: start more, read more, or
    /// retire the lane.
    fn after_settle(&mut self, endpoint: &Arc<str>, ctx: &mut Ctx<'_>) {
        if endpoint.is_empty() {
            return; // a poison record's dead letter: no lane
        }
        self.pump(endpoint, ctx);
        self.maybe_scan(endpoint);
        let seen = self.retry_seen_until;
        if self.lanes.get(endpoint).is_some_and(|l| l.is_done(seen)) {
            self.lanes.remove(endpoint);
            self.behind.remove(endpoint);
            self.parked.remove(endpoint);
            metrics::gauge!(names::LANES_OPEN).decrement(1.0);
        }
    }

    /// Re-checks parked lanes after a registry change.
    fn unpark(&mut self, ctx: &mut Ctx<'_>) {
        let parked: Vec<Arc<str>> = self.parked.iter().cloned().collect();
        for ep in parked {
            self.after_settle(&ep, ctx);
        }
    }

    /// Memory cap (pause/resume the events partition) and scans for lanes
    /// that have room again.
    fn maintain(&mut self, _ctx: &mut Ctx<'_>) {
        if self.catch_up == CatchUp::None {
            let cap = self.cfg.max_buffered;
            if self.held_events >= cap {
                if !self.paused {
                    metrics::counter!(names::PARTITION_PAUSES).increment(1);
                    tracing::warn!(
                        partition = self.cfg.partition,
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
