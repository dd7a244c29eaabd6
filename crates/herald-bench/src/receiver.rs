//! The receivers: plain hyper HTTP/1.1 servers on loopback port 0 (several
//! ports, as if many hosts), each request's signature verified and its body
//! parsed like a real receiver would, and a ledger of what arrived.
//!
//! The ledger keeps, per endpoint, which sequence numbers were delivered
//! (answered 2xx), the highest one, and the publish → arrival latencies. A
//! delivery of `n` after a higher number was delivered, with `n` not yet
//! delivered, is an order violation; a second delivery of `n` is a
//! duplicate. Failures are injected per request (`fail_per_mille`), and a
//! fixed delay before each answer stands in for a distant receiver
//! (`--receiver-delay-ms`: one round trip of that many milliseconds).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng as _;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::workload::{unix_nanos, Stamp};
use herald_signing::{Secret, Verifier};

/// What the receivers saw, shared by every connection.
#[derive(Debug)]
pub struct Ledger {
    lanes: Vec<Mutex<Lane>>,
    /// Requests received (every attempt, failed or not).
    pub requests: AtomicU64,
    /// Distinct events delivered (first 2xx per endpoint and sequence).
    pub delivered: AtomicU64,
    /// Deliveries of an event that was already delivered.
    pub duplicates: AtomicU64,
    /// Deliveries that came after a later event of the same endpoint.
    pub order_violations: AtomicU64,
    /// Requests answered 500 on purpose.
    pub injected_failures: AtomicU64,
    /// Requests whose signature or body did not check out (answered 400).
    pub rejected: AtomicU64,
    /// Wall-clock time of the latest delivery, unix nanoseconds.
    pub last_delivery_ns: AtomicU64,
}

#[derive(Debug, Default)]
struct Lane {
    seen: Vec<u64>,
    max: Option<u64>,
    /// (publish time in unix ns, latency in µs) of every first delivery.
    latencies: Vec<(u64, u32)>,
}

impl Lane {
    fn seen(&self, seq: u64) -> bool {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        self.seen.get(w).is_some_and(|x| x & (1 << b) != 0)
    }

    fn mark(&mut self, seq: u64) {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= w {
            self.seen.resize(w + 1, 0);
        }
        self.seen[w] |= 1 << b;
    }
}

/// How one delivery compares with what the endpoint already had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First delivery, in order.
    Fresh,
    /// First delivery, but a later event was delivered before it.
    OutOfOrder,
    /// Already delivered.
    Duplicate,
}

impl Ledger {
    /// An empty ledger for `endpoints` endpoints.
    pub fn new(endpoints: usize) -> Self {
        Self {
            lanes: (0..endpoints).map(|_| Mutex::default()).collect(),
            requests: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            order_violations: AtomicU64::new(0),
            injected_failures: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
        }
    }

    /// Records a 2xx delivery of `stamp` to endpoint `endpoint` that
    /// arrived at `now_ns`.
    pub fn deliver(&self, endpoint: usize, stamp: &Stamp, now_ns: u64) -> Option<Verdict> {
        let lane = self.lanes.get(endpoint)?;
        let mut lane = lane.lock().unwrap_or_else(|p| p.into_inner());
        let verdict = if lane.seen(stamp.seq) {
            Verdict::Duplicate
        } else if lane.max.is_some_and(|m| m > stamp.seq) {
            Verdict::OutOfOrder
        } else {
            Verdict::Fresh
        };
        match verdict {
            Verdict::Duplicate => {
                self.duplicates.fetch_add(1, Relaxed);
            }
            Verdict::Fresh | Verdict::OutOfOrder => {
                if verdict == Verdict::OutOfOrder {
                    self.order_violations.fetch_add(1, Relaxed);
                }
                lane.mark(stamp.seq);
                lane.max = Some(lane.max.map_or(stamp.seq, |m| m.max(stamp.seq)));
                let us = now_ns.saturating_sub(stamp.t) / 1_000;
                lane.latencies
                    .push((stamp.t, us.min(u32::MAX as u64) as u32));
                self.delivered.fetch_add(1, Relaxed);
                self.last_delivery_ns.fetch_max(now_ns, Relaxed);
            }
        }
        Some(verdict)
    }

    /// Every first-delivery latency, microseconds, sorted.
    pub fn latencies_us(&self) -> Vec<u32> {
        self.latencies_us_published_from(0)
    }

    /// The first-delivery latencies of events published at or after
    /// `from_ns` (unix ns), microseconds, sorted.
    pub fn latencies_us_published_from(&self, from_ns: u64) -> Vec<u32> {
        let mut all = Vec::new();
        for lane in &self.lanes {
            let lane = lane.lock().unwrap_or_else(|p| p.into_inner());
            all.extend(
                lane.latencies
                    .iter()
                    .filter(|(t, _)| *t >= from_ns)
                    .map(|(_, us)| *us),
            );
        }
        all.sort_unstable();
        all
    }

    /// When the slowest first delivery was published (unix ns), if any.
    pub fn slowest_published_ns(&self) -> Option<u64> {
        self.lanes
            .iter()
            .filter_map(|lane| {
                let lane = lane.lock().unwrap_or_else(|p| p.into_inner());
                lane.latencies.iter().max_by_key(|(_, us)| *us).copied()
            })
            .max_by_key(|(_, us)| *us)
            .map(|(t, _)| t)
    }
}

