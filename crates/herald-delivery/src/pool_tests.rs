//! The pool against real servers on `127.0.0.1:0`: connection reuse, the idle cap, stale
//! idle connections, bodies left unread, idle expiry, and HTTP/2 by ALPN over TLS (a
//! certificate made for the test, trusted by this pool only).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use super::*;
use crate::config::DeliveryConfig;
use crate::connector::EgressConnector;
use crate::egress::EgressPolicy;

const IDLE: Duration = Duration::from_secs(90);

fn config() -> DeliveryConfig {
    DeliveryConfig {
        egress: EgressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
        ..DeliveryConfig::default()
    }
}

fn plain_pool(cap: usize) -> Pool {
    Pool::new(crate::client::connector(&config()).unwrap(), cap, IDLE)
}

/// What a test server saw: connections accepted, and the version of every request.
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
    http2: AtomicUsize,
    /// A permit per request that arrived, for tests to wait on.
    arrived: Semaphore,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            http2: AtomicUsize::new(0),
            arrived: Semaphore::new(0),
        }
    }

    async fn wait_for_requests(&self, n: u32) {
        self.arrived.acquire_many(n).await.unwrap().forget();
    }
}

/// A hyper server (HTTP/1 and HTTP/2) answering `200 ok` with `body_len` bytes, after a
/// permit of `gate` when one is given. With `tls`, it speaks TLS offering `alpn`.
async fn server(
    body_len: usize,
    gate: Option<Arc<Semaphore>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::new());
    let seen_by_server = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            seen_by_server.connections.fetch_add(1, Ordering::SeqCst);
            let seen = Arc::clone(&seen_by_server);
            let gate = gate.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = Arc::clone(&seen);
                    let gate = gate.clone();
                    async move {
                        if req.version() == Version::HTTP_2 {
                            seen.http2.fetch_add(1, Ordering::SeqCst);
                        }
                        let _ = req.into_body().collect().await;
                        seen.requests.fetch_add(1, Ordering::SeqCst);
                        seen.arrived.add_permits(1);
                        if let Some(gate) = gate {
                            gate.acquire().await.unwrap().forget();
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![
                            b'x';
                            body_len
                        ]))))
                    }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = match tls {
                    Some(tls) => {
                        let Ok(stream) = tls.accept(tcp).await else {
                            return;
                        };
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    None => builder.serve_connection(TokioIo::new(tcp), service).await,
                };
            });
        }
    });
    (addr, seen)
}

fn post(url: &Uri) -> Request<Body> {
    Request::post(url.clone())
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

/// Sends one request; the status and body length, read to the end (or to `cap`).
async fn send(pool: &Pool, url: &Uri, cap: usize) -> Result<(u16, usize), AttemptError> {
    pool.send(post(url), |response| async move {
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut len = 0;
        while len < cap {
            let Some(frame) = body.frame().await else {
                break;
            };
            if let Ok(data) = frame.map_err(|err| request_error(&err))?.into_data() {
                len += data.len();
            }
        }
        Ok((status, len))
    })
    .await
}

/// Sends `n` requests at once while the server holds its answers, waits until `arrived`
/// of them reached it, then lets the server answer all `n`: their results.
async fn held_concurrently(
    pool: &Pool,
    url: &Uri,
    n: u32,
    gate: &Semaphore,
    seen: &Seen,
    arrived: u32,
) -> Vec<Result<(u16, usize), AttemptError>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (pool, url) = (pool.clone(), url.clone());
            tokio::spawn(async move { send(&pool, &url, usize::MAX).await })
        })
        .collect();
    seen.wait_for_requests(arrived).await;
    gate.add_permits(n as usize);
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("the request task"));
    }
    results
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let (addr, seen) = server(10, None, None).await;
    let pool = plain_pool(8);
    let url: Uri = format!("http://{addr}/hook?x=1").parse().unwrap();
    for _ in 0..5 {
        assert_eq!(send(&pool, &url, usize::MAX).await, Ok((200, 10)));
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 5);
    assert_eq!(pool.idle_count(&url), 1);
}

