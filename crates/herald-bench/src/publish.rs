//! The publishers: endpoint registration, and the three ways of sending
//! events (batches back to back, one event per call, a fixed rate), each
//! counting what Herald acknowledged.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use herald_proto::v1 as pb;
use pb::endpoint_service_client::EndpointServiceClient;
use pb::event_service_client::EventServiceClient;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::workload::{EventStream, Planned, Workload};

/// Largest gRPC message the harness sends or accepts.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// How long a freshly started node may answer UNAVAILABLE.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Event type every benchmark event carries.
const EVENT_TYPE: &str = "bench.event";

/// What the publishers counted.
#[derive(Debug, Default)]
pub struct Acks {
    /// Events Herald acknowledged.
    pub accepted: AtomicU64,
    /// Deliveries the receivers expect for them: one per accepted event to
    /// a healthy endpoint, `fanout` per accepted fan-out.
    pub accepted_healthy: AtomicU64,
    /// Items or calls Herald refused.
    pub rejected: AtomicU64,
}

/// Opens a gRPC channel to `server`.
pub async fn connect(server: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(server.to_owned())
        .with_context(|| format!("invalid server address {server:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot connect to Herald at {server}"))
}

fn events(ch: Channel) -> EventServiceClient<Channel> {
    EventServiceClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// How endpoints are registered.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The one `whsec_` secret the receivers verify with.
    pub secret: String,
    /// Ordered delivery (Herald's default).
    pub ordered: bool,
    /// Creates at once.
    pub concurrency: usize,
    /// Retry delays (empty: the node's default).
    pub retry_schedule_ms: Vec<u64>,
    /// Events per request (0: one, no batching).
    pub batch_max_events: u32,
}

