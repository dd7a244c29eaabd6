//! [`Pool`]: the keep-alive connections every delivery attempt shares, and sending one
//! request over them.
//!
//! Owns which connection an attempt uses, when an idle one is reused or closed, and the
//! protocol of each connection:
//!
//! - **HTTP/1** (every `http://` endpoint, and `https://` ones whose TLS did not
//!   negotiate `h2`): a connection serves one attempt at a time and is driven by that
//!   attempt's own task ([`crate::drive`]), then goes back to its origin's idle list. No
//!   task per connection and no channel hop per request: on a host with many endpoints
//!   this is where most of the client's CPU went.
//! - **HTTP/2** (TLS negotiated `h2`): one shared connection per origin, driven by a task
//!   of its own, since many attempts use it at once.
//!
//! A request that never reached a reused connection (it had been closed while idle) is
//! sent again on another connection, once per stale connection; on a new connection a
//! failure is final. Connections go through [`crate::client::Connector`], so the egress
//! policy, the proxy and TLS apply to every one.

use std::collections::HashMap;
use std::fmt;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::connect::Connection as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower_service::Service as _;

use crate::client::Connector;
use crate::drive::{drive, poll_once};
use crate::idle::IdleList;
use crate::outcome::{connect_error, request_error, AttemptError};

type Body = Full<Bytes>;
type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Scheme and authority of an endpoint URL: connections are shared per origin.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Origin {
    https: bool,
    authority: Authority,
}

impl Origin {
    fn of(uri: &Uri) -> Result<Origin, AttemptError> {
        let authority = uri.authority().cloned().ok_or_else(|| {
            AttemptError::InvalidRequest(format!("endpoint URL {uri} has no host"))
        })?;
        Ok(Origin {
            https: uri.scheme() == Some(&Scheme::HTTPS),
            authority,
        })
    }
}

/// An HTTP/1 connection: the handle requests are sent through, and the future that does
/// its socket work (`None` once it ended: dropped, see [`drive`]).
struct H1 {
    sender: http1::SendRequest<Body>,
    conn: Option<http1::Connection<Io, Body>>,
    /// The `Host` header for its origin, built once per connection.
    host: HeaderValue,
}

impl H1 {
    /// Whether it can take a request now. Polls the connection once, so it notices what
    /// arrived while nobody polled it (the other side closed, or sent something unasked).
    async fn is_usable(&mut self) -> bool {
        poll_once(&mut self.conn).await && self.sender.is_ready()
    }
}

/// What the pool keeps for one origin.
#[derive(Default)]
struct Host {
    idle: IdleList<Box<H1>>,
    h2: Option<http2::SendRequest<Body>>,
}

/// A connection checked out for one request.
enum Conn {
    /// Boxed: hyper's connection state is large (nearly 2 KiB), and is moved in and out
    /// of the pool on every request.
    H1(Box<H1>),
    H2(http2::SendRequest<Body>),
}

/// The shared pool. Cloning is cheap; clones share the connections.
#[derive(Clone)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    connector: Connector,
    hosts: Mutex<HashMap<Origin, Host>>,
    max_idle_per_host: usize,
    idle_timeout: Duration,
    /// The sweeper task runs (started on first use, where a runtime exists).
    sweeping: AtomicBool,
}

impl Shared {
    fn hosts(&self) -> MutexGuard<'_, HashMap<Origin, Host>> {
        // Nothing is left half-done under this lock, so a panic elsewhere cannot leave
        // the map inconsistent.
        self.hosts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes connections idle for `idle_timeout` and HTTP/2 connections that ended;
    /// forgets origins with nothing left.
    fn sweep(&self, now: Instant) {
        let mut hosts = self.hosts();
        hosts.retain(|_, host| {
            host.idle.expire(now, self.idle_timeout);
            if host.h2.as_ref().is_some_and(http2::SendRequest::is_closed) {
                host.h2 = None;
            }
            !host.idle.is_empty() || host.h2.is_some()
        });
    }
}

