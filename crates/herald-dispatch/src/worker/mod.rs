//! The task that owns one assigned partition: partition N of the events
//! topic and partition N of the retry topic (the consumer group's range
//! assignor keeps them together).
//!
//! A thin shell around the partition's [`machine::Partition`]: it feeds the
//! core records, attempt results, write acknowledgements, scan results,
//! timers and registry changes, and carries out what the core asks for —
//! attempts (paced per endpoint, signed, sent), writes handed to the
//! producer strictly in order, scans of the retry partition, wake-ups,
//! registry syncs, pause/resume requests, operational events and disabling
//! endpoints. Deliveries and writes run as futures inside this task: no
//! per-event spawn and no locks shared with other partitions.
//!
//! While *suspended* (partition revoked, the rebalance not settled yet) the
//! core starts nothing new; in-flight work finishes. Stops when *cancelled*
//! (partition gone to another member: everything is dropped and the next
//! owner re-sends what was unfinished), *drained* (record channel closed at
//! shutdown: in-flight attempts and writes finish, nothing new starts), or
//! on a fatal write error.
//!
//! [`kafka`] holds the write FIFO, the retry partition's reader and registry
//! syncs.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::{HashMap, HashMapExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
use herald_core::breaker::BreakerConfig;
use herald_core::endpoint::RateLimit;
use herald_core::schedule::RetryPolicy;
use herald_core::time::now_ms;
use herald_proto::v1::EventEnvelope;
use herald_registry::ops::Ops;
use herald_registry::{Lookup, Registry, RegistryWriter};
use herald_telemetry::names;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::attempt::{AttemptContext, Freshness};
use crate::endpoint::Prepared;
use crate::machine::{self, Action, Ctx, Directory, Input, Known, Partition};
use crate::rate::Pacer;
use crate::scanner::Scanner;
use crate::sink::{Sink, Target};

mod kafka;

pub use crate::machine::{CatchUp, Control, Record, Topic, Trackers};

/// A control request tagged with the partition and the worker generation.
pub type ControlMsg = (i32, u64, Control);

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

/// A worker stopped because it cannot go on without risking a loss or a
/// reordering; the node must restart from committed offsets.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A retry or dead-letter write failed for good.
    #[error("a retry/dead-letter write failed: {0}")]
    Write(String),
}

type Job = Pin<Box<dyn Future<Output = Done> + Send>>;

/// A finished job of the worker.
#[allow(clippy::large_enum_variant)] // one per finished job, never stored in bulk
enum Done {
    /// Something for the core.
    Input(Input),
    /// The producer queue had room again: hand over the FIFO's head again.
    WriteRetry,
}

/// The registry, prepared for delivery, cached per registry version.
struct RegistryDirectory {
    registry: Registry,
    policy: RetryPolicy,
    version: u64,
    cache: HashMap<Arc<str>, Known>,
}

impl Directory for RegistryDirectory {
    fn lookup(&mut self, endpoint: &str) -> Known {
        let version = self.registry.version();
        if version != self.version {
            self.cache.clear();
            self.version = version;
        }
        if let Some(k) = self.cache.get(endpoint) {
            return k.clone();
        }
        let known = match self.registry.lookup(endpoint) {
            Lookup::Found(e) => Known::Ready(Arc::new(Prepared::new(e, &self.policy))),
            Lookup::Deleted => Known::Deleted,
            // Not cached: the registry may learn it any moment.
            Lookup::Unknown => return Known::Unknown,
        };
        self.cache.insert(endpoint.into(), known.clone());
        known
    }

