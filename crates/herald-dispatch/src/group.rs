//! Membership of the consumer group: the consumer context that owns the
//! partition workers and runs the rebalance protocol (revoke suspends a
//! worker and commits its partition; assign resumes the workers whose
//! partition came back and starts the others from the committed offsets and
//! their skip sets), reports failed commits, and publishes consumer lag.
//!
//! Rebalances: the range assignor revokes every partition on every
//! rebalance, and most come straight back. A revoked worker is therefore
//! *suspended*, not dropped: it starts nothing new but keeps its lanes and
//! lets in-flight deliveries finish. If the next assignment gives the
//! partition back, the worker resumes in place (records the consumer fetches
//! again from the committed offset are ignored), so the rebalance re-sends
//! nothing; otherwise it is cancelled then.
//!
//! "Gives the partition back" means the very next generation, as the same
//! member ([`herald_kafka::membership`]): a member that was out of the
//! group for a generation, or that the coordinator forgot, cannot know
//! what another owner did meanwhile (delivered, wrote retries, committed),
//! so its suspended workers are dropped and the partitions start again from
//! the committed offsets. An assignment librdkafka reports as lost is not
//! suspended at all.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt as _;
use herald_kafka::membership::{may_resume, Membership};
use herald_telemetry::names;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::offsets::{CommitPoint, OffsetTracker, SkipSet};
use crate::worker::{
    run_worker, CatchUp, ControlMsg, Record, Start, Trackers, WorkerIo, WorkerSettings,
};

/// Log lines keep the target they had before this module was split out of
/// `consumer`, so log filters on `herald_dispatch::consumer` still see them.
const LOG_TARGET: &str = "herald_dispatch::consumer";
/// Kafka's default `offset.metadata.max.bytes` is 4096; stay under it.
const MAX_METADATA: usize = 4000;
/// Records queued between the router and one worker.
const WORKER_CHANNEL: usize = 1024;

/// A worker that ended by panicking.
pub(crate) struct Failure {
    pub(crate) partition: i32,
    pub(crate) message: String,
}

/// A running partition worker as the consumer sees it.
pub(crate) struct WorkerHandle {
    pub(crate) generation: u64,
    pub(crate) records: mpsc::Sender<Record>,
    pub(crate) trackers: Arc<Mutex<Trackers>>,
    pub(crate) cancel: CancellationToken,
    /// `true` while the partition is revoked and may come back.
    pub(crate) suspend: watch::Sender<bool>,
    pub(crate) join: tokio::task::JoinHandle<()>,
    /// Last commit points sent (events, retry).
    pub(crate) last_commit: (Option<CommitPoint>, Option<CommitPoint>),
}

/// Consumer context: owns the workers and runs the rebalance protocol.
pub(crate) struct DispatchContext {
    pub(crate) events_topic: String,
    pub(crate) retry_topic: String,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) settings: WorkerSettings,
    pub(crate) control: mpsc::UnboundedSender<ControlMsg>,
    /// Workers of the assigned partitions.
    pub(crate) workers: Mutex<HashMap<i32, WorkerHandle>>,
    /// Workers of partitions revoked in the rebalance under way: resumed if
    /// their partition comes back, cancelled otherwise.
    pub(crate) suspended: Mutex<HashMap<i32, WorkerHandle>>,
    /// Where a worker that panicked reports it.
    pub(crate) failures: mpsc::UnboundedSender<Failure>,
    /// Bumped whenever `workers` changes, so the router refreshes its copy.
    pub(crate) generation: AtomicU64,
    /// The group watch: rejoin when the group stays unsettled too long.
    pub(crate) settle: crate::settle::SettleWatch,
    /// Sent into the group with a rejoin (see [`crate::settle::Nudge`]).
    pub(crate) nudge: crate::settle::Nudge,
    /// Events partitions kept paused for their worker (its retry backlog
    /// is read first, or its buffer is full): waking from an idle pause
    /// leaves them paused.
    pub(crate) events_held: Mutex<HashSet<i32>>,
    /// The membership (member id, generation) under which the current
    /// workers were assigned, read in the last assign callback.
    pub(crate) membership: Mutex<Option<Membership>>,
}

