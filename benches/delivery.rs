//! Measures one delivery attempt over loopback, client and receiver in one
//! current-thread runtime: Herald's `Deliverer::deliver` (build, sign, send
//! over its own pool, read the answer) next to a plain hyper-util pooled
//! client posting the same signed bytes, the yardstick for the client's own
//! cost. One connection (requests back to back) and 32 connections (32
//! concurrent lanes). The receiver is the same hyper server in both, so the
//! difference between the two is the client.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herald_delivery::{Deliverer, DeliveryConfig, DeliveryRequest, EgressPolicy};
use herald_signing::{Secret, Signer};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use common::{json_payload, EVENT_ID, NOW_MS, PAYLOAD_LEN};

/// Lanes in the concurrent case.
const LANES: u64 = 32;

/// A hyper HTTP/1 receiver on `127.0.0.1:0` that reads the body and answers
/// `204`.
async fn receiver() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.expect("accept");
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let mut reply = Response::new(Empty::<Bytes>::new());
                    *reply.status_mut() = http::StatusCode::NO_CONTENT;
                    Ok::<_, Infallible>(reply)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// Runs `one` `iters` times split over `lanes` concurrent tasks; the
/// elapsed time.
fn timed<F, Fut>(rt: &Runtime, iters: u64, lanes: u64, one: F) -> Duration
where
    F: Fn() -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    rt.block_on(async {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..lanes)
                    .map(|lane| {
                        let one = one.clone();
                        let n = iters / lanes + u64::from(lane < iters % lanes);
                        tokio::task::spawn_local(async move {
                            for _ in 0..n {
                                one().await;
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("lane");
                }
                start.elapsed()
            })
            .await
    })
}

fn bench_delivery(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let addr = rt.block_on(receiver());
    let url: Uri = format!("http://{addr}/hook").parse().expect("url");
    let body = Bytes::from(json_payload(PAYLOAD_LEN, 1));
    let signer = Signer::new(vec![Secret::from_bytes(&[0x5a; 24]).expect("key")]);
    let ts = NOW_MS / 1000;
    let deliverer = Deliverer::new(DeliveryConfig {
        egress: EgressPolicy::new(vec!["127.0.0.0/8".parse().expect("cidr")]),
        ..DeliveryConfig::default()
    })
    .expect("deliverer");
    let plain: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let signature = signer.signature_header(EVENT_ID, ts, &body);

    let mut g = c.benchmark_group("delivery");
    g.throughput(Throughput::Elements(1));
    for (name, lanes) in [("1_connection", 1), ("32_connections", LANES)] {
        g.bench_function(format!("herald/{name}"), |b| {
            b.iter_custom(|iters| {
                let (deliverer, url, body, signer) =
                    (deliverer.clone(), url.clone(), body.clone(), signer.clone());
                timed(&rt, iters, lanes, move || {
                    let (deliverer, url, body, signer) =
                        (deliverer.clone(), url.clone(), body.clone(), signer.clone());
                    async move {
                        let req = DeliveryRequest {
                            url: &url,
                            msg_id: EVENT_ID,
                            timestamp: ts,
                            body,
                            signer: &signer,
                            headers: &[],
                            timeout: None,
                        };
                        let result = deliverer.deliver(&req).await;
                        assert_eq!(result.status, Some(204), "{:?}", result.error);
                    }
                })
            })
        });
        g.bench_function(format!("plain_hyper_client/{name}"), |b| {
            b.iter_custom(|iters| {
                let (plain, url, body, signature) =
                    (plain.clone(), url.clone(), body.clone(), signature.clone());
                timed(&rt, iters, lanes, move || {
                    let (plain, url, body, signature) =
                        (plain.clone(), url.clone(), body.clone(), signature.clone());
                    async move {
                        let req = Request::post(url)
                            .header("content-type", "application/json")
                            .header("webhook-id", EVENT_ID)
                            .header("webhook-timestamp", ts)
                            .header("webhook-signature", signature)
                            .body(Full::new(body))
                            .expect("request");
                        let response = plain.request(req).await.expect("response");
                        assert_eq!(response.status(), 204);
                        let _ = response.into_body().collect().await;
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_delivery);
criterion_main!(benches);
