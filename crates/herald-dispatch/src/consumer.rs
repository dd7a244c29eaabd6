//! The consumer group side of the dispatcher: subscribes to the events and
//! retry topics (range assignor: partition N of both goes to one member),
//! starts a worker per assigned partition, routes records to it, applies
//! its pause/resume/seek requests, commits finished offsets, and hands
//! partitions over cleanly.
//!
//! Offset rule (at-least-once): auto-commit and auto-store are off; an
//! offset is committed only when every record below it is finished, with
//! the finished offsets above it in the commit metadata. On revoke the
//! revoked partitions are committed synchronously before they are given up;
//! on assign the committed offsets and metadata are read back so the new
//! worker skips what the previous owner finished.
//!
//! Rebalances and the workers' life cycle are in [`crate::group`].
//!
//! Supervision: a worker that panics is never silent. The dispatcher fails
//! readiness, drains the other partitions, commits what is finished and
//! returns an error, so the process exits and restarts from committed
//! offsets.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use herald_core::breaker::BreakerConfig;
use herald_core::config::{DispatchConfig, EndpointHealthConfig, KafkaConfig, RetryConfig};
use herald_core::endpoint::RateLimit;
use herald_core::retry::RetryRules;
use herald_delivery::Deliverer;
use herald_kafka::idle::QuietTimer;
use herald_kafka::quiet::Fetching;
use herald_registry::Registry;
use herald_registry::RegistryWriter;
use herald_telemetry::{names, Health};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::TopicPartitionList;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::attempt::AttemptContext;
use crate::attempt_log::AttemptLog;
use crate::group::{lock, record_commit, DispatchContext, Failure, WorkerHandle};
use crate::sink::Sink;
use crate::worker::{Control, ControlMsg, Record, Topic, WorkerSettings};

/// What the dispatcher needs to run.
#[derive(Clone)]
pub struct DispatchSettings {
    /// Kafka connection and topics.
    pub kafka: KafkaConfig,
    /// Dispatcher tuning.
    pub dispatch: DispatchConfig,
    /// Retry schedule and dead-lettering.
    pub retry: RetryConfig,
    /// Circuit breaker, automatic disabling, operational events.
    pub endpoint_health: EndpointHealthConfig,
    /// HTTP client settings.
    pub delivery: herald_delivery::DeliveryConfig,
    /// This node's name (client ids, logs).
    pub node_id: String,
    /// Where workers report their worst endpoints (for `/metrics`).
    pub worst: herald_telemetry::Worst,
    /// Master keys: an endpoint the dispatcher disables is written back
    /// with its secrets sealed.
    pub ring: std::sync::Arc<herald_registry::KeyRing>,
    /// `delivery.max_requests_per_host_per_second` (0 = no ceiling).
    pub max_requests_per_host: u32,
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
    /// A partition worker failed (a bug); the node must restart.
    #[error("the worker of partition {partition} failed: {message}; finished offsets were committed, restart the node")]
    WorkerFailed {
        /// The partition.
        partition: i32,
        /// The panic message.
        message: String,
    },
    /// librdkafka raised a fatal error (for example a static member fenced
    /// by another process with the same `node.id`): this node may no longer
    /// consume, so it stopped every worker without draining or committing.
    #[error("fatal Kafka consumer error: {0}; every partition worker was stopped without committing, restart the node (check that node ids are unique)")]
    Fatal(String),
}

type DispatchConsumer = StreamConsumer<DispatchContext>;