/// Locks `m` even if a panicking worker poisoned it: the trackers only ever
/// hold offsets that were really finished, so they stay safe to commit.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DispatchContext {
    pub(crate) fn commit_points(
        &self,
        trackers: &Mutex<Trackers>,
    ) -> (Option<CommitPoint>, Option<CommitPoint>) {
        let t = lock(trackers);
        (
            t.events.commit_point(MAX_METADATA),
            t.retry.commit_point(MAX_METADATA),
        )
    }

    pub(crate) fn add_commits(
        &self,
        tpl: &mut TopicPartitionList,
        p: i32,
        points: &(Option<CommitPoint>, Option<CommitPoint>),
    ) {
        if let Some(cp) = &points.0 {
            add_commit(tpl, &self.events_topic, p, cp);
        }
        if let Some(cp) = &points.1 {
            add_commit(tpl, &self.retry_topic, p, cp);
        }
    }

    fn start_worker(
        &self,
        consumer: &BaseConsumer<Self>,
        p: i32,
        committed: &TopicPartitionList,
    ) -> WorkerHandle {
        let read = |topic: &str| -> (Option<i64>, SkipSet) {
            committed
                .find_partition(topic, p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some((Some(o), SkipSet::decode(o, e.metadata()))),
                    _ => None,
                })
                .unwrap_or((None, SkipSet::default()))
        };
        let (events_start, events_skip) = read(&self.events_topic);
        let (mut retry_start, retry_skip) = read(&self.retry_topic);
        // The retry backlog is read before any event, so an endpoint whose
        // events wait there keeps them ahead of its new ones.
        let watermarks = consumer.fetch_watermarks(&self.retry_topic, p, Duration::from_secs(10));
        if let Ok((low, _)) = watermarks {
            // Nothing committed: the consumer starts at the first stored
            // offset, so the tracker can commit (and say what it finished
            // ahead) before its first record.
            retry_start = retry_start.or(Some(low));
        }
        let retry_catch_up = match watermarks {
            Ok((low, high)) if high > retry_start.unwrap_or(low).max(low) => CatchUp::Until(high),
            Ok(_) => CatchUp::None,
            Err(e) => {
                tracing::warn!(target: LOG_TARGET, partition = p, error = %e, "cannot read the retry watermark yet; events wait until the worker can");
                CatchUp::Unknown
            }
        };
        // librdkafka keeps an application pause across re-assignment, so set
        // the state explicitly: paused while the retry backlog is read.
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.events_topic, p);
        let r = if retry_catch_up == CatchUp::None {
            lock(&self.events_held).remove(&p);
            consumer.resume(&tpl)
        } else {
            lock(&self.events_held).insert(p);
            consumer.pause(&tpl)
        };
        if let Err(e) = r {
            tracing::warn!(target: LOG_TARGET, partition = p, error = %e, "cannot set the events partition's pause state");
        }
        let mut retry_tpl = TopicPartitionList::new();
        retry_tpl.add_partition(&self.retry_topic, p);
        let _ = consumer.resume(&retry_tpl);
        let trackers = Arc::new(Mutex::new(Trackers {
            events: OffsetTracker::resume(events_start, events_skip),
            retry: OffsetTracker::resume(retry_start, retry_skip),
        }));
        let (suspend, suspended) = watch::channel(false);
        let (tx, rx) = mpsc::channel(WORKER_CHANNEL);
        let cancel = CancellationToken::new();
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let io = WorkerIo {
            partition: p,
            generation,
            records: rx,
            trackers: trackers.clone(),
            control: self.control.clone(),
            cancel: cancel.clone(),
            suspended,
        };
        let start = Start { retry_catch_up };
        let worker = run_worker(self.settings.clone(), start, io);
        let failures = self.failures.clone();
        let join = self.runtime.spawn(async move {
            let message = match std::panic::AssertUnwindSafe(worker).catch_unwind().await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.to_string(),
                Err(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_string()),
            };
            {
                metrics::counter!(names::WORKER_FAILURES).increment(1);
                tracing::error!(target: LOG_TARGET, partition = p, %message, "partition worker failed");
                let _ = failures.send(Failure {
                    partition: p,
                    message,
                });
            }
        });
        tracing::info!(target: LOG_TARGET, partition = p, events = ?events_start, retry = ?retry_start, catch_up = ?retry_catch_up, "partition assigned");
        WorkerHandle {
            generation,
            records: tx,
            trackers,
            cancel,
            suspend,
            join,
            last_commit: (None, None),
        }
    }

    /// Gives a suspended worker its partition back: the consumer fetches
    /// again from the committed offset (the worker ignores what it has) and
    /// the worker re-applies its own pause state.
    fn resume_worker(
        &self,
        consumer: &BaseConsumer<Self>,
        p: i32,
        mut w: WorkerHandle,
    ) -> WorkerHandle {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.events_topic, p);
        tpl.add_partition(&self.retry_topic, p);
        lock(&self.events_held).remove(&p);
        if let Err(e) = consumer.resume(&tpl) {
            tracing::warn!(target: LOG_TARGET, partition = p, error = %e, "cannot set the partition's pause state");
        }
        // Commits are sent again from the new generation.
        w.last_commit = (None, None);
        let _ = w.suspend.send(false);
        metrics::counter!(names::PARTITIONS_RESUMED).increment(1);
        tracing::info!(target: LOG_TARGET, partition = p, "partition assigned back; resumed in place");
        w
    }
}