impl Pool {
    /// A pool connecting through `connector`, keeping at most `max_idle_per_host` idle
    /// HTTP/1 connections per origin, each for at most `idle_timeout`. Needs no runtime.
    pub(crate) fn new(
        connector: Connector,
        max_idle_per_host: usize,
        idle_timeout: Duration,
    ) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                connector,
                hosts: Mutex::new(HashMap::new()),
                max_idle_per_host,
                idle_timeout,
                sweeping: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `request` (absolute URI) and gives the response to `read`, which runs while
    /// the connection is still driven, so it can read the body. The connection is kept
    /// for reuse only when `read` succeeded and the connection is ready for another
    /// request (the body was read to its end and neither side closed it).
    pub(crate) async fn send<T, R, F>(
        &self,
        request: Request<Body>,
        read: R,
    ) -> Result<T, AttemptError>
    where
        R: FnOnce(Response<Incoming>) -> F,
        F: Future<Output = Result<T, AttemptError>>,
    {
        let uri = request.uri().clone();
        let origin = Origin::of(&uri)?;
        let mut request = request;
        let mut read = Some(read);
        loop {
            let (conn, reused) = self.checkout(&origin, &uri).await?;
            let unsent = match conn {
                Conn::H2(mut sender) => {
                    *request.uri_mut() = uri.clone();
                    match sender.try_send_request(request).await {
                        Ok(response) => {
                            let read = read.take().expect("read is taken once");
                            return read(response).await;
                        }
                        Err(mut err) => match err.take_message() {
                            Some(unsent) if reused => {
                                self.forget_h2(&origin);
                                unsent
                            }
                            _ => return Err(request_error(&err.into_error())),
                        },
                    }
                }
                Conn::H1(mut h1) => {
                    into_origin_form(&mut request, &uri, &h1.host);
                    let sent = h1.sender.try_send_request(request);
                    let read = &mut read;
                    let result = drive(&mut h1.conn, async move {
                        let response = sent.await?;
                        let read = read.take().expect("read is taken once");
                        Ok::<_, hyper::client::conn::TrySendError<Request<Body>>>(
                            read(response).await,
                        )
                    })
                    .await;
                    match result {
                        Ok(out) => {
                            if out.is_ok() {
                                // Kept only if still open and ready (see `checkin`).
                                self.checkin(origin, h1).await;
                            }
                            return out;
                        }
                        Err(mut err) => match err.take_message() {
                            Some(unsent) if reused => unsent,
                            _ => return Err(request_error(&err.into_error())),
                        },
                    }
                }
            };
            tracing::debug!(origin = %origin.authority, "a reused connection had closed; sending on another");
            request = unsent;
        }
    }

    /// A connection to `origin`: the shared HTTP/2 one, an idle HTTP/1 one that is still
    /// open, or a new one. The flag says whether it was reused.
    async fn checkout(&self, origin: &Origin, uri: &Uri) -> Result<(Conn, bool), AttemptError> {
        loop {
            let idle = {
                let mut hosts = self.shared.hosts();
                let Some(host) = hosts.get_mut(origin) else {
                    break;
                };
                if let Some(h2) = &host.h2 {
                    if !h2.is_closed() {
                        return Ok((Conn::H2(h2.clone()), true));
                    }
                    host.h2 = None;
                }
                host.idle.pop(Instant::now(), self.shared.idle_timeout)
            };
            let Some(mut h1) = idle else {
                break;
            };
            if h1.is_usable().await {
                return Ok((Conn::H1(h1), true));
            }
        }
        // Boxed: connecting (TLS, HTTP/2 handshake) is rare and its future is large; inline
        // it would make every attempt's future, and the copy of it, several KiB bigger.
        Ok((Box::pin(self.connect(origin, uri)).await?, false))
    }

