//! Test receivers: a real hyper HTTP/1.1 server on `127.0.0.1:0` that records what it got
//! and answers what the test chooses, raw TCP servers that misbehave on purpose, a tiny
//! HTTP CONNECT proxy, and the delivery configuration tests use (loopback allow-listed).

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use herald_delivery::{DeliveryConfig, EgressPolicy};
use http::{HeaderMap, Response, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The default configuration with `127.0.0.0/8` explicitly allow-listed, since every
/// receiver here listens on loopback.
pub fn config() -> DeliveryConfig {
    DeliveryConfig {
        egress: EgressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
        ..DeliveryConfig::default()
    }
}

/// The body type receivers answer with.
pub type ReplyBody = BoxBody<Bytes, Infallible>;

/// One request as the receiver saw it.
#[derive(Debug)]
pub struct Recorded {
    pub method: http::Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A hyper server that records requests and replies with `reply()`.
pub struct Receiver {
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Recorded>,
    accept: JoinHandle<()>,
}

impl Receiver {
    pub async fn start<F>(reply: F) -> Receiver
    where
        F: Fn() -> Response<ReplyBody> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::unbounded_channel();
        let reply = Arc::new(reply);
        let accept = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let tx = tx.clone();
                let reply = reply.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<Incoming>| {
                        let tx = tx.clone();
                        let reply = reply.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let _ = tx.send(Recorded {
                                method: parts.method,
                                uri: parts.uri,
                                headers: parts.headers,
                                body,
                            });
                            Ok::<_, Infallible>(reply())
                        }
                    });
                    // Errors here are the client hanging up mid-body, which some tests do.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            requests,
            accept,
        }
    }

    pub fn url(&self, path: &str) -> Uri {
        format!("http://{}{}", self.addr, path).parse().unwrap()
    }

    /// The next recorded request (the delivery has completed, so it is already queued).
    pub fn recorded(&mut self) -> Recorded {
        self.try_recorded().expect("the receiver got a request")
    }

    /// A request already queued, if any.
    pub fn try_recorded(&mut self) -> Option<Recorded> {
        self.requests.try_recv().ok()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

pub fn reply(status: u16, headers: &[(&str, &str)], body: &'static [u8]) -> Response<ReplyBody> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::from_static(body)).boxed())
        .unwrap()
}

/// An endless response body of `x` bytes, 64 KiB per frame.
pub struct Endless;

static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK)))))
    }
}

/// A TCP server that accepts connections and then never says anything.
pub async fn silent_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held: Vec<TcpStream> = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            held.push(stream);
        }
    });
    (addr, task)
}

/// A TCP server that answers whatever arrives (e.g. a TLS ClientHello) with plain HTTP
/// bytes and keeps the connection open.
pub async fn plaintext_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held: Vec<TcpStream> = Vec::new();
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
            held.push(stream);
        }
    });
    (addr, task)
}

/// An address nothing listens on: bind port 0, then close it.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Reads until the end of a request head (`\r\n\r\n`) and returns it, or `None` if the
/// peer closed first. Reads byte by byte so nothing after the head is consumed.
pub async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// What a streaming server managed to write before the client went away.
#[derive(Debug)]
pub struct Streamed {
    /// Body bytes written (accepted by the kernel; not necessarily read by the client).
    pub body_bytes: u64,
    /// Whether the whole body was written.
    pub completed: bool,
}

/// A server that answers its first connection with headers, then one `x` byte of a
/// chunked body every `every`, forever. Reports when the client has gone away.
pub async fn trickle_server(
    every: std::time::Duration,
) -> (SocketAddr, oneshot::Receiver<Streamed>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done, report) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_head(&mut stream).await;
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
        let mut sent = 0;
        if stream.write_all(head).await.is_ok() {
            // The slowness is the behaviour under test, not synchronisation.
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if stream.write_all(b"1\r\nx\r\n").await.is_err() {
                    break;
                }
                sent += 1;
            }
        }
        let _ = done.send(Streamed {
            body_bytes: sent,
            completed: false,
        });
    });
    (addr, report)
}

/// A server that answers its first connection with a `content-length` of `size` bytes and
/// streams them from one static 64 KiB chunk (it never holds the body in memory). Reports
/// how much it wrote once it finished or the client went away.
pub async fn huge_body_server(size: u64) -> (SocketAddr, oneshot::Receiver<Streamed>) {
    static CHUNK: [u8; 64 * 1024] = [b'z'; 64 * 1024];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done, report) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_head(&mut stream).await;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
        let mut sent = 0u64;
        if stream.write_all(head.as_bytes()).await.is_ok() {
            while sent < size {
                let n = (size - sent).min(CHUNK.len() as u64) as usize;
                if stream.write_all(&CHUNK[..n]).await.is_err() {
                    break;
                }
                sent += n as u64;
            }
        }
        let _ = done.send(Streamed {
            body_bytes: sent,
            completed: sent == size,
        });
    });
    (addr, report)
}

/// One CONNECT request as the proxy saw it.
#[derive(Debug)]
pub struct Connect {
    /// The request line's target, e.g. `127.0.0.1:8080`.
    pub target: String,
    /// The whole request head, lower-cased.
    pub head: String,
}

/// A tiny HTTP CONNECT proxy: records each CONNECT, then either answers `refuse_with`
/// (e.g. `407 Proxy Authentication Required`) or connects to the target, answers 200 and
/// relays bytes both ways.
pub struct ConnectProxy {
    pub addr: SocketAddr,
    connects: mpsc::UnboundedReceiver<Connect>,
    accept: JoinHandle<()>,
}

impl ConnectProxy {
    pub async fn start(bind: &str, refuse_with: Option<&'static str>) -> ConnectProxy {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, connects) = mpsc::unbounded_channel();
        let accept = tokio::spawn(async move {
            loop {
                let (mut client, _) = listener.accept().await.unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut client).await else {
                        return;
                    };
                    let mut words = head.split_whitespace();
                    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                    let target = target.to_owned();
                    let _ = tx.send(Connect {
                        target: target.clone(),
                        head: head.to_ascii_lowercase(),
                    });
                    if method != "CONNECT" {
                        let _ = client
                            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                            .await;
                        return;
                    }
                    if let Some(status) = refuse_with {
                        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                        let _ = client.write_all(answer.as_bytes()).await;
                        return;
                    }
                    let Ok(mut upstream) = TcpStream::connect(target.as_str()).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    if client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .is_ok()
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        ConnectProxy {
            addr,
            connects,
            accept,
        }
    }

    pub fn url(&self) -> Uri {
        format!("http://{}", self.addr).parse().unwrap()
    }

    /// The next CONNECT (the delivery has completed, so it is already queued).
    pub fn connect(&mut self) -> Connect {
        self.connects.try_recv().expect("the proxy got a CONNECT")
    }

    pub fn try_connect(&mut self) -> Option<Connect> {
        self.connects.try_recv().ok()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A bound listener nobody accepts on: after a delivery, a pending connection in its
/// backlog shows that something connected (the kernel completes the handshake before
/// `connect` returns), and its absence that nothing did.
pub struct Tripwire {
    listener: std::net::TcpListener,
    pub addr: SocketAddr,
}

impl Tripwire {
    pub fn bind(addr: &str) -> Tripwire {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        Tripwire { listener, addr }
    }

    /// Whether any connection reached this listener.
    pub fn tripped(&self) -> bool {
        match self.listener.accept() {
            Ok(_) => true,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(err) => panic!("accept failed: {err}"),
        }
    }
}