impl ClientContext for DispatchContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): consumer lag
    /// of the owned partitions of both topics, and whether the group settles.
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Some(cgrp) = &statistics.cgrp {
            self.settle
                .observe(&cgrp.join_state, std::time::Instant::now());
        }
        for (name, label) in [(&self.events_topic, "events"), (&self.retry_topic, "retry")] {
            let Some(topic) = statistics.topics.get(name.as_str()) else {
                continue;
            };
            for (p, part) in &topic.partitions {
                if *p < 0 {
                    continue; // the internal "unassigned" partition
                }
                let lag = if part.consumer_lag >= 0 {
                    part.consumer_lag as f64
                } else {
                    0.0
                };
                metrics::gauge!(names::CONSUMER_LAG, "topic" => label, "partition" => p.to_string()).set(lag);
            }
        }
    }
}

impl DispatchContext {
    /// After a failed commit of `offsets`: forget what was sent, so the next
    /// tick sends these points again even if they did not change.
    pub(crate) fn commit_failed(&self, offsets: &TopicPartitionList) {
        let mut workers = lock(&self.workers);
        for elem in offsets.elements() {
            if let Some(w) = workers.get_mut(&elem.partition()) {
                if elem.topic() == self.events_topic {
                    w.last_commit.0 = None;
                } else if elem.topic() == self.retry_topic {
                    w.last_commit.1 = None;
                }
            }
        }
    }
}

