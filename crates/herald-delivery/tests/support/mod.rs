//! Test receivers: a real hyper HTTP/1.1 server on `127.0.0.1:0` that records what it got
//! and answers what the test chooses, plus raw TCP servers that misbehave on purpose.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Response, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The body type receivers answer with.
pub type ReplyBody = BoxBody<Bytes, Infallible>;

/// One request as the receiver saw it.
#[derive(Debug)]
pub struct Recorded {
    pub method: http::Method,
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