/// Registers endpoints `indices` of `w`, endpoint `i` at `url(i)`; returns
/// how long it took.
pub async fn register(
    ch: &Channel,
    w: &Workload,
    indices: std::ops::Range<usize>,
    reg: &Registration,
    url: impl Fn(usize) -> String,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut set = JoinSet::new();
    for i in indices {
        if set.len() >= reg.concurrency.max(1) {
            set.join_next().await.context("create task")???;
        }
        let mut client = EndpointServiceClient::new(ch.clone());
        let req = pb::CreateEndpointRequest {
            id: w.endpoint_id(i),
            url: url(i),
            secret: reg.secret.clone(),
            ordered: Some(reg.ordered),
            description: "herald bench".into(),
            retry_schedule_ms: reg.retry_schedule_ms.clone(),
            batch_max_events: reg.batch_max_events,
            // A fan-out's endpoints subscribe to every event type of their
            // application (no `event_types`: all of them).
            app_id: w.app_id(i).unwrap_or_default(),
            ..Default::default()
        };
        set.spawn(async move {
            // A node that just started answers UNAVAILABLE until its
            // registry is loaded: retry that, as a client would.
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                match client.create_endpoint(req.clone()).await {
                    Ok(_) => return anyhow::Ok(()),
                    Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(s) => bail!("cannot create endpoint {}: {s}", req.id),
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.context("create task")??;
    }
    Ok(started.elapsed())
}

/// How events are sent.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Batches back to back, per publisher.
    Batches {
        /// Events per PublishBatch.
        batch: usize,
    },
    /// One `Publish` per event, one call in flight per publisher.
    Single,
    /// A fixed rate, in small batches every few milliseconds.
    Rate {
        /// Events per second, all publishers together.
        per_second: u64,
    },
}

/// Publishes `total` events of `w` from `publishers` publishers (each owning
/// its endpoints and its own connection); returns when all were answered.
pub async fn publish(
    server: &str,
    w: &Workload,
    publishers: usize,
    total: u64,
    pace: Pace,
    acks: Arc<Acks>,
) -> anyhow::Result<()> {
    let mut streams: Vec<EventStream> = (0..publishers)
        .filter_map(|p| EventStream::new(w, p, publishers))
        .collect();
    if streams.is_empty() {
        bail!("no publisher owns a target (endpoints: {})", w.endpoints);
    }
    let n = streams.len() as u64;
    let mut set = JoinSet::new();
    for (k, stream) in streams.drain(..).enumerate() {
        // Spread the remainder over the first publishers.
        let quota = total / n + u64::from((k as u64) < total % n);
        let ch = connect(server).await?;
        let (w, acks) = (w.clone(), acks.clone());
        let per_publisher_rate = move |r: u64| (r as f64 / n as f64).max(0.001);
        set.spawn(async move {
            match pace {
                Pace::Batches { batch } => batches(ch, &w, stream, quota, batch, None, &acks).await,
                Pace::Rate { per_second } => {
                    let rate = per_publisher_rate(per_second);
                    batches(ch, &w, stream, quota, usize::MAX, Some(rate), &acks).await
                }
                Pace::Single => single(ch, &w, stream, quota, &acks).await,
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.context("publisher task")??;
    }
    Ok(())
}

/// Sends batches one after another; with `rate`, each tick sends what the
/// rate allows since the start (so a slow call is caught up, not lost).
async fn batches(
    ch: Channel,
    w: &Workload,
    mut stream: EventStream,
    quota: u64,
    batch: usize,
    rate: Option<f64>,
    acks: &Acks,
) -> anyhow::Result<()> {
    let mut client = events(ch);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0u64;
    while sent < quota {
        let mut n = (quota - sent).min(batch.max(1) as u64);
        if let Some(r) = rate {
            tick.tick().await;
            let allowed = (started.elapsed().as_secs_f64() * r) as u64;
            n = n.min(allowed.saturating_sub(sent));
            if n == 0 {
                continue;
            }
        }
        let planned: Vec<Planned> = (0..n).map(|_| stream.next_event()).collect();
        let items = planned
            .iter()
            .map(|e| request(w, e, stream.body(e, w.payload_bytes)))
            .collect();
        let reply = client
            .publish_batch(pb::PublishBatchRequest { events: items })
            .await;
        match reply {
            Ok(r) => {
                for res in r.into_inner().results {
                    let Some(e) = planned.get(res.index as usize) else {
                        continue;
                    };
                    count(
                        acks,
                        w,
                        e,
                        matches!(res.result, Some(pb::publish_result::Result::Ok(_))),
                    );
                }
            }
            Err(status) => {
                acks.rejected.fetch_add(n, Relaxed);
                bail!("PublishBatch failed: {status}");
            }
        }
        sent += n;
    }
    Ok(())
}

/// One `Publish` call per event, each answered before the next is sent.
async fn single(
    ch: Channel,
    w: &Workload,
    mut stream: EventStream,
    quota: u64,
    acks: &Acks,
) -> anyhow::Result<()> {
    let mut client = events(ch);
    for _ in 0..quota {
        let e = stream.next_event();
        let req = request(w, &e, stream.body(&e, w.payload_bytes));
        let ok = client.publish(req).await.is_ok();
        count(acks, w, &e, ok);
    }
    Ok(())
}

fn count(acks: &Acks, w: &Workload, e: &Planned, ok: bool) {
    if ok {
        acks.accepted.fetch_add(1, Relaxed);
        if !e.dead {
            acks.accepted_healthy
                .fetch_add(w.per_target() as u64, Relaxed);
        }
    } else {
        acks.rejected.fetch_add(1, Relaxed);
    }
}

fn request(w: &Workload, e: &Planned, payload: String) -> pb::PublishRequest {
    match w.app_id(e.endpoint * w.per_target()) {
        Some(app_id) => pb::PublishRequest {
            app_id,
            event_type: EVENT_TYPE.into(),
            payload,
            ..Default::default()
        },
        None => pb::PublishRequest {
            endpoint_id: w.endpoint_id(e.endpoint),
            event_type: EVENT_TYPE.into(),
            payload,
            ..Default::default()
        },
    }
}