    fn version(&self) -> u64 {
        self.registry.version()
    }
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
    let cfg = machine::Config {
        partition,
        in_memory_max_ms: settings.in_memory_max.as_millis() as i64,
        default_in_flight: settings.default_in_flight,
        max_buffered: settings.max_buffered,
        max_lane: settings.max_lane,
        breaker: settings.breaker,
        disable_after_ms: settings.disable_after.as_millis() as i64,
        policy: settings.policy.clone(),
        seed: rand::random(),
    };
    let mut w = Worker {
        core: Partition::new(cfg, start.retry_catch_up),
        directory: RegistryDirectory {
            registry: settings.registry.clone(),
            policy: settings.policy.clone(),
            version: u64::MAX,
            cache: HashMap::new(),
        },
        partition,
        generation,
        control,
        drain: CancellationToken::new(),
        trackers,
        settings,
        scanner: None,
        pending: VecDeque::new(),
        write_blocked: false,
        pacers: HashMap::new(),
        worst_reported: std::time::Instant::now(),
        jobs: FuturesUnordered::new(),
        fatal: None,
    };
    w.execute();
    let mut registry_changes = w.settings.registry.progress();
    let mut draining = false;
    // The lag gauge and worst endpoints age while events wait, even when
    // nothing wakes the worker (a head stuck in a long attempt): a tick while
    // it holds events. Reported once at start, so an idle partition reads 0.
    let mut age_tick = tokio::time::interval(Duration::from_secs(1));
    age_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    w.report_worst();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(done) = w.jobs.next(), if !w.jobs.is_empty() => match done {
                Done::Input(i) => w.step(i),
                Done::WriteRetry => {
                    w.write_blocked = false;
                    w.flush_writes();
                }
            },
            rec = records.recv(), if !draining => match rec {
                Some(r) => {
                    // Tests make a worker panic here (feature `failpoints`).
                    fail::fail_point!("dispatch-worker-record");
                    w.step(Input::Record(r))
                }
                None => {
                    draining = true;
                    w.step(Input::Drain);
                }
            },
            Ok(()) = registry_changes.changed(), if w.core.has_parked() => w.step(Input::RegistryChanged),
            Ok(()) = suspended.changed() => {
                let now = *suspended.borrow_and_update();
                w.step(Input::Suspend(now));
            }
            _ = age_tick.tick(), if w.core.lane_count() > 0 => {}
        }
        if w.fatal.is_some() {
            break;
        }
        if draining {
            // Writes still queued must land before the worker may stop.
            if w.jobs.is_empty() && w.pending.is_empty() {
                break;
            }
            if w.jobs.is_empty() {
                w.write_blocked = false;
                w.flush_writes();
            }
        } else if !w.core.is_suspended() {
            w.step(Input::Maintain);
            w.report_worst();
        }
    }
    w.core.release_gauges();
    w.settings.worst.report(partition, Vec::new());
    tracing::debug!(partition, held = w.core.held(), "partition worker stopped");
    match w.fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct Worker {
    core: Partition,
    directory: RegistryDirectory,
    partition: i32,
    generation: u64,
    control: mpsc::UnboundedSender<ControlMsg>,
    settings: WorkerSettings,
    /// Fired when draining: aborts attempts still waiting out a delay.
    drain: CancellationToken,
    trackers: Arc<Mutex<Trackers>>,
    /// Reader for records lanes left behind (created on first use).
    scanner: Option<Scanner>,
    /// Writes not yet handed to the producer, in decision order.
    pending: VecDeque<(u64, Target, EventEnvelope)>,
    /// The producer queue was full: wait for `Done::WriteRetry`.
    write_blocked: bool,
    /// Pacing per endpoint (kept across lane lifetimes).
    pacers: HashMap<Arc<str>, Arc<Pacer>>,
    /// When the worst endpoints were last reported.
    worst_reported: std::time::Instant,
    jobs: FuturesUnordered<Job>,
    /// Set when the worker must stop (a write failed for good).
    fatal: Option<WorkerError>,
}

impl Worker {
    /// Feeds one input to the core and carries out what it decided.
    fn step(&mut self, input: Input) {
        {
            let trackers = self.trackers.clone();
            let mut t = trackers.lock().unwrap_or_else(|e| e.into_inner());
            let mut ctx = Ctx {
                now_ms: now_ms(),
                trackers: &mut t,
                directory: &mut self.directory,
            };
            self.core.handle(input, &mut ctx);
        }
        self.execute();
    }

