//! The consumer group side of the dispatcher: subscribes to the events
//! topic, starts a worker per assigned partition, routes records to it,
//! commits finished offsets, and hands partitions over cleanly.
//!
//! Offset rule (at-least-once): auto-commit and auto-store are off; an
//! offset is committed only when every event below it is finished, with the
//! finished offsets above it in the commit metadata. On revoke the revoked
//! partitions are committed synchronously before they are given up; on
//! assign the committed offset and metadata are read back so the new worker
//! skips what the previous owner finished.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use herald_core::backoff::Backoff;
use herald_core::config::{DispatchConfig, KafkaConfig};
use herald_core::retry::RetryRules;
use herald_delivery::Deliverer;
use herald_registry::Registry;
use herald_telemetry::{names, Health};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::attempt::AttemptContext;
use crate::offsets::{CommitPoint, OffsetTracker, SkipSet};
use crate::worker::{run_worker, Record, WorkerSettings};

/// Kafka's default `offset.metadata.max.bytes` is 4096; stay under it.
const MAX_METADATA: usize = 4000;
/// Records queued between the router and one worker.
const WORKER_CHANNEL: usize = 512;

/// What the dispatcher needs to run.
#[derive(Clone)]
pub struct DispatchSettings {
    /// Kafka connection and topics.
    pub kafka: KafkaConfig,
    /// Dispatcher tuning.
    pub dispatch: DispatchConfig,
    /// HTTP client settings.
    pub delivery: herald_delivery::DeliveryConfig,
    /// This node's name (client ids, logs).
    pub node_id: String,
}

/// The dispatcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Kafka client error.
    #[error("dispatcher Kafka client: {0}")]
    Kafka(#[from] KafkaError),
    /// HTTP client error.
    #[error("dispatcher HTTP client: {0}")]
    Delivery(#[from] herald_delivery::DeliveryError),
}

/// A running partition worker as the consumer sees it.
struct WorkerHandle {
    records: mpsc::Sender<Record>,
    tracker: Arc<Mutex<OffsetTracker>>,
    cancel: CancellationToken,
    join: tokio::task::JoinHandle<()>,
    /// Last commit point sent for this partition.
    last_commit: Option<CommitPoint>,
}

/// Consumer context: owns the workers and runs the rebalance protocol.
struct DispatchContext {
    topic: String,
    runtime: tokio::runtime::Handle,
    settings: WorkerSettings,
    workers: Mutex<HashMap<i32, WorkerHandle>>,
    /// Bumped whenever `workers` changes, so the router refreshes its copy.
    generation: AtomicU64,
}

impl ClientContext for DispatchContext {}

impl ConsumerContext for DispatchContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else { return };
        metrics::counter!(names::REBALANCES, "kind" => "revoke").increment(1);
        let mut commit = TopicPartitionList::new();
        {
            let mut workers = self.workers.lock().expect("workers lock");
            for elem in tpl.elements_for_topic(&self.topic) {
                let p = elem.partition();
                let Some(w) = workers.remove(&p) else { continue };
                w.cancel.cancel();
                let point = w.tracker.lock().expect("tracker lock").commit_point(MAX_METADATA);
                if let Some(cp) = point {
                    add_commit(&mut commit, &self.topic, p, &cp);
                }
            }
            metrics::gauge!(names::PARTITIONS_ASSIGNED).set(workers.len() as f64);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        if commit.count() > 0 {
            let r = consumer.commit(&commit, CommitMode::Sync);
            record_commit(&r);
            if let Err(e) = r {
                tracing::warn!(error = %e, "commit on revoke failed; the next owner re-sends more");
            }
        }
        tracing::info!(partitions = ?partitions(tpl), "partitions revoked");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else { return };
        metrics::counter!(names::REBALANCES, "kind" => "assign").increment(1);
        let mine = partitions(tpl);
        if mine.is_empty() {
            return;
        }
        let mut query = TopicPartitionList::new();
        for p in &mine {
            query.add_partition(&self.topic, *p);
        }
        let committed = match consumer.committed_offsets(query, Duration::from_secs(10)) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not read committed offsets; re-sending from the committed position");
                TopicPartitionList::new()
            }
        };
        let mut workers = self.workers.lock().expect("workers lock");
        for p in mine {
            let (start, metadata) = committed
                .find_partition(&self.topic, p)
                .map(|e| match e.offset() {
                    Offset::Offset(o) => (Some(o), e.metadata().to_string()),
                    _ => (None, String::new()),
                })
                .unwrap_or((None, String::new()));
            let skip = start.map(|s| SkipSet::decode(s, &metadata)).unwrap_or_default();
            let tracker = Arc::new(Mutex::new(OffsetTracker::new(start)));
            let (tx, rx) = mpsc::channel(WORKER_CHANNEL);
            let cancel = CancellationToken::new();
            let join = self.runtime.spawn(run_worker(
                p,
                self.settings.clone(),
                rx,
                tracker.clone(),
                skip,
                cancel.clone(),
            ));
            if let Some(old) = workers.insert(p, WorkerHandle { records: tx, tracker, cancel, join, last_commit: None }) {
                old.cancel.cancel();
            }
            tracing::info!(partition = p, committed = ?start, "partition assigned");
        }
        metrics::gauge!(names::PARTITIONS_ASSIGNED).set(workers.len() as f64);
        drop(workers);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