/// Runs the dispatcher until `shutdown` resolves, then drains: in-flight
/// attempts and writes finish (up to `dispatch.drain_timeout_ms`), finished
/// offsets are committed, and the consumer leaves the group.
pub async fn run_dispatcher(
    settings: DispatchSettings,
    registry: Registry,
    health: Health,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DispatchError> {
    let d = &settings.dispatch;
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (failures_tx, failures_rx) = mpsc::unbounded_channel();
    let sink = Sink::new(&settings.kafka, &settings.node_id)?;
    // Best-effort records (attempt log, operational events) on a producer of
    // their own: a slow or full attempts topic never holds up a retry or a
    // dead letter.
    let best_effort = herald_kafka::Producer::new(&herald_kafka::producer_config(
        &settings.kafka,
        &format!("herald-dispatch-log-{}", settings.node_id),
    ))?;
    // Attempts of one message share a partition (read back by message id).
    let attempt_partitions = if d.attempt_log {
        let (producer, topic) = (best_effort.clone(), settings.kafka.attempts_topic.clone());
        let counted = tokio::task::spawn_blocking(move || {
            producer.partition_count(&topic, Duration::from_secs(10))
        })
        .await;
        match counted {
            Ok(Ok(n)) => Some(n),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, topic = %settings.kafka.attempts_topic, "cannot read the attempts topic's partition count; attempts are partitioned by endpoint and `herald attempts --event MSG` (by message) may miss them");
                None
            }
            Err(_) => None,
        }
    } else {
        None
    };
    let attempts = Arc::new(AttemptContext {
        delivered: crate::attempt::DeliveredMetrics::new(),
        deliverer: Deliverer::new(settings.delivery.clone())?,
        log: d.attempt_log.then(|| {
            AttemptLog::new(
                best_effort.clone(),
                &settings.kafka.attempts_topic,
                attempt_partitions,
                &settings.node_id,
            )
        }),
        rules: RetryRules {
            final_4xx: settings.retry.final_4xx,
        },
        host_ceiling: crate::host_ceiling::HostCeiling::new(settings.max_requests_per_host),
    });
    let health_cfg = &settings.endpoint_health;
    let ops = herald_registry::Ops::new(
        best_effort,
        &settings.kafka.ops_topic,
        &settings.kafka.events_topic,
        &health_cfg.operator_endpoint,
        registry.clone(),
        &settings.node_id,
    );
    let default_rate = (d.default_rate_limit_per_second > 0).then_some(RateLimit {
        per_second: d.default_rate_limit_per_second,
        burst: if d.default_rate_limit_burst == 0 {
            d.default_rate_limit_per_second
        } else {
            d.default_rate_limit_burst
        },
    });
    let context = DispatchContext {
        events_topic: settings.kafka.events_topic.clone(),
        retry_topic: settings.kafka.retry_topic.clone(),
        runtime: tokio::runtime::Handle::current(),
        settings: WorkerSettings {
            attempts,
            registry: registry.clone(),
            sink,
            default_rate,
            breaker: BreakerConfig {
                failures_to_open: health_cfg.failures_to_open,
                cool_down_ms: health_cfg.cool_down.as_millis() as i64,
            },
            disable_after: health_cfg.disable_after,
            writer: Some(RegistryWriter::new(
                &settings.kafka,
                &settings.node_id,
                registry.clone(),
                settings.ring.clone(),
            )?),
            ops,
            kafka: settings.kafka.clone(),
            node_id: settings.node_id.clone(),
            worst: settings.worst.clone(),
            policy: settings.retry.policy(),
            in_memory_max: settings.retry.in_memory_max,
            default_in_flight: d.default_max_in_flight,
            max_buffered: d.max_buffered_per_partition,
            max_lane: d.max_buffered_per_lane,
        },
        control: control_tx,
        workers: Mutex::new(HashMap::new()),
        suspended: Mutex::new(HashMap::new()),
        failures: failures_tx,
        generation: AtomicU64::new(0),
        settle: crate::settle::SettleWatch::new(crate::settle::limit(&settings.kafka)),
        nudge: crate::settle::Nudge::new(
            &settings.kafka,
            &settings.kafka.consumer_group,
            "range",
            &[&settings.kafka.events_topic, &settings.kafka.retry_topic],
        ),
        events_held: Mutex::new(HashSet::new()),
        membership: Mutex::new(None),
    };
    health.pending("registry", "loading the endpoint registry");
    registry.wait_loaded().await;
    health.ready("registry");

    let mut config = herald_kafka::group_member_config(
        &settings.kafka,
        &settings.kafka.consumer_group,
        &format!("herald-dispatch-{}", settings.node_id),
    );
    // Partition N of the events and retry topics must go to the same member.
    config.set("partition.assignment.strategy", "range");
    if d.static_membership {
        // Range orders static members by instance id: a stable assignment.
        config.set("group.instance.id", &settings.node_id);
    }
    if !settings.kafka.client.contains_key("statistics.interval.ms") {
        config.set("statistics.interval.ms", "5000");
    }
    // Quiet partitions should not add latency (librdkafka waits up to 500 ms).
    if !settings.kafka.client.contains_key("fetch.wait.max.ms") {
        config.set("fetch.wait.max.ms", d.fetch_wait_max_ms.to_string());
    }
    let quiet_fetch_wait = herald_kafka::idle::fetch_wait(&config);
    let consumer: Arc<DispatchConsumer> = Arc::new(config.create_with_context(context)?);
    consumer.subscribe(&[&settings.kafka.events_topic, &settings.kafka.retry_topic])?;
    health.ready("dispatcher");
    tracing::info!(events = %settings.kafka.events_topic, retry = %settings.kafka.retry_topic,
        group = %settings.kafka.consumer_group, "dispatcher subscribed");

    let stop_commits = CancellationToken::new();
    let committer = tokio::spawn(commit_loop(
        consumer.clone(),
        Duration::from_millis(d.commit_interval_ms),
        stop_commits.clone(),
    ));

    // An idle node fetches in probes (kafka.idle_pause_after_ms).
    let quiet = QuietTimer::new(&settings.kafka, quiet_fetch_wait);
    metrics::gauge!(names::DISPATCH_IDLE_PAUSED).set(0.0);
    let failed = match route(&consumer, control_rx, failures_rx, quiet, shutdown).await {
        Stopped::Shutdown => None,
        Stopped::Worker(f) => Some(f),
        Stopped::Fatal(message) => {
            // Another member may own these partitions already: stop at
            // once, commit nothing, and let the next owner re-send.
            health.pending("dispatcher", format!("fatal Kafka error: {message}"));
            stop_commits.cancel();
            let _ = committer.await;
            let ctx = consumer.context();
            for (_, w) in lock(&ctx.workers)
                .drain()
                .chain(lock(&ctx.suspended).drain())
            {
                w.cancel.cancel();
            }
            tracing::error!(%message, "fatal Kafka consumer error; every partition worker stopped without committing");
            // Never destroyed: librdkafka's destroy of a fenced consumer
            // spins (see `herald_kafka::clients::dispose`).
            std::mem::forget(consumer);
            return Err(DispatchError::Fatal(message));
        }
    };

    // Drain every partition at once: close the workers' channels, let
    // in-flight work finish until the one deadline, commit, leave the group.
    tracing::info!("dispatcher draining");
    match &failed {
        Some(f) => health.pending(
            "dispatcher",
            format!("the worker of partition {} failed", f.partition),
        ),
        None => health.pending("dispatcher", "shutting down"),
    }
    stop_commits.cancel();
    let _ = committer.await;
    let ctx = consumer.context();
    let drained: Vec<(i32, WorkerHandle)> = lock(&ctx.workers).drain().collect();
    for (_, w) in lock(&ctx.suspended).drain() {
        w.cancel.cancel();
    }
    ctx.generation.fetch_add(1, Ordering::AcqRel);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(d.drain_timeout_ms);
    let finished = futures_util::future::join_all(drained.into_iter().map(|(p, w)| async move {
        drop(w.records);
        let mut join = w.join;
        if tokio::time::timeout_at(deadline, &mut join).await.is_err() {
            tracing::warn!(
                partition = p,
                "drain timeout: unfinished deliveries will be re-sent by the next owner"
            );
            w.cancel.cancel();
            let _ = join.await;
        }
        (p, w.trackers)
    }))
    .await;
    // The workers' last attempts, still in the attempt log's buffer.
    if let Some(log) = &ctx.settings.attempts.log {
        log.flush();
    }
    let mut final_commit = TopicPartitionList::new();
    for (p, trackers) in finished {
        let points = ctx.commit_points(&trackers);
        ctx.add_commits(&mut final_commit, p, &points);
    }
    if final_commit.count() > 0 {
        let c = consumer.clone();
        match tokio::task::spawn_blocking(move || c.commit(&final_commit, CommitMode::Sync)).await {
            Ok(Ok(())) => record_commit(&Ok(())),
            Ok(Err(e)) => {
                record_commit(&Err(e.clone()));
                tracing::warn!(error = %e, "final commit failed; the next owner re-sends more")
            }
            Err(e) => tracing::warn!(error = %e, "final commit task failed"),
        }
    }
    // Leaving the group runs the revoke callback (nothing left to revoke).
    let c = consumer.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || c.unsubscribe()).await {
        tracing::warn!(error = %e, "leaving the consumer group failed");
    }
    tracing::info!("dispatcher stopped");
    match failed {
        Some(f) => Err(DispatchError::WorkerFailed {
            partition: f.partition,
            message: f.message,
        }),
        None => Ok(()),
    }
}