// Commits are synchronous and their results handled where they are made
// (`consumer::commit_loop`, revoke, shutdown): rust-rdkafka 0.39 does not
// deliver `commit_callback` for a StreamConsumer's manual async commits
// (fede1024/rust-rdkafka#856), so nothing relies on it.
impl ConsumerContext for DispatchContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        metrics::counter!(names::REBALANCES, "kind" => "revoke").increment(1);
        let mut commit = TopicPartitionList::new();
        let revoked = partitions(tpl);
        // Lost (the session timed out, or the coordinator fenced this
        // member): another member may own the partitions already, so
        // nothing is kept and nothing is committed over its work.
        let lost = consumer.assignment_lost();
        {
            let mut workers = lock(&self.workers);
            let mut suspended = lock(&self.suspended);
            for p in &revoked {
                let Some(w) = workers.remove(p) else { continue };
                if lost {
                    w.cancel.cancel();
                    continue;
                }
                // Starts nothing new until it is given the partition back.
                let _ = w.suspend.send(true);
                let points = self.commit_points(&w.trackers);
                self.add_commits(&mut commit, *p, &points);
                if let Some(old) = suspended.insert(*p, w) {
                    old.cancel.cancel();
                }
            }
            metrics::gauge!(names::PARTITIONS_ASSIGNED).set(workers.len() as f64);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        if commit.count() > 0 {
            let r = consumer.commit(&commit, CommitMode::Sync);
            record_commit(&r);
            if let Err(e) = r {
                tracing::warn!(target: LOG_TARGET, error = %e, "commit on revoke failed; the next owner re-sends more");
            }
        }
        if lost {
            tracing::warn!(target: LOG_TARGET, partitions = ?revoked, "assignment lost (the group moved on without this member); its unfinished work is re-sent by the next owner");
        } else {
            tracing::info!(target: LOG_TARGET, partitions = ?revoked, "partitions revoked");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        metrics::counter!(names::REBALANCES, "kind" => "assign").increment(1);
        let events: Vec<i32> = tpl
            .elements_for_topic(&self.events_topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let retry: Vec<i32> = tpl
            .elements_for_topic(&self.retry_topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        if events != retry {
            tracing::error!(target: LOG_TARGET, ?events, ?retry, "events and retry partitions are not co-assigned; check that both topics have the same partition count and every dispatcher uses the range assignor");
        }
        // Partitions that came back in the next generation resume in place;
        // the others' suspended workers are dropped (the committed offsets
        // say where to start; what was unfinished is re-sent).
        let now = Membership::of(consumer);
        let owned_under = std::mem::replace(&mut *lock(&self.membership), now.clone());
        let continuous = may_resume(owned_under.as_ref(), now.as_ref());
        let mut resumed = HashMap::new();
        {
            // An assign with no revoke before it (librdkafka rejoins without
            // one when topic metadata changes while an assignment waits for
            // the application): the workers still running were owned under
            // the previous assignment, so they are judged like suspended
            // ones, and those whose partition is gone are cancelled.
            let unrevoked: Vec<(i32, WorkerHandle)> = lock(&self.workers).drain().collect();
            let mut suspended = lock(&self.suspended);
            for (p, w) in unrevoked {
                let _ = w.suspend.send(true);
                tracing::warn!(target: LOG_TARGET, partition = p, "assignment replaced without a revoke");
                if let Some(old) = suspended.insert(p, w) {
                    old.cancel.cancel();
                }
            }
            if continuous {
                for p in &events {
                    if let Some(w) = suspended.remove(p) {
                        resumed.insert(*p, w);
                    }
                }
            }
            if !continuous && !suspended.is_empty() {
                tracing::warn!(target: LOG_TARGET, before = ?owned_under, now = ?now, partitions = ?suspended.keys().collect::<Vec<_>>(), "not the next generation of the same member: another member may have owned these partitions meanwhile; starting them again from the committed offsets");
            }
            for (p, w) in suspended.drain() {
                w.cancel.cancel();
                if continuous {
                    tracing::info!(target: LOG_TARGET, partition = p, "partition went to another member");
                }
            }
        }
        let fresh: Vec<i32> = events
            .iter()
            .copied()
            .filter(|p| !resumed.contains_key(p))
            .collect();
        let committed = if fresh.is_empty() {
            TopicPartitionList::new()
        } else {
            let mut query = TopicPartitionList::new();
            for p in &fresh {
                query.add_partition(&self.events_topic, *p);
                query.add_partition(&self.retry_topic, *p);
            }
            match consumer.committed_offsets(query, Duration::from_secs(10)) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(target: LOG_TARGET, error = %e, "could not read committed offsets; re-sending from the committed position");
                    TopicPartitionList::new()
                }
            }
        };
        let mut workers = lock(&self.workers);
        for (p, w) in resumed {
            let handle = self.resume_worker(consumer, p, w);
            if let Some(old) = workers.insert(p, handle) {
                old.cancel.cancel();
            }
        }
        for p in fresh {
            let handle = self.start_worker(consumer, p, &committed);
            if let Some(old) = workers.insert(p, handle) {
                old.cancel.cancel();
            }
        }
        metrics::gauge!(names::PARTITIONS_ASSIGNED).set(workers.len() as f64);
        drop(workers);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut ps: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    ps.sort_unstable();
    ps.dedup();
    ps
}

fn add_commit(tpl: &mut TopicPartitionList, topic: &str, partition: i32, cp: &CommitPoint) {
    if tpl
        .add_partition_offset(topic, partition, Offset::Offset(cp.offset))
        .is_ok()
    {
        if let Some(mut e) = tpl.find_partition(topic, partition) {
            e.set_metadata(cp.metadata.clone());
        }
    }
}

pub(crate) fn record_commit(r: &Result<(), KafkaError>) {
    let outcome = if r.is_ok() { "ok" } else { "error" };
    metrics::counter!(names::COMMITS, "outcome" => outcome).increment(1);
}
