//! [`TestReceiver`]: a real HTTP server (hyper 1, HTTP/1.1 and h2c) on
//! `127.0.0.1:0` that plays many webhook endpoints at once, one per path,
//! records every request it gets, and answers what a test-chosen [`Policy`]
//! says.
//!
//! Waiting is event-driven: every recorded request bumps a `watch` channel,
//! and [`TestReceiver::wait_for`] re-checks its predicate on each bump. The
//! timeout given to it is only a failure guard, never a synchronisation.
//!
//! Owns no knowledge of Herald beyond the Standard Webhooks header names
//! (for [`Recorded::webhook_id`] and [`Recorded::verify`]).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_signing::{Secret, Verifier, VerifyError};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// One request the receiver got, as it arrived.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request path, e.g. `/ep-3`.
    pub path: String,
    /// Query string without the `?`, if any.
    pub query: Option<String>,
    /// Headers, names lower-cased; repeated headers are joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The whole request body.
    pub body: Bytes,
    /// When the body had been read (before the answer was sent).
    pub at: Instant,
    /// The same moment on the wall clock, unix ms (to compare with times
    /// Herald reports, such as a scheduled event's due time).
    pub at_unix_ms: i64,
    /// 1-based: this is the n-th request to `path`.
    pub path_seq: u32,
    /// 1-based: this is the n-th request to `path` with this `webhook-id`
    /// (requests without one are counted under the empty id).
    pub id_attempt: u32,
}

impl Recorded {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The `webhook-id` header, or `""`.
    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id").unwrap_or("")
    }

    /// The body as UTF-8 text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Checks the Standard Webhooks signature against `secrets`, at `now_unix`.
    pub fn verify(&self, secrets: &[Secret], now_unix: i64) -> Result<(), VerifyError> {
        let id = self
            .header("webhook-id")
            .ok_or(VerifyError::MissingMessageId)?;
        let ts = self
            .header("webhook-timestamp")
            .ok_or(VerifyError::MissingTimestamp)?;
        let sig = self
            .header("webhook-signature")
            .ok_or(VerifyError::MissingSignature)?;
        Verifier::new(secrets.to_vec()).verify(id, ts, sig, &self.body, now_unix)
    }
}

/// What the receiver answers to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Extra response headers (e.g. `retry-after`).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Bytes,
}

impl Reply {
    /// An empty answer with `status`.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the response body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

type PolicyFn = dyn Fn(&Recorded, u32) -> Reply + Send + Sync;

/// Decides the answer to each request from the request and how many
/// requests its path has had (1-based, this one included).
#[derive(Clone)]
pub struct Policy(Arc<PolicyFn>);

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Policy(..)")
    }
}

impl Policy {
    /// A policy from a closure `(request, attempt number on its path) -> reply`.
    pub fn new(f: impl Fn(&Recorded, u32) -> Reply + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Always answers `status`.
    pub fn always(status: u16) -> Self {
        Self::new(move |_, _| Reply::status(status))
    }

    /// Answers `status` to the first `k` attempts of each `webhook-id` (per
    /// path), then 200.
    pub fn fail_first(k: u32, status: u16) -> Self {
        Self::fail_first_with(k, Reply::status(status))
    }

    /// Answers `reply` to the first `k` attempts of each `webhook-id` (per
    /// path), then 200.
    pub fn fail_first_with(k: u32, reply: Reply) -> Self {
        Self::new(move |r, _| {
            if r.id_attempt <= k {
                reply.clone()
            } else {
                Reply::status(200)
            }
        })
    }

    /// Uses `routes[path]` for the listed paths and `fallback` elsewhere.
    pub fn by_path(routes: impl IntoIterator<Item = (String, Policy)>, fallback: Policy) -> Self {
        let routes: HashMap<String, Policy> = routes
            .into_iter()
            .map(|(p, pol)| (normalise(&p), pol))
            .collect();
        Self::new(move |r, n| routes.get(&r.path).unwrap_or(&fallback).reply(r, n))
    }

    /// The answer to `r`, the `n`-th request on its path.
    pub fn reply(&self, r: &Recorded, n: u32) -> Reply {
        (self.0)(r, n)
    }
}

/// A [`TestReceiver::wait_for`] that ran out of time.
#[derive(Debug, Clone)]
pub struct WaitTimeout {
    /// How long it waited.
    pub waited: Duration,
    /// Requests recorded when it gave up.
    pub recorded: usize,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "condition not met after {:?}; the receiver had recorded {} requests",
            self.waited, self.recorded
        )
    }
}

impl std::error::Error for WaitTimeout {}

/// State shared by the server tasks and the test.
struct Shared {
    /// Every request so far, in arrival order, plus the per-path and
    /// per-(path, id) counters.
    log: Mutex<Log>,
    /// The answer policy; replaceable while running.
    policy: Mutex<Policy>,
    /// Holds the number of recorded requests; bumped after each one.
    changed: watch::Sender<usize>,
}

