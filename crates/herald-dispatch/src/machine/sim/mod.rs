//! A deterministic simulation of one partition: the real core, a simulated
//! Kafka (events, retry and dead-letter logs, committed offsets with
//! metadata, an in-order producer whose writes may outlive a crash),
//! simulated receivers, and simulated time. Every step is chosen by a
//! [`Chooser`], so a schedule replays exactly from its choices (or seed).
//!
//! After every step the simulation checks what must always hold:
//! - *order*: an ordered endpoint's event is never sent before each earlier
//!   one was delivered (2xx) or dead-lettered;
//! - *commits*: a restarted core never processes again a record that a
//!   commit declared finished;
//! - *memory*: events held from the events topic stay within the cap, and
//!   a lane whose endpoint is disabled or whose circuit is open holds one.
//!
//! [`World::heal_and_check`] then lets every endpoint recover and checks
//! that nothing was lost.
//!
//! - [`schedule`]: choosers, the weighted random step, running and healing.
//! - [`directory`]: the simulated registry.
//! - [`script`]: helpers for scripted scenarios.
//! - [`stops`]: crashes, rebalances, failed writes and drains.
//! - [`receive`]: the simulated receivers and their order check.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

mod directory;
mod receive;
mod schedule;
mod script;
mod stops;

use directory::SimDirectory;
pub use schedule::{Chooser, Scripted, Seeded};

use bytes::Bytes;
use herald_core::breaker::BreakerConfig;
use herald_core::schedule::RetryPolicy;
use herald_proto::v1::EventEnvelope;
use prost::Message as _;

use super::{Action, CatchUp, Config, Ctx, Input, Partition, Record, Topic, Trackers, Wait};
use crate::attempt::{Event, Source};
use crate::offsets::OffsetTracker;
use crate::scanner::ScanResult;
use crate::sink::{DeadReason, Target};

/// Metadata budget, as in production.
const MAX_METADATA: usize = 4000;

/// How a simulated receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Healthy,
    /// 503 on every request.
    Down,
    /// 503 on every other request.
    Flaky,
    /// 410 Gone: every event gives up at once, and the endpoint is disabled.
    Refusing,
}

struct Ep {
    ordered: bool,
    mode: Mode,
    enabled: bool,
}

struct InFlight {
    endpoint: Arc<str>,
    event: Event,
    /// The rest of its batch, sent in the same request.
    batch: Vec<Event>,
    due: i64,
    wait: Wait,
}

/// The world of one partition.
pub struct World<C: Chooser> {
    pub choose: C,
    now: i64,
    cfg: Config,
    eps: BTreeMap<String, Ep>,
    dir: SimDirectory,
    events: Vec<Record>,
    retry: Vec<Record>,
    dlq: Vec<EventEnvelope>,
    committed: [(Option<i64>, String); 2],
    core: Partition,
    trackers: Trackers,
    pos: [i64; 2],
    paused: bool,
    attempts: Vec<InFlight>,
    writes: VecDeque<(u64, Target, EventEnvelope)>,
    /// Writes of a crashed incarnation that land later (zombie writes).
    late: VecDeque<(Target, EventEnvelope)>,
    scans: Vec<crate::scanner::ScanRequest>,
    timers: Vec<(i64, Arc<str>)>,
    syncs: Vec<Arc<str>>,
    catch_up_asked: bool,
    /// Event id → (endpoint, index among the endpoint's events).
    published: HashMap<String, (String, usize)>,
    per_endpoint: HashMap<String, Vec<String>>,
    delivered: HashSet<String>,
    dead: HashSet<String>,
    /// Offsets a commit declared finished, per topic, for this incarnation.
    committed_done: [HashSet<i64>; 2],
    pub crashes: usize,
    pub heal_steps: usize,
    /// Print every step (`HERALD_SIM_TRACE=1`), to read a failing seed.
    trace: bool,
    pub resends: usize,
    pub sends: usize,
    /// Only graceful events: no crash, no failed write, no zombie write
    /// (rebalances and drains still happen), see [`World::graceful_only`].
    graceful: bool,
    /// Failed writes and drains are part of the random schedule.
    stops: bool,
    /// The core is draining: it must start nothing new.
    draining: bool,
    /// The core stopped on a failed write (`Action::Fatal`).
    fatal: Option<String>,
    /// Writes that failed for good, and drains.
    pub write_failures: usize,
    pub drains: usize,
    /// Requests that carried more than one event.
    pub batched_sends: usize,
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        // Short retries in memory, then long ones through the retry topic.
        schedule: [10, 40, 3_000, 3_000, 20, 3_000, 5_000, 5_000]
            .into_iter()
            .map(Duration::from_millis)
            .collect(),
        jitter: 0.2,
        max_age: Duration::from_secs(3600),
        max_retry_after: Duration::from_secs(60),
    }
}