    /// A new connection to `uri`'s origin, HTTP/2 if TLS negotiated it.
    async fn connect(&self, origin: &Origin, uri: &Uri) -> Result<Conn, AttemptError> {
        let host = host_header(uri)?;
        let mut connector = self.shared.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|err| connect_error(&*err))?;
        let io = connector
            .call(uri.clone())
            .await
            .map_err(|err| connect_error(&*err))?;
        if io.connected().is_negotiated_h2() {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(|err| request_error(&err))?;
            let authority = origin.authority.clone();
            tokio::spawn(async move {
                if let Err(err) = conn.await {
                    tracing::debug!(origin = %authority, error = %err, "HTTP/2 connection ended");
                }
            });
            self.shared.hosts().entry(origin.clone()).or_default().h2 = Some(sender.clone());
            self.start_sweeper();
            return Ok(Conn::H2(sender));
        }
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|err| request_error(&err))?;
        Ok(Conn::H1(Box::new(H1 {
            sender,
            conn: Some(conn),
            host,
        })))
    }

    /// Returns `h1` to its origin's idle list if it is ready for another request.
    async fn checkin(&self, origin: Origin, mut h1: Box<H1>) {
        // One more poll lets the connection finish the exchange and ask for the next
        // request; a connection that closes (or still has unread data) is not kept.
        if !h1.is_usable().await {
            return;
        }
        let refused = {
            let mut hosts = self.shared.hosts();
            let host = hosts.entry(origin).or_default();
            host.idle
                .push(h1, Instant::now(), self.shared.max_idle_per_host)
                .err()
        };
        drop(refused); // closed outside the lock
        self.start_sweeper();
    }

    /// Drops the shared HTTP/2 connection of `origin`: it handed a request back unsent.
    /// The next request to the origin connects afresh (so a connection that keeps
    /// refusing cannot loop a request), even if another attempt had already replaced
    /// the slot: at worst that costs one extra connection.
    fn forget_h2(&self, origin: &Origin) {
        if let Some(host) = self.shared.hosts().get_mut(origin) {
            host.h2 = None;
        }
    }

    /// Starts the task that closes idle connections, once, if a runtime is there. It
    /// holds the pool weakly and ends when the pool is dropped.
    fn start_sweeper(&self) {
        if self.shared.sweeping.load(Ordering::Relaxed)
            || self.shared.sweeping.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.shared.sweeping.store(false, Ordering::Relaxed);
            return;
        };
        let shared = Arc::downgrade(&self.shared);
        let period = (self.shared.idle_timeout / 2).max(Duration::from_secs(1));
        runtime.spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                shared.sweep(Instant::now());
            }
        });
    }

    /// Drives the idle connections of `uri`'s origin until each has ended (for tests:
    /// waits, without timing, until a close by the other side has been seen).
    #[cfg(test)]
    async fn wait_idle_ended(&self, uri: &Uri) {
        let origin = Origin::of(uri).expect("an absolute URL");
        let mut ended = Vec::new();
        while let Some(h1) = {
            let mut hosts = self.shared.hosts();
            hosts
                .get_mut(&origin)
                .and_then(|host| host.idle.pop(Instant::now(), self.shared.idle_timeout))
        } {
            ended.push(h1);
        }
        for h1 in &mut ended {
            if let Some(conn) = h1.conn.as_mut() {
                let _ = conn.await;
            }
            h1.conn = None;
        }
        let mut hosts = self.shared.hosts();
        let host = hosts.entry(origin).or_default();
        for h1 in ended {
            let _ = host.idle.push(h1, Instant::now(), usize::MAX);
        }
    }

    /// Idle HTTP/1 connections kept for `uri`'s origin (for tests).
    #[cfg(test)]
    fn idle_count(&self, uri: &Uri) -> usize {
        let origin = Origin::of(uri).expect("an absolute URL");
        self.shared
            .hosts()
            .get(&origin)
            .map_or(0, |host| host.idle.len())
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("max_idle_per_host", &self.shared.max_idle_per_host)
            .field("idle_timeout", &self.shared.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// The `Host` header HTTP/1 needs: the URL's host, and its port unless it is the
/// scheme's default.
fn host_header(uri: &Uri) -> Result<HeaderValue, AttemptError> {
    let host = uri.host().unwrap_or_default();
    let default_port = if uri.scheme() == Some(&Scheme::HTTPS) {
        443
    } else {
        80
    };
    match uri.port_u16() {
        Some(port) if port != default_port => {
            HeaderValue::from_maybe_shared(Bytes::from(format!("{host}:{port}")))
        }
        _ => HeaderValue::from_str(host),
    }
    .map_err(|_| {
        AttemptError::InvalidRequest(format!(
            "endpoint URL {uri} has a host that is not a valid header value"
        ))
    })
}

/// Sets what HTTP/1 needs and HTTP/2 must not have: a `Host` header (`host`, unless the
/// request has its own) and an origin-form target (`/path?query`). The connection already
/// leads to the origin, directly or through a CONNECT tunnel.
fn into_origin_form(request: &mut Request<Body>, uri: &Uri, host: &HeaderValue) {
    if !request.headers().contains_key(HOST) {
        request.headers_mut().insert(HOST, host.clone());
    }
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
