//! The machine's raw limit, measured in the same run: a plain hyper client
//! posts the same signed bodies to the same kind of receivers with the same
//! concurrency (one keep-alive connection per ordered lane), with no Kafka
//! and no Herald in between.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::receiver::Receivers;
use crate::workload::{body, unix_nanos, Planned};
use herald_signing::{Secret, Signer};

/// What the baseline measured.
#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    /// Requests answered 2xx per second.
    pub per_second: f64,
    /// Requests sent.
    pub requests: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// CPU seconds the client spent (its own runtime's threads; the
    /// receivers are not counted).
    pub client_cpu_secs: f64,
}

/// Name prefix of the client runtime's threads.
const CLIENT_THREADS: &str = "bench-raw-http";

/// Posts `requests` bodies of `payload_bytes` round robin over `endpoints`
/// endpoints of `rx`, over `concurrency` keep-alive connections (one
/// request in flight each, as an ordered lane), each body signed with
/// `secret`.
pub async fn run(
    rx: &Receivers,
    endpoints: usize,
    requests: u64,
    payload_bytes: usize,
    concurrency: usize,
    secret: &Secret,
) -> anyhow::Result<Baseline> {
    // The client gets a runtime of its own (as Herald is a process of its
    // own), so its CPU can be told apart from the receivers'.
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT_THREADS)
        .enable_all()
        .build()
        .context("cannot start the baseline client's runtime")?;
    let addrs = rx.addrs.clone();
    let secret = secret.clone();
    let cpu_before = crate::target::threads_cpu_secs(CLIENT_THREADS)?;
    let started = Instant::now();
    let posted = client
        .spawn(post_all(
            addrs,
            endpoints,
            requests,
            payload_bytes,
            concurrency,
            secret,
        ))
        .await;
    let elapsed = started.elapsed();
    // Read before the runtime's threads exit.
    let client_cpu_secs = crate::target::threads_cpu_secs(CLIENT_THREADS)? - cpu_before;
    client.shutdown_background();
    let done = posted.context("baseline client")??;
    Ok(Baseline {
        per_second: done as f64 / elapsed.as_secs_f64().max(1e-9),
        requests: done,
        elapsed,
        client_cpu_secs,
    })
}

/// The client's work: `requests` posts over `concurrency` connections; the
/// number answered 2xx.
async fn post_all(
    addrs: Vec<std::net::SocketAddr>,
    endpoints: usize,
    requests: u64,
    payload_bytes: usize,
    concurrency: usize,
    secret: Secret,
) -> anyhow::Result<u64> {
    let signer = Arc::new(Signer::new(vec![secret]));
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let endpoints = endpoints.max(1) as u64;
    let mut set = JoinSet::new();
    for c in 0..concurrency.max(1) {
        let addr = addrs[c % addrs.len()];
        let (signer, next, ok) = (signer.clone(), next.clone(), ok.clone());
        set.spawn(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut send, conn) = http1::handshake(TokioIo::new(stream)).await?;
            let conn = tokio::spawn(conn);
            let mut pad = String::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= requests {
                    break;
                }
                let e = Planned {
                    endpoint: (i % endpoints) as usize,
                    seq: i / endpoints,
                    dead: false,
                };
                let b = body(&e, unix_nanos(), payload_bytes, &mut pad);
                let id = format!("base_{i}");
                let ts = (unix_nanos() / 1_000_000_000) as i64;
                let sig = signer.signature_header(&id, ts, b.as_bytes());
                let req = Request::post(format!("/hooks/{}", e.endpoint))
                    .header("host", addr.to_string())
                    .header("content-type", "application/json")
                    .header("webhook-id", id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", sig)
                    .body(Full::new(Bytes::from(b)))?;
                send.ready().await.context("baseline connection")?;
                let resp = send.send_request(req).await.context("baseline request")?;
                if resp.status().is_success() {
                    ok.fetch_add(1, Relaxed);
                }
                resp.into_body().collect().await?;
            }
            drop(send);
            let _ = conn.await;
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.context("baseline task")??;
    }
    Ok(ok.load(Relaxed))
}