impl<C: Chooser> World<C> {
    /// A partition with `endpoints` endpoints (some unordered).
    pub fn new(choose: C, endpoints: usize, max_lane: usize, max_buffered: usize) -> Self {
        let cfg = Config {
            partition: 0,
            in_memory_max_ms: 100,
            default_in_flight: 4,
            max_buffered,
            max_lane,
            breaker: BreakerConfig {
                failures_to_open: 5,
                cool_down_ms: 200,
            },
            disable_after_ms: 0,
            policy: policy(),
            seed: 7,
        };
        let mut eps = BTreeMap::new();
        let mut dir = SimDirectory {
            base: policy(),
            endpoints: HashMap::new(),
            lagging: HashSet::new(),
            version: 1,
            cache: HashMap::new(),
        };
        for i in 0..endpoints {
            let ordered = i % 4 != 3;
            eps.insert(
                format!("ep-{i}"),
                Ep {
                    ordered,
                    mode: Mode::Healthy,
                    enabled: true,
                },
            );
            dir.endpoints.insert(format!("ep-{i}"), (ordered, true, 1));
        }
        Self {
            choose,
            now: 1_000_000,
            core: Partition::new(cfg.clone(), CatchUp::None),
            cfg,
            eps,
            dir,
            events: Vec::new(),
            retry: Vec::new(),
            dlq: Vec::new(),
            committed: [(None, String::new()), (None, String::new())],
            // The consumer starts an uncommitted retry partition at its
            // first offset (0 here), and the worker knows it.
            trackers: Trackers {
                events: OffsetTracker::new(None),
                retry: OffsetTracker::new(Some(0)),
            },
            pos: [0, 0],
            paused: false,
            attempts: Vec::new(),
            writes: VecDeque::new(),
            late: VecDeque::new(),
            scans: Vec::new(),
            timers: Vec::new(),
            syncs: Vec::new(),
            catch_up_asked: false,
            published: HashMap::new(),
            per_endpoint: HashMap::new(),
            delivered: HashSet::new(),
            dead: HashSet::new(),
            committed_done: [HashSet::new(), HashSet::new()],
            crashes: 0,
            heal_steps: 0,
            trace: std::env::var_os("HERALD_SIM_TRACE").is_some(),
            resends: 0,
            sends: 0,
            graceful: false,
            stops: false,
            draining: false,
            fatal: None,
            write_failures: 0,
            drains: 0,
            batched_sends: 0,
        }
    }

