//! Endpoints that misbehave below the level of an HTTP status, for isolation
//! tests: a [`DeadEndpoint`] (every connection is refused) and a
//! [`StallingReceiver`] that reads each request and then answers only after
//! a delay (a *slow* endpoint), never (a *hanging* one), or when the test
//! releases it (a *gated* one, to hold deliveries in flight exactly as long
//! as a test needs).
//!
//! [`crate::TestReceiver`] covers endpoints that answer at once with a chosen
//! status; this module does not replace it. The delay here is the receiver's
//! behaviour under test, never a way for a test to wait.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::WaitTimeout;

/// An address where nothing listens: connecting is refused at once.
///
/// The port stays bound (to a socket that never listens) for as long as this
/// value lives, so no other server can take it meanwhile.
pub struct DeadEndpoint {
    /// Bound, never listening: holds the port.
    _socket: TcpSocket,
    addr: SocketAddr,
}

impl fmt::Debug for DeadEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadEndpoint")
            .field("addr", &self.addr)
            .finish()
    }
}

impl DeadEndpoint {
    /// Reserves a loopback port that refuses connections.
    pub fn new() -> std::io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket.bind("127.0.0.1:0".parse().expect("valid address"))?;
        let addr = socket.local_addr()?;
        Ok(Self {
            _socket: socket,
            addr,
        })
    }

    /// The reserved address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/<path>`.
    pub fn url_for(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }
}

/// When a [`StallingReceiver`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Never: the request is read and the connection kept open, unanswered,
    /// until the client gives up.
    Forever,
    /// `200 OK` after this long.
    For(Duration),
    /// `200 OK` once the test lets it through: each request waits for one
    /// permit of [`StallingReceiver::release`], in arrival order.
    Gated,
}

/// One request a [`StallingReceiver`] got.
#[derive(Debug, Clone)]
pub struct StalledRequest {
    /// Request path.
    pub path: String,
    /// The `webhook-id` header, or `""`.
    pub webhook_id: String,
    /// When the body had been read.
    pub at: Instant,
}

struct Shared {
    stall: Stall,
    requests: Mutex<Vec<StalledRequest>>,
    answered: AtomicUsize,
    /// Permits for [`Stall::Gated`].
    gate: Semaphore,
    /// Holds the number of recorded requests; bumped after each one.
    changed: watch::Sender<usize>,
}

/// An HTTP server (HTTP/1.1 and h2c) on `127.0.0.1:0` that records every
/// request and answers per its [`Stall`]. Dropping it closes every
/// connection, answered or not.
pub struct StallingReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl fmt::Debug for StallingReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StallingReceiver")
            .field("addr", &self.addr)
            .field("stall", &self.shared.stall)
            .finish_non_exhaustive()
    }
}

impl StallingReceiver {
    /// Starts a receiver that stalls every request per `stall`.
    pub async fn start(stall: Stall) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stall,
            requests: Mutex::new(Vec::new()),
            answered: AtomicUsize::new(0),
            gate: Semaphore::new(0),
            changed: watch::channel(0).0,
        });
        let server = tokio::spawn(crate::receiver::serve_with(listener, {
            let shared = shared.clone();
            move |req| handle(req, shared.clone())
        }));
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:PORT/<path>`.
    pub fn url_for(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Every request read so far, in arrival order.
    pub fn requests(&self) -> Vec<StalledRequest> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// Waits until at least `n` requests were read; fails after `timeout`
    /// (a failure guard, not a synchronisation).
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Result<(), WaitTimeout> {
        let started = Instant::now();
        let mut changes = self.shared.changed.subscribe();
        let reached = tokio::time::timeout(timeout, async {
            changes.wait_for(|&len| len >= n).await.is_ok()
        })
        .await;
        match reached {
            Ok(true) => Ok(()),
            _ => Err(WaitTimeout {
                waited: started.elapsed(),
                recorded: self.requests().len(),
            }),
        }
    }

    /// Lets `n` more requests of a [`Stall::Gated`] receiver be answered.
    pub fn release(&self, n: usize) {
        self.shared.gate.add_permits(n);
    }

    /// Requests answered so far (always 0 for [`Stall::Forever`]).
    pub fn answered(&self) -> usize {
        self.shared.answered.load(Ordering::SeqCst)
    }
}

impl Drop for StallingReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let _ = body.collect().await;
    let webhook_id = parts
        .headers
        .get("webhook-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    shared
        .requests
        .lock()
        .expect("requests lock")
        .push(StalledRequest {
            path: parts.uri.path().to_string(),
            webhook_id,
            at: Instant::now(),
        });
    shared.changed.send_modify(|n| *n += 1);
    match shared.stall {
        Stall::Forever => std::future::pending::<()>().await,
        Stall::For(d) => tokio::time::sleep(d).await,
        Stall::Gated => {
            if let Ok(permit) = shared.gate.acquire().await {
                permit.forget();
            }
        }
    }
    shared.answered.fetch_add(1, Ordering::SeqCst);
    Ok(Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http;

    #[tokio::test]
    async fn dead_endpoint_refuses_connections() {
        let dead = DeadEndpoint::new().unwrap();
        let err = http::post(&dead.url_for("x"), &[], "{}").await.unwrap_err();
        assert!(
            format!("{err:?}").to_lowercase().contains("refused"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn hanging_receiver_reads_but_never_answers() {
        let rx = StallingReceiver::start(Stall::Forever).await.unwrap();
        let url = rx.url_for("h");
        let post =
            tokio::spawn(async move { http::post(&url, &[("webhook-id", "m1")], "{}").await });
        rx.wait_for_requests(1, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(rx.requests()[0].webhook_id, "m1");
        assert_eq!(rx.answered(), 0);
        assert!(!post.is_finished());
        post.abort();
    }

    #[tokio::test]
    async fn gated_receiver_answers_when_released() {
        let rx = Arc::new(StallingReceiver::start(Stall::Gated).await.unwrap());
        let url = rx.url_for("g");
        let post = tokio::spawn(async move { http::post(&url, &[], "{}").await });
        rx.wait_for_requests(1, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(rx.answered(), 0);
        rx.release(1);
        assert_eq!(post.await.unwrap().unwrap().status, 200);
        assert_eq!(rx.answered(), 1);
    }

    #[tokio::test]
    async fn slow_receiver_answers_after_its_delay() {
        let rx = StallingReceiver::start(Stall::For(Duration::from_millis(50)))
            .await
            .unwrap();
        let a = http::post(&rx.url_for("s"), &[], "{}").await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!((rx.requests().len(), rx.answered()), (1, 1));
    }
}
