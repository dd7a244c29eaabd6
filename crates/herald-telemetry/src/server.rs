//! The metrics/health HTTP server and the Prometheus recorder.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::health::Health;

/// Renders the current metrics in Prometheus text format.
pub type MetricsHandle = PrometheusHandle;

/// Installs the process-wide Prometheus recorder (once; later calls return
/// a handle to the same recorder).
pub fn install_recorder() -> MetricsHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let secs = &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets(secs)
                .expect("non-empty buckets")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            crate::zeroes::register();
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds histogram samples into their buckets every few seconds until
/// `shutdown`. The recorder otherwise keeps every raw sample until the next
/// scrape, so a node that nobody scrapes would grow by a few words per
/// delivery without bound.
pub async fn upkeep(metrics: MetricsHandle, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => metrics.run_upkeep(),
        }
    }
}

fn describe() {
    use crate::names::*;
    metrics::describe_counter!(
        EVENTS_PUBLISHED,
        "Events handled by publish calls, by outcome"
    );
    metrics::describe_counter!(PUBLISH_REQUESTS, "gRPC publish calls");
    metrics::describe_histogram!(
        PUBLISH_LATENCY,
        metrics::Unit::Seconds,
        "Publish call latency"
    );
    metrics::describe_counter!(
        DELIVERY_ATTEMPTS,
        "HTTP delivery attempts by outcome and status class"
    );
    metrics::describe_histogram!(
        DELIVERY_LATENCY,
        metrics::Unit::Seconds,
        "One HTTP delivery attempt"
    );
    metrics::describe_histogram!(
        END_TO_END_LATENCY,
        metrics::Unit::Seconds,
        "Publish to successful delivery"
    );
    metrics::describe_counter!(EVENTS_DELIVERED, "Events delivered successfully");
    metrics::describe_counter!(EVENTS_SKIPPED, "Events finished without delivery");
    metrics::describe_counter!(RETRY_WRITES, "Events appended to the retry topic");
    metrics::describe_counter!(DEAD_LETTERS, "Events dead-lettered, by reason");
    metrics::describe_counter!(
        DEAD_LETTERS_REPLAYED,
        "Dead letters re-published by a replay"
    );
    metrics::describe_counter!(PARTITION_PAUSES, "Events partitions paused for memory");
    metrics::describe_counter!(
        RATE_LIMITED_WAITS,
        "Requests that waited for a rate limit or Retry-After"
    );
    metrics::describe_counter!(
        HOST_CEILING_WAITS,
        "Requests that waited for the node's ceiling on their destination host"
    );
    metrics::describe_counter!(
        AUTH_REFUSALS,
        "gRPC requests refused before any service ran, by code"
    );
    metrics::describe_counter!(REGISTRY_SKIPPED, "Registry records this node could not use");
    metrics::describe_counter!(
        SCHEDULED_MOVES,
        "Scheduled events moved when their tier's wait ended: to the events topic (due) or a shorter tier"
    );
    metrics::describe_counter!(
        FANOUT_TARGETS,
        "Fan-out targets whose type and channels matched, by what their filter made of it"
    );
    metrics::describe_counter!(
        CIRCUIT_TRANSITIONS,
        "Circuit-breaker transitions by new state"
    );
    metrics::describe_counter!(
        ENDPOINTS_AUTO_DISABLED,
        "Endpoints disabled by the dispatcher, by reason"
    );
    metrics::describe_counter!(
        ATTEMPT_LOG_DROPPED,
        "Attempt-log records dropped (producer queue full)"
    );
    metrics::describe_gauge!(
        CONSUMER_LAG,
        "Uncommitted records behind the end of owned partitions"
    );
    metrics::describe_gauge!(
        CONSUMER_LAG_SECONDS,
        "Age of the oldest event held per partition"
    );
    metrics::describe_gauge!(CIRCUITS_OPEN, "Endpoints with an open circuit on this node");
    metrics::describe_gauge!(LANE_EVENTS, "Events held in dispatcher lanes");
    metrics::describe_gauge!(LANES_OPEN, "Lanes with pending events");
    metrics::describe_gauge!(
        PARTITIONS_ASSIGNED,
        "Events-topic partitions assigned to this node"
    );
    metrics::describe_gauge!(
        DISPATCH_IDLE_PAUSED,
        "1 while the dispatcher has paused fetching for idleness"
    );
    metrics::describe_counter!(REBALANCES, "Consumer rebalance callbacks");
    metrics::describe_counter!(
        PARTITIONS_RESUMED,
        "Partitions kept in place across a rebalance"
    );
    metrics::describe_counter!(WORKER_FAILURES, "Partition workers that failed");
    metrics::describe_counter!(COMMITS, "Offset commits by outcome");
    metrics::describe_gauge!(ENDPOINTS, "Endpoints in the registry");
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown`.
pub async fn serve_http(
    listener: TcpListener,
    metrics: MetricsHandle,
    health: Health,
    worst: crate::worst::Worst,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        // A connection slot first: beyond the limit, new connections wait
        // in the kernel's backlog instead of costing memory here.
        let slot = tokio::select! {
            _ = &mut shutdown => return,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        let (stream, _peer): (_, SocketAddr) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(s) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    s
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin on an accept that keeps failing.
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "metrics server accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let health = health.clone();
        let worst = worst.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = route(&req, &metrics, &health, &worst);
                async move { Ok::<_, Infallible>(resp) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES);
            builder
                .http2()
                .timer(hyper_util::rt::TokioTimer::new())
                .max_concurrent_streams(8)
                .max_header_list_size(MAX_HEADER_BYTES as u32);
            // A scrape or probe is one short exchange: a connection that
            // lingers longer than this is closed.
            let _ = tokio::time::timeout(
                CONNECTION_LIFETIME,
                builder.serve_connection(TokioIo::new(stream), svc),
            )
            .await;
        });
    }
}

/// Open connections at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;
/// The time a client has to send its request headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The longest a connection may stay open (keep-alive included).
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);
/// The most header bytes read from a client.
const MAX_HEADER_BYTES: usize = 16 * 1024;
const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);

fn route<B>(
    req: &Request<B>,
    metrics: &MetricsHandle,
    health: &Health,
    worst: &crate::worst::Worst,
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, ctype: &'static str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("valid response")
    };
    match req.uri().path() {
        "/metrics" => text(StatusCode::OK, "text/plain; version=0.0.4", {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            metrics.render() + &worst.render(now)
        }),
        "/healthz" => text(
            StatusCode::OK,
            "application/json",
            "{\"alive\":true}".into(),
        ),
        "/readyz" => {
            let (ready, body) = health.report();
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, "application/json", body.to_string())
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn upkeep_folds_samples_without_losing_them_and_stops_on_shutdown() {
        let handle = install_recorder();
        for _ in 0..3 {
            metrics::histogram!("herald_test_upkeep_seconds").record(0.02);
        }
        // Paused time: ticks at 0 s and 5 s, then the shutdown at 6 s.
        upkeep(
            handle.clone(),
            tokio::time::sleep(std::time::Duration::from_secs(6)),
        )
        .await;
        let text = handle.render();
        assert!(
            text.contains("herald_test_upkeep_seconds_count 3"),
            "{text}"
        );
        assert!(text.contains("herald_test_upkeep_seconds_bucket{le=\"0.025\"} 3"));
    }
}