#[tokio::test]
async fn concurrent_requests_get_connections_and_the_idle_cap_holds() {
    let gate = Arc::new(Semaphore::new(0));
    let (addr, seen) = server(0, Some(Arc::clone(&gate)), None).await;
    let pool = plain_pool(3);
    let url: Uri = format!("http://{addr}/").parse().unwrap();
    // All six are in flight at once (the server holds every answer), so each has its own
    // connection; then they are answered.
    for result in held_concurrently(&pool, &url, 6, &gate, &seen, 6).await {
        assert_eq!(result, Ok((200, 0)));
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 6);
    assert_eq!(pool.idle_count(&url), 3, "three kept, three closed");
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_not_used() {
    // A raw server that answers one request per connection with keep-alive, then closes
    // the connection when told to (as a server's idle timeout would).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (close_tx, mut close_rx) = mpsc::unbounded_channel::<()>();
    let (req_tx, mut req_rx) = mpsc::unbounded_channel::<usize>();
    tokio::spawn(async move {
        for conn in 0.. {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !got.ends_with(b"\r\n\r\n{}") {
                let n = tcp.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            req_tx.send(conn).unwrap();
            tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            close_rx.recv().await;
            drop(tcp);
        }
    });
    let pool = plain_pool(8);
    let url: Uri = format!("http://{addr}/").parse().unwrap();
    assert_eq!(send(&pool, &url, usize::MAX).await, Ok((200, 2)));
    assert_eq!(req_rx.recv().await, Some(0));
    assert_eq!(pool.idle_count(&url), 1);
    close_tx.send(()).unwrap();
    // Once the idle connection has seen the close, the next request goes on a new one,
    // once.
    pool.wait_idle_ended(&url).await;
    assert_eq!(
        pool.idle_count(&url),
        1,
        "still kept: nobody checked it out yet"
    );
    assert_eq!(send(&pool, &url, usize::MAX).await, Ok((200, 2)));
    assert_eq!(req_rx.recv().await, Some(1));
    assert!(req_rx.try_recv().is_err(), "the request was sent once");
}

#[tokio::test]
async fn a_body_left_unread_closes_its_connection() {
    let (addr, seen) = server(100_000, None, None).await;
    let pool = plain_pool(8);
    let url: Uri = format!("http://{addr}/").parse().unwrap();
    let (status, len) = send(&pool, &url, 10).await.unwrap();
    assert_eq!(status, 200);
    assert!((10..100_000).contains(&len));
    assert_eq!(pool.idle_count(&url), 0);
    assert_eq!(send(&pool, &url, usize::MAX).await, Ok((200, 100_000)));
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    assert_eq!(pool.idle_count(&url), 1, "read to its end, so kept");
}

#[tokio::test]
async fn idle_connections_expire() {
    let (addr, _seen) = server(0, None, None).await;
    let pool = plain_pool(8);
    let url: Uri = format!("http://{addr}/").parse().unwrap();
    send(&pool, &url, usize::MAX).await.unwrap();
    pool.shared.sweep(Instant::now());
    assert_eq!(pool.idle_count(&url), 1);
    pool.shared.sweep(Instant::now() + IDLE);
    assert_eq!(pool.idle_count(&url), 0);
    assert!(
        pool.shared.hosts().is_empty(),
        "an origin with nothing left is forgotten"
    );
}

#[tokio::test]
async fn unreachable_and_refused_targets_are_classified() {
    let pool = plain_pool(8);
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let url: Uri = format!("http://{closed}/").parse().unwrap();
    assert!(matches!(
        send(&pool, &url, 0).await,
        Err(AttemptError::Connect(_))
    ));

    let strict = Pool::new(
        crate::client::connector(&DeliveryConfig::default()).unwrap(),
        8,
        IDLE,
    );
    let err = send(&strict, &url, 0).await.unwrap_err();
    assert!(
        matches!(&err, AttemptError::Refused(text) if text.contains("loopback")),
        "{err:?}"
    );
}

/// A TLS acceptor for `localhost` offering `alpn`, and a pool that trusts it.
fn tls_pair(alpn: &[&[u8]], http2: bool) -> (tokio_rustls::TlsAcceptor, Pool) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(client)
        .https_or_http();
    let http = EgressConnector::new(&config()).unwrap();
    let connector = if http2 {
        builder.enable_all_versions().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    (acceptor, Pool::new(connector, 8, IDLE))
}

#[tokio::test]
async fn https_with_h2_shares_one_connection_between_concurrent_requests() {
    let (acceptor, pool) = tls_pair(&[b"h2", b"http/1.1"], true);
    let gate = Arc::new(Semaphore::new(0));
    let (addr, seen) = server(5, Some(Arc::clone(&gate)), Some(acceptor)).await;
    let url: Uri = format!("https://localhost:{}/", addr.port())
        .parse()
        .unwrap();
    // The first request opens the connection; the next four join it while it is busy.
    gate.add_permits(1);
    assert_eq!(send(&pool, &url, usize::MAX).await, Ok((200, 5)));
    seen.wait_for_requests(1).await;
    for result in held_concurrently(&pool, &url, 4, &gate, &seen, 4).await {
        assert_eq!(result, Ok((200, 5)));
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert_eq!(seen.http2.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn https_without_h2_uses_http1_connections() {
    for (alpn, http2) in [
        (&[b"http/1.1".as_slice()][..], true),
        (&[b"h2".as_slice(), b"http/1.1"][..], false),
    ] {
        let (acceptor, pool) = tls_pair(alpn, http2);
        let (addr, seen) = server(3, None, Some(acceptor)).await;
        let url: Uri = format!("https://localhost:{}/", addr.port())
            .parse()
            .unwrap();
        for _ in 0..3 {
            assert_eq!(send(&pool, &url, usize::MAX).await, Ok((200, 3)));
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
        assert_eq!(seen.http2.load(Ordering::SeqCst), 0);
        assert_eq!(pool.idle_count(&url), 1);
    }
}

#[test]
fn http1_requests_carry_host_and_an_origin_form_target() {
    for (url, host) in [
        ("http://example.com/a/b?c=1", "example.com"),
        ("http://example.com:8080/", "example.com:8080"),
        ("https://example.com:443/x", "example.com"),
        ("https://user:pw@example.com:8443", "example.com:8443"),
    ] {
        let uri: Uri = url.parse().unwrap();
        let mut request = post(&uri);
        let host_value = host_header(&uri).unwrap();
        into_origin_form(&mut request, &uri, &host_value);
        assert_eq!(request.headers()[HOST], host, "{url}");
        assert_eq!(
            request.uri().to_string(),
            uri.path_and_query().map_or("/".into(), |p| p.to_string())
        );
    }
}