    fn execute(&mut self) {
        let actions: Vec<Action> = self.core.poll_actions().collect();
        for a in actions {
            match a {
                Action::Attempt {
                    endpoint,
                    prepared,
                    event,
                    batch,
                    delay_ms,
                    wait,
                } => {
                    let ctx = self.settings.attempts.clone();
                    let drain = self.drain.clone();
                    let pacer = self.pacer(&prepared);
                    let fresh = Freshness {
                        registry: self.settings.registry.clone(),
                        version: self.directory.version,
                    };
                    let delay = Duration::from_millis(delay_ms);
                    self.jobs.push(Box::pin(async move {
                        let (event, batch, outcome) = ctx
                            .run(prepared, pacer, event, batch, delay, drain, fresh)
                            .await;
                        Done::Input(Input::Attempted {
                            endpoint,
                            event,
                            batch,
                            outcome,
                            wait,
                        })
                    }));
                }
                Action::Write {
                    id,
                    target,
                    envelope,
                } => {
                    self.pending.push_back((id, target, envelope));
                    self.flush_writes();
                }
                Action::Scan(req) => {
                    let endpoint = req.endpoint.clone();
                    let Some(scanner) = self.scanner() else {
                        let input = Input::Scanned {
                            endpoint,
                            result: Err("cannot create the retry scanner".into()),
                        };
                        self.jobs.push(Box::pin(async move {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            Done::Input(input)
                        }));
                        continue;
                    };
                    self.jobs.push(Box::pin(async move {
                        let result = tokio::task::spawn_blocking(move || scanner.scan(req))
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r.map_err(|e| e.to_string()));
                        Done::Input(Input::Scanned { endpoint, result })
                    }));
                }
                Action::FetchCatchUpTarget => self.fetch_catch_up_target(),
                Action::WakeAt { endpoint, at_ms } => {
                    let wait = Duration::from_millis((at_ms - now_ms()).max(0) as u64);
                    self.jobs.push(Box::pin(async move {
                        tokio::time::sleep(wait).await;
                        Done::Input(Input::Wake(endpoint))
                    }));
                }
                Action::SyncRegistry(endpoint) => self.sync_registry(endpoint),
                Action::Control(c) => {
                    let _ = self.control.send((self.partition, self.generation, c));
                }
                Action::AbortWaits => self.drain.cancel(),
                Action::Ops {
                    kind,
                    endpoint,
                    detail,
                } => self.settings.ops.emit(kind, &endpoint, detail),
                Action::Disable {
                    endpoint,
                    reason,
                    detail,
                } => self.disable(endpoint, reason, detail),
                Action::Fatal(e) => self.fatal = Some(WorkerError::Write(e)),
            }
        }
    }

    /// The pacer of `endpoint`, rebuilt when its rate limit changed.
    fn pacer(&mut self, prepared: &Prepared) -> Arc<Pacer> {
        let limit = prepared.endpoint.rate_limit.or(self.settings.default_rate);
        let key: Arc<str> = prepared.endpoint.id.as_str().into();
        match self.pacers.get(&key) {
            Some(p) if p.base() == limit => p.clone(),
            _ => {
                if self.pacers.len() > 10_000 {
                    // Endpoints without pending work: forget their pacers
                    // (those with a lane keep their Retry-After hold and
                    // slow-down).
                    let core = &self.core;
                    self.pacers.retain(|k, _| core.has_lane(k));
                }
                let p = Arc::new(Pacer::new(limit));
                self.pacers.insert(key, p.clone());
                p
            }
        }
    }

    /// Disables `endpoint` in the registry, telling operators why.
    fn disable(&mut self, endpoint: Arc<str>, reason: &'static str, detail: String) {
        let Some(writer) = self.settings.writer.clone() else {
            return;
        };
        let registry = self.settings.registry.clone();
        let ops = self.settings.ops.clone();
        tokio::spawn(async move {
            let Some(current) = registry.get(&endpoint) else {
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
                    tracing::warn!(endpoint_id = %endpoint, reason, %detail, "endpoint disabled");
                    ops.emit(
                        herald_registry::ops::kind::ENDPOINT_DISABLED,
                        &endpoint,
                        serde_json::json!({"reason": reason, "detail": detail}),
                    );
                }
                Err(e) => {
                    tracing::error!(endpoint_id = %endpoint, error = %e, "cannot disable endpoint")
                }
            }
        });
    }

    /// Reports this partition's endpoints with the oldest events (at most
    /// once a second, or at once when idle).
    fn report_worst(&mut self) {
        let idle_now = self.core.lane_count() == 0;
        if !idle_now && self.worst_reported.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.worst_reported = std::time::Instant::now();
        let (oldest, worst) = self.core.oldest(self.settings.worst.n());
        let age = oldest.map_or(0.0, |created| (now_ms() - created).max(0) as f64 / 1000.0);
        metrics::gauge!(names::CONSUMER_LAG_SECONDS, "partition" => self.partition.to_string())
            .set(age);
        self.settings.worst.report(self.partition, worst);
    }
}