/// Why [`route`] returned.
enum Stopped {
    Shutdown,
    /// A partition worker failed.
    Worker(Failure),
    /// librdkafka's fatal error (the consumer can no longer be used).
    Fatal(String),
}

/// Reads records and hands each to its partition's worker, and applies the
/// workers' control requests, until `shutdown`, until a worker fails, or
/// until the consumer raises a fatal error.
async fn route(
    consumer: &DispatchConsumer,
    mut control: mpsc::UnboundedReceiver<ControlMsg>,
    mut failures: mpsc::UnboundedReceiver<Failure>,
    mut quiet: QuietTimer,
    shutdown: impl Future<Output = ()>,
) -> Stopped {
    let ctx = consumer.context();
    let mut senders: HashMap<i32, (u64, mpsc::Sender<Record>)> = HashMap::new();
    let mut seen = u64::MAX;
    // The workers' generation the quiet clock last saw: a new assignment
    // fetches again and starts the quiet time anew.
    let mut quiet_seen = ctx.generation.load(Ordering::Acquire);
    tokio::pin!(shutdown);
    loop {
        let msg = tokio::select! {
            _ = &mut shutdown => return Stopped::Shutdown,
            Some(f) = failures.recv() => return Stopped::Worker(f),
            Some((p, generation, c)) = control.recv() => {
                apply_control(consumer, p, generation, c);
                continue;
            }
            () = quiet.due() => {
                let generation = ctx.generation.load(Ordering::Acquire);
                if generation != quiet_seen {
                    quiet_seen = generation;
                    quiet.assigned();
                    set_fetching(consumer, Fetching::Resume, false);
                } else if let Some(f) = quiet.tick() {
                    set_fetching(consumer, f, quiet.paused());
                }
                continue;
            }
            _ = ctx.settle.rejoin_requested() => {
                crate::settle::rejoin(consumer, &[&ctx.events_topic, &ctx.retry_topic], &ctx.nudge);
                continue;
            }
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                if let Some((code, reason)) = consumer.client().fatal_error() {
                    return Stopped::Fatal(format!("{code:?}: {reason}"));
                }
                tracing::warn!(error = %e, "consumer error");
                continue;
            }
        };
        if let Some(f) = quiet.record() {
            set_fetching(consumer, f, false);
        }
        let current = ctx.generation.load(Ordering::Acquire);
        if current != seen {
            seen = current;
            let workers = lock(&ctx.workers);
            senders = workers
                .iter()
                .map(|(p, w)| (*p, (w.generation, w.records.clone())))
                .collect();
        }
        let topic = if msg.topic() == ctx.events_topic {
            Topic::Events
        } else {
            Topic::Retry
        };
        let partition = msg.partition();
        let record = Record {
            topic,
            offset: msg.offset(),
            key: msg.key().map(Bytes::copy_from_slice),
            payload: msg.payload().map(Bytes::copy_from_slice),
        };
        drop(msg);
        let Some((_, tx)) = senders.get(&partition) else {
            tracing::warn!(
                partition,
                offset = record.offset,
                "record for a partition without a worker; it stays uncommitted"
            );
            continue;
        };
        // Workers always read their channel (they pause their partition
        // instead of refusing records), so this waits only briefly. A closed
        // channel means the partition was just revoked: the record stays
        // uncommitted and its next owner reads it again.
        let _ = tx.send(record).await;
    }
}