    fn input(&mut self, input: Input) {
        if self.trace {
            match &input {
                Input::Record(r) => {
                    let id = r
                        .payload
                        .as_ref()
                        .and_then(|p| EventEnvelope::decode(p.clone()).ok())
                        .map(|e| (e.event_id, e.origin_offset));
                    eprintln!("[{}] record {:?}@{} {:?}", self.now, r.topic, r.offset, id);
                }
                Input::Attempted { event, outcome, .. } => eprintln!(
                    "[{}] attempted {} {:?} {:?}",
                    self.now, event.envelope.event_id, event.source, outcome
                ),
                Input::Written { id, result } => {
                    eprintln!("[{}] written #{id} {result:?}", self.now)
                }
                Input::Scanned { endpoint, result } => eprintln!(
                    "[{}] scanned {endpoint} {:?}",
                    self.now,
                    result.as_ref().map(|r| (
                        r.records.iter().map(|x| x.0).collect::<Vec<_>>(),
                        r.stopped_at
                    ))
                ),
                Input::Maintain => {}
                other => eprintln!("[{}] {other:?}", self.now),
            }
        }
        let mut ctx = Ctx {
            now_ms: self.now,
            trackers: &mut self.trackers,
            directory: &mut self.dir,
        };
        self.core.handle(input, &mut ctx);
        let actions: Vec<Action> = self.core.poll_actions().collect();
        for a in actions {
            self.act(a);
        }
        let overfull = self.core.overfull_held_back();
        assert!(
            overfull.is_empty(),
            "a lane whose endpoint takes no requests holds more than one event: {overfull:?}"
        );
        let held = self.core.held_from_events();
        assert!(
            held <= self.cfg.max_buffered + 1,
            "{held} events held from the events topic, cap {}",
            self.cfg.max_buffered
        );
    }

    fn act(&mut self, a: Action) {
        if self.trace {
            match &a {
                Action::Attempt {
                    event, delay_ms, ..
                } => eprintln!(
                    "    -> attempt {} {:?} in {delay_ms}",
                    event.envelope.event_id, event.source
                ),
                Action::Write {
                    id,
                    target,
                    envelope,
                } => eprintln!(
                    "    -> write #{id} {target:?} {} origin {}",
                    envelope.event_id, envelope.origin_offset
                ),
                other => eprintln!("    -> {other:?}"),
            }
        }
        match a {
            Action::Attempt {
                endpoint,
                event,
                batch,
                delay_ms,
                wait,
                ..
            } => {
                assert!(
                    !self.draining,
                    "a draining core started an attempt for {}",
                    event.envelope.event_id
                );
                for e in std::iter::once(&event).chain(&batch) {
                    let t = match e.source {
                        Source::Events(o) => (0, o),
                        Source::Retry(o) => (1, o),
                    };
                    assert!(
                        !self.committed_done[t.0].contains(&t.1),
                        "a record a commit declared finished was processed again: {:?}",
                        e.source
                    );
                }
                self.attempts.push(InFlight {
                    endpoint,
                    due: self.now + delay_ms as i64,
                    event,
                    batch,
                    wait,
                });
            }
            Action::Write {
                id,
                target,
                envelope,
            } => self.writes.push_back((id, target, envelope)),
            Action::Scan(req) => {
                assert!(!self.draining, "a draining core started a scan");
                self.scans.push(req)
            }
            Action::FetchCatchUpTarget => self.catch_up_asked = true,
            Action::WakeAt { endpoint, at_ms } => self.timers.push((at_ms, endpoint)),
            Action::SyncRegistry(ep) => self.syncs.push(ep),
            Action::Control(c) => self.paused = c == super::Control::PauseEvents,
            Action::AbortWaits | Action::Ops { .. } => {}
            Action::Disable { endpoint, .. } => {
                if let Some(e) = self.dir.endpoints.get_mut(&*endpoint) {
                    e.1 = false;
                    e.2 += 1;
                    self.dir.version += 1;
                }
                if let Some(e) = self.eps.get_mut(&*endpoint) {
                    e.enabled = false;
                }
                self.input(Input::RegistryChanged);
            }
            Action::Fatal(e) => {
                assert!(self.fatal.is_none(), "the core stopped twice: {e}");
                self.fatal = Some(e);
            }
        }
    }

    /// Publishes one event to a random endpoint.
    fn publish(&mut self) {
        let i = self.choose.pick(self.eps.len());
        let ep = self.eps.keys().nth(i).expect("endpoint").clone();
        self.publish_named(ep);
    }