fn add_commit(tpl: &mut TopicPartitionList, topic: &str, partition: i32, cp: &CommitPoint) {
    if tpl.add_partition_offset(topic, partition, Offset::Offset(cp.offset)).is_ok() {
        if let Some(mut e) = tpl.find_partition(topic, partition) {
            e.set_metadata(cp.metadata.clone());
        }
    }
}

fn record_commit(r: &Result<(), KafkaError>) {
    let outcome = if r.is_ok() { "ok" } else { "error" };
    metrics::counter!(names::COMMITS, "outcome" => outcome).increment(1);
}

type DispatchConsumer = StreamConsumer<DispatchContext>;

/// Runs the dispatcher until `shutdown` resolves, then drains: in-flight
/// attempts finish (up to `dispatch.drain_timeout_ms`), finished offsets are
/// committed, and the consumer leaves the group.
pub async fn run_dispatcher(
    settings: DispatchSettings,
    registry: Registry,
    health: Health,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DispatchError> {
    let d = &settings.dispatch;
    let attempts = Arc::new(AttemptContext {
        deliverer: Deliverer::new(settings.delivery.clone())?,
        rules: RetryRules::default(),
        backoff: Backoff {
            initial: Duration::from_millis(d.retry_initial_ms),
            max: Duration::from_millis(d.retry_max_ms),
            jitter: 0.2,
        },
        retry_after_cap: Duration::from_millis(d.retry_max_ms),
    });
    let context = DispatchContext {
        topic: settings.kafka.events_topic.clone(),
        runtime: tokio::runtime::Handle::current(),
        settings: WorkerSettings {
            attempts,
            registry: registry.clone(),
            default_in_flight: d.default_max_in_flight,
            max_buffered: d.max_buffered_per_partition,
        },
        workers: Mutex::new(HashMap::new()),
        generation: AtomicU64::new(0),
    };
    health.pending("registry", "loading the endpoint registry");
    registry.wait_loaded().await;
    health.ready("registry");

    let config = herald_kafka::consumer_config(
        &settings.kafka,
        Some(&settings.kafka.consumer_group),
        &format!("herald-dispatch-{}", settings.node_id),
    );
    let consumer: Arc<DispatchConsumer> = Arc::new(config.create_with_context(context)?);
    consumer.subscribe(&[&settings.kafka.events_topic])?;
    health.ready("dispatcher");
    tracing::info!(topic = %settings.kafka.events_topic, group = %settings.kafka.consumer_group, "dispatcher subscribed");

    let stop_commits = CancellationToken::new();
    let committer = tokio::spawn(commit_loop(
        consumer.clone(),
        Duration::from_millis(d.commit_interval_ms),
        stop_commits.clone(),
    ));

    route(&consumer, shutdown).await;

    // Drain: close every worker's channel, let in-flight attempts finish.
    tracing::info!("dispatcher draining");
    health.pending("dispatcher", "shutting down");
    stop_commits.cancel();
    let _ = committer.await;
    let drained: Vec<(i32, WorkerHandle)> = {
        let mut workers = consumer.context().workers.lock().expect("workers lock");
        workers.drain().collect()
    };
    consumer.context().generation.fetch_add(1, Ordering::AcqRel);
    let mut final_commit = TopicPartitionList::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(d.drain_timeout_ms);
    for (p, w) in drained {
        drop(w.records);
        let mut join = w.join;
        if tokio::time::timeout_at(deadline, &mut join).await.is_err() {
            tracing::warn!(partition = p, "drain timeout: unfinished deliveries will be re-sent by the next owner");
            w.cancel.cancel();
            let _ = join.await;
        }
        if let Some(cp) = w.tracker.lock().expect("tracker lock").commit_point(MAX_METADATA) {
            add_commit(&mut final_commit, &consumer.context().topic, p, &cp);
        }
    }
    if final_commit.count() > 0 {
        let c = consumer.clone();
        let r = tokio::task::spawn_blocking(move || c.commit(&final_commit, CommitMode::Sync))
            .await
            .expect("commit task panicked");
        record_commit(&r);
        if let Err(e) = r {
            tracing::warn!(error = %e, "final commit failed; the next owner re-sends more");
        }
    }
    // Leaving the group runs the revoke callback (nothing left to revoke).
    let c = consumer.clone();
    tokio::task::spawn_blocking(move || c.unsubscribe()).await.expect("unsubscribe task panicked");
    tracing::info!("dispatcher stopped");
    Ok(())
}

/// Reads records and hands each to its partition's worker until `shutdown`.
async fn route(consumer: &DispatchConsumer, shutdown: impl Future<Output = ()>) {
    let mut senders: HashMap<i32, mpsc::Sender<Record>> = HashMap::new();
    let mut seen = u64::MAX;
    tokio::pin!(shutdown);
    loop {
        let msg = tokio::select! {
            _ = &mut shutdown => return,
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "consumer error");
                continue;
            }
        };
        let generation = consumer.context().generation.load(Ordering::Acquire);
        if generation != seen {
            seen = generation;
            let workers = consumer.context().workers.lock().expect("workers lock");
            senders = workers.iter().map(|(p, w)| (*p, w.records.clone())).collect();
        }
        let partition = msg.partition();
        let record = Record {
            offset: msg.offset(),
            key: msg.key().map(Bytes::copy_from_slice),
            payload: msg.payload().map(Bytes::copy_from_slice),
        };
        drop(msg);
        let Some(tx) = senders.get(&partition) else {
            tracing::warn!(partition, offset = record.offset, "record for a partition without a worker; it stays uncommitted");
            continue;
        };
        // A closed channel means the partition was just revoked: the record
        // stays uncommitted and its next owner reads it again.
        let _ = tx.send(record).await;
    }
}

/// Commits every partition's finished offsets each `interval`.
async fn commit_loop(consumer: Arc<DispatchConsumer>, interval: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ctx = consumer.context();
        let mut tpl = TopicPartitionList::new();
        {
            let mut workers = ctx.workers.lock().expect("workers lock");
            for (p, w) in workers.iter_mut() {
                let point = w.tracker.lock().expect("tracker lock").commit_point(MAX_METADATA);
                if point.is_some() && point != w.last_commit {
                    let cp = point.expect("checked");
                    add_commit(&mut tpl, &ctx.topic, *p, &cp);
                    w.last_commit = Some(cp);
                }
            }
        }
        if tpl.count() > 0 {
            let r = consumer.commit(&tpl, CommitMode::Async);
            record_commit(&r);
            if let Err(e) = r {
                tracing::warn!(error = %e, "offset commit failed");
            }
        }
    }
}
