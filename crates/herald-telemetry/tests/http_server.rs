//! The metrics/health server against real sockets: it answers probes, and a
//! client that connects and never sends its request headers is cut off
//! after the header-read timeout (paused time: no real waiting).

use std::time::Duration;

use herald_telemetry::{install_recorder, serve_http, Health, Worst};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_http(
        listener,
        install_recorder(),
        Health::new(),
        Worst::new(1),
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_cut_off_and_probes_still_answer() {
    let (addr, _stop) = start().await;

    // Connects, sends nothing: the server closes the connection once the
    // header-read timeout passes (time auto-advances while all are idle).
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(3600), silent.read(&mut buf))
        .await
        .expect("the server closes a silent connection")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer:?}");

    // A probe on a fresh connection is answered.
    let mut probe = TcpStream::connect(addr).await.unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    probe.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"alive\":true"), "{text}");
}

#[tokio::test]
async fn oversized_request_headers_are_refused() {
    let (addr, _stop) = start().await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let big = "x".repeat(64 * 1024);
    let req = format!("GET /metrics HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    // The server may close before reading it all; either way no 200 comes back.
    let _ = client.write_all(req.as_bytes()).await;
    let mut text = String::new();
    let _ = client.read_to_string(&mut text).await;
    assert!(!text.starts_with("HTTP/1.1 200"), "{text}");
}

/// Every counter and histogram is on `/metrics` from the first scrape, at
/// zero, before anything happened.
#[tokio::test]
async fn every_counter_and_histogram_is_exported_at_zero_from_the_start() {
    let text = install_recorder().render();
    let gauges = [
        herald_telemetry::names::CONSUMER_LAG,
        herald_telemetry::names::CONSUMER_LAG_SECONDS,
        herald_telemetry::names::CIRCUITS_OPEN,
        herald_telemetry::names::ENDPOINT_OLDEST_EVENT_AGE,
        herald_telemetry::names::LANE_EVENTS,
        herald_telemetry::names::LANES_OPEN,
        herald_telemetry::names::PARTITIONS_ASSIGNED,
        // Set to 0 by the dispatcher when it starts.
        herald_telemetry::names::DISPATCH_IDLE_PAUSED,
        herald_telemetry::names::ENDPOINTS,
        // Set by the broker capability probe when it has an answer.
        herald_telemetry::names::BROKER_FEATURE_SUPPORTED,
    ];
    for name in herald_telemetry::names::ALL
        .iter()
        .filter(|n| !gauges.contains(n))
    {
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && !l.starts_with('#')),
            "{name} is not exported at start:\n{text}"
        );
    }
    assert!(
        text.contains("herald_dead_letters_total{reason=\"attempts_exhausted\"} 0"),
        "{text}"
    );
}