/// Pauses every assigned partition for idleness, or resumes them (except
/// the events partitions a worker keeps paused).
fn set_fetching(consumer: &DispatchConsumer, f: Fetching, paused: bool) {
    let ctx = consumer.context();
    let r = herald_kafka::idle::set_fetching(consumer, f, |topic, p| {
        topic == ctx.events_topic && lock(&ctx.events_held).contains(&p)
    });
    match r {
        Ok(()) => tracing::debug!(request = ?f, "idle fetching"),
        Err(e) => tracing::warn!(request = ?f, error = %e, "cannot change fetching for idleness"),
    }
    metrics::gauge!(names::DISPATCH_IDLE_PAUSED).set(if paused { 1.0 } else { 0.0 });
}

fn apply_control(consumer: &DispatchConsumer, p: i32, generation: u64, c: Control) {
    let ctx = consumer.context();
    let current = lock(&ctx.workers).get(&p).map(|w| w.generation);
    if current != Some(generation) {
        return; // from a worker that no longer owns the partition
    }
    let mut tpl = TopicPartitionList::new();
    let r = match c {
        Control::PauseEvents => {
            lock(&ctx.events_held).insert(p);
            tpl.add_partition(&ctx.events_topic, p);
            consumer.pause(&tpl)
        }
        Control::ResumeEvents => {
            lock(&ctx.events_held).remove(&p);
            tpl.add_partition(&ctx.events_topic, p);
            consumer.resume(&tpl)
        }
    };
    if let Err(e) = r {
        tracing::warn!(partition = p, request = ?c, error = %e, "consumer control request failed");
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
            let mut workers = lock(&ctx.workers);
            for (p, w) in workers.iter_mut() {
                let (e, r) = ctx.commit_points(&w.trackers);
                let changed = (
                    if e.is_some() && e != w.last_commit.0 {
                        e.clone()
                    } else {
                        None
                    },
                    if r.is_some() && r != w.last_commit.1 {
                        r.clone()
                    } else {
                        None
                    },
                );
                ctx.add_commits(&mut tpl, *p, &changed);
                if changed.0.is_some() {
                    w.last_commit.0 = e;
                }
                if changed.1.is_some() {
                    w.last_commit.1 = r;
                }
            }
        }
        if tpl.count() > 0 {
            // Synchronous, off the runtime: the result is known here (and
            // counted); one commit is in flight at a time, in tick order.
            let c = consumer.clone();
            let r = tokio::task::spawn_blocking(move || {
                let r = c.commit(&tpl, CommitMode::Sync);
                (r, tpl)
            })
            .await;
            let Ok((r, tpl)) = r else {
                tracing::warn!("offset commit task failed; sent again on the next tick");
                continue;
            };
            record_commit(&r);
            if let Err(e) = r {
                tracing::warn!(error = %e, "offset commit failed; it is sent again on the next tick");
                consumer.context().commit_failed(&tpl);
            }
        }
    }
}