#[derive(Default)]
struct Log {
    all: Vec<Recorded>,
    per_path: HashMap<String, u32>,
    per_id: HashMap<(String, String), u32>,
}

/// A recording HTTP server; dropping it stops the server and closes its
/// connections.
pub struct TestReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl fmt::Debug for TestReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestReceiver")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestReceiver {
    /// Starts a receiver that answers 200 to everything.
    pub async fn start() -> std::io::Result<Self> {
        Self::with_policy(Policy::always(200)).await
    }

    /// Starts a receiver answering per `policy`.
    pub async fn with_policy(policy: Policy) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            log: Mutex::new(Log::default()),
            policy: Mutex::new(policy),
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

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/<path>` (a leading `/` in `path` is optional).
    pub fn url_for(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, normalise(path))
    }

    /// Replaces the answer policy for the requests that follow.
    pub fn set_policy(&self, policy: Policy) {
        *self.shared.policy.lock().expect("policy lock") = policy;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().expect("log lock").all.clone()
    }

    /// The requests to `path` so far, in arrival order.
    pub fn requests_for(&self, path: &str) -> Vec<Recorded> {
        let path = normalise(path);
        let log = self.shared.log.lock().expect("log lock");
        log.all.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Number of requests so far.
    pub fn count(&self) -> usize {
        self.shared.log.lock().expect("log lock").all.len()
    }

    /// Waits until `done(all requests so far)` holds, re-checking after every
    /// request; fails if it still does not hold after `timeout`.
    pub async fn wait_for(
        &self,
        mut done: impl FnMut(&[Recorded]) -> bool,
        timeout: Duration,
    ) -> Result<(), WaitTimeout> {
        let started = Instant::now();
        let mut changes = self.shared.changed.subscribe();
        let check = async {
            loop {
                // Mark the current value seen *before* checking, so a request
                // recorded after the check always wakes us.
                changes.borrow_and_update();
                if done(&self.shared.log.lock().expect("log lock").all) {
                    return;
                }
                if changes.changed().await.is_err() {
                    // The server is gone; nothing will change any more.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, check)
            .await
            .map_err(|_| WaitTimeout {
                waited: started.elapsed(),
                recorded: self.count(),
            })
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for_count(&self, n: usize, timeout: Duration) -> Result<(), WaitTimeout> {
        self.wait_for(|all| all.len() >= n, timeout).await
    }

    /// Waits until every id in `ids` has arrived (as `webhook-id`) at least once.
    pub async fn wait_for_ids<S: AsRef<str>>(
        &self,
        ids: &[S],
        timeout: Duration,
    ) -> Result<(), WaitTimeout> {
        let mut missing: std::collections::HashSet<String> =
            ids.iter().map(|s| s.as_ref().to_string()).collect();
        let mut seen = 0;
        self.wait_for(
            |all| {
                for r in &all[seen..] {
                    missing.remove(r.webhook_id());
                }
                seen = all.len();
                missing.is_empty()
            },
            timeout,
        )
        .await
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every connection.
        self.server.abort();
    }
}

/// `path` with exactly one leading `/`.
fn normalise(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

/// Serves HTTP/1.1 and h2c on `listener`, answering every request with
/// `handler`, until the task is aborted. Shared by the test receivers.
pub(crate) async fn serve_with<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let handler = handler.clone();
                connections.spawn(async move {
                    let svc = hyper::service::service_fn(handler);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The first request of each distinct `webhook-id` in `requests`, in arrival order.
pub fn first_arrivals(requests: &[Recorded]) -> Vec<&Recorded> {
    let mut seen = std::collections::HashSet::new();
    requests
        .iter()
        .filter(|r| seen.insert(r.webhook_id()))
        .collect()
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(plain(
                StatusCode::BAD_REQUEST,
                format!("body read failed: {e}"),
            ));
        }
    };
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let mut rec = Recorded {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers,
        body,
        at: Instant::now(),
        at_unix_ms: unix_ms_now(),
        path_seq: 0,
        id_attempt: 0,
    };
    let policy = shared.policy.lock().expect("policy lock").clone();
    let reply = {
        let mut log = shared.log.lock().expect("log lock");
        let n = log.per_path.entry(rec.path.clone()).or_insert(0);
        *n += 1;
        rec.path_seq = *n;
        let key = (rec.path.clone(), rec.webhook_id().to_string());
        let a = log.per_id.entry(key).or_insert(0);
        *a += 1;
        rec.id_attempt = *a;
        // Decided under the log lock, so the policy sees attempts in the order recorded.
        let reply = policy.reply(&rec, rec.path_seq);
        log.all.push(rec);
        let len = log.all.len();
        shared.changed.send_replace(len);
        reply
    };
    Ok(response(reply))
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r
}

fn response(reply: Reply) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(reply.body));
    *r.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in reply.headers {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(&v),
        ) {
            r.headers_mut().append(k, v);
        }
    }
    r
}

#[cfg(test)]
mod tests;

/// The wall clock, unix ms.
pub(crate) fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