    /// Appends one event for `ep` to the events log; returns its id.
    fn publish_named(&mut self, ep: String) -> String {
        let id = format!("e{}", self.events.len());
        let env = EventEnvelope {
            event_id: id.clone(),
            endpoint_id: ep.clone(),
            payload: Bytes::from_static(b"{}"),
            created_at_ms: self.now,
            ..Default::default()
        };
        let list = self.per_endpoint.entry(ep.clone()).or_default();
        self.published.insert(id.clone(), (ep.clone(), list.len()));
        list.push(id.clone());
        let offset = self.events.len() as i64;
        self.events.push(Record {
            topic: Topic::Events,
            offset,
            key: Some(Bytes::from(ep.into_bytes())),
            payload: Some(env.encode_to_vec().into()),
        });
        id
    }

    /// Hands the core its next record of `topic`, if it may have one.
    fn feed(&mut self, t: usize) -> bool {
        let log = if t == 0 { &self.events } else { &self.retry };
        if (t == 0 && self.paused) || self.pos[t] as usize >= log.len() {
            return false;
        }
        let r = log[self.pos[t] as usize].clone();
        self.pos[t] += 1;
        self.input(Input::Record(r));
        true
    }

    /// Lands the producer's oldest write.
    fn land(&mut self) {
        let Some((id, target, env)) = self.writes.pop_front() else {
            return;
        };
        let offset = self.append(target, env);
        self.input(Input::Written {
            id,
            result: Ok(offset),
        });
    }

    fn append(&mut self, target: Target, env: EventEnvelope) -> i64 {
        if self.trace {
            eprintln!(
                "[{}] lands {target:?} {} origin {}",
                self.now, env.event_id, env.origin_offset
            );
        }
        match target {
            Target::Retry => {
                let offset = self.retry.len() as i64;
                self.retry.push(Record {
                    topic: Topic::Retry,
                    offset,
                    key: Some(Bytes::from(env.endpoint_id.clone().into_bytes())),
                    payload: Some(env.encode_to_vec().into()),
                });
                offset
            }
            Target::DeadLetter(reason) => {
                // Every simulated endpoint exists: registry lag must be
                // waited out, never taken for an unknown endpoint.
                assert_ne!(
                    reason,
                    DeadReason::UnknownEndpoint,
                    "{} of {} dead-lettered as unknown while the registry lagged",
                    env.event_id,
                    env.endpoint_id
                );
                self.dead.insert(env.event_id.clone());
                self.dlq.push(env);
                self.dlq.len() as i64 - 1
            }
        }
    }

    fn scan(&mut self, k: usize) {
        let req = self.scans.swap_remove(k);
        let mut records = Vec::new();
        let mut stopped_at = None;
        for r in &self.retry[req.from as usize..(req.until as usize).min(self.retry.len())] {
            if r.key.as_deref() != Some(req.endpoint.as_bytes()) {
                continue;
            }
            if records.len() >= req.room {
                stopped_at = Some(r.offset);
                break;
            }
            records.push((r.offset, r.payload.clone().expect("value")));
        }
        let endpoint = req.endpoint.clone();
        let result = Ok(ScanResult {
            request: req,
            records,
            stopped_at,
        });
        self.input(Input::Scanned { endpoint, result });
    }

    fn commit(&mut self) {
        if self.trace {
            eprintln!(
                "[{}] commit {:?} / {:?}",
                self.now,
                self.trackers
                    .events
                    .commit_point(MAX_METADATA)
                    .map(|c| c.offset),
                self.trackers
                    .retry
                    .commit_point(MAX_METADATA)
                    .map(|c| c.offset)
            );
        }
        let cps = [
            self.trackers.events.commit_point(MAX_METADATA),
            self.trackers.retry.commit_point(MAX_METADATA),
        ];
        for (t, cp) in cps.into_iter().enumerate() {
            if let Some(cp) = cp {
                self.committed[t] = (Some(cp.offset), cp.metadata);
            }
        }
    }
}