/// A set of receivers sharing one ledger.
#[derive(Debug)]
pub struct Receivers {
    /// Where they listen.
    pub addrs: Vec<SocketAddr>,
    /// What they saw.
    pub ledger: Arc<Ledger>,
    tasks: JoinSet<()>,
}

impl Receivers {
    /// Starts `ports` receivers verifying with `secret`, failing
    /// `fail_per_mille` of requests with a 500 and holding every answer back
    /// for `delay` (zero: answer at once).
    pub async fn start(
        ports: usize,
        endpoints: usize,
        secret: &Secret,
        fail_per_mille: u32,
        delay: std::time::Duration,
    ) -> std::io::Result<Self> {
        let ledger = Arc::new(Ledger::new(endpoints));
        let verifier = Arc::new(Verifier::new(vec![secret.clone()]));
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::new();
        for _ in 0..ports.max(1) {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addrs.push(listener.local_addr()?);
            let (ledger, verifier) = (ledger.clone(), verifier.clone());
            tasks.spawn(accept_loop(
                listener,
                ledger,
                verifier,
                fail_per_mille,
                delay,
            ));
        }
        Ok(Self {
            addrs,
            ledger,
            tasks,
        })
    }

    /// The URL endpoint `index` is delivered to (spread over the ports).
    pub fn url_for(&self, index: usize) -> String {
        let addr = self.addrs[index % self.addrs.len()];
        format!("http://{addr}/hooks/{index}")
    }

    /// Stops every receiver.
    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}

async fn accept_loop(
    listener: TcpListener,
    ledger: Arc<Ledger>,
    verifier: Arc<Verifier>,
    fail_per_mille: u32,
    delay: std::time::Duration,
) {
    let mut conns = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely (see `ulimit -n` in
                // docs/benchmarks.md): say so once, back off.
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !WARNED.swap(true, Relaxed) {
                    eprintln!("receiver: accept failed ({e}); raise `ulimit -n`?");
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (ledger, verifier) = (ledger.clone(), verifier.clone());
        conns.spawn(async move {
            let svc = service_fn(move |req| {
                handle(req, ledger.clone(), verifier.clone(), fail_per_mille, delay)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
        while conns.try_join_next().is_some() {}
    }
}

async fn handle(
    req: Request<Incoming>,
    ledger: Arc<Ledger>,
    verifier: Arc<Verifier>,
    fail_per_mille: u32,
    delay: std::time::Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    ledger.requests.fetch_add(1, Relaxed);
    if !delay.is_zero() {
        // The request has arrived; the answer takes this long to get back.
        tokio::time::sleep(delay).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(reply(StatusCode::BAD_REQUEST));
    };
    let now_ns = unix_nanos();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let checked = verifier
        .verify_headers(header, &body, (now_ns / 1_000_000_000) as i64)
        .ok()
        .and_then(|()| crate::workload::stamps(&body));
    let Some(stamps) = checked else {
        ledger.rejected.fetch_add(1, Relaxed);
        return Ok(reply(StatusCode::BAD_REQUEST));
    };
    if fail_per_mille > 0 && rand::rng().random_range(0..1000) < fail_per_mille {
        ledger.injected_failures.fetch_add(1, Relaxed);
        return Ok(reply(StatusCode::INTERNAL_SERVER_ERROR));
    }
    // The endpoint is the URL's (`/hooks/{index}`); a fan-out's body names
    // its application instead. A batch is accepted whole, each of its
    // events recorded in order.
    let endpoint = parts
        .uri
        .path()
        .strip_prefix("/hooks/")
        .and_then(|i| i.parse::<usize>().ok());
    let mut ok = endpoint.is_some();
    for stamp in &stamps {
        ok &= endpoint.is_some_and(|i| ledger.deliver(i, stamp, now_ns).is_some());
    }
    if ok {
        Ok(reply(StatusCode::OK))
    } else {
        ledger.rejected.fetch_add(1, Relaxed);
        Ok(reply(StatusCode::BAD_REQUEST))
    }
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ep: usize, seq: u64) -> Stamp {
        Stamp { ep, seq, t: 0 }
    }

    #[test]
    fn the_ledger_tells_fresh_late_and_repeated_deliveries_apart() {
        let l = Ledger::new(3);
        assert_eq!(l.deliver(1, &stamp(1, 0), 5_000), Some(Verdict::Fresh));
        assert_eq!(l.deliver(1, &stamp(1, 2), 5_000), Some(Verdict::Fresh));
        assert_eq!(l.deliver(1, &stamp(1, 1), 5_000), Some(Verdict::OutOfOrder));
        assert_eq!(l.deliver(1, &stamp(1, 2), 5_000), Some(Verdict::Duplicate));
        assert_eq!(l.deliver(2, &stamp(2, 100), 5_000), Some(Verdict::Fresh));
        assert_eq!(l.deliver(9, &stamp(9, 0), 5_000), None, "unknown endpoint");
        assert_eq!(l.delivered.load(Relaxed), 4);
        assert_eq!(l.duplicates.load(Relaxed), 1);
        assert_eq!(l.order_violations.load(Relaxed), 1);
        assert_eq!(l.latencies_us(), vec![5; 4]);
    }
}
