//! Secrets never leak: one node's whole life at `debug` level (create with a
//! secret and a sensitive header, a refused create with a bad secret, a
//! rotation, failed and successful deliveries, listing attempts and dead
//! letters), with every log line captured, every error message kept, and
//! `/metrics` and the attempt log read at the end. None of them holds a
//! secret, a sensitive header value, or an API token.
//!
//! Its own test binary: it installs the process's log subscriber.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use herald_core::config::TokenConfig;
use herald_proto::v1 as pb;
use herald_proto::v1::endpoint_service_client::EndpointServiceClient;
use herald_proto::v1::event_service_client::EventServiceClient;
use herald_testkit::{Policy, Reply, TestReceiver};
use support::GUARD;

/// Log output, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SECRET: &str = "whsec_bGVhay1jYW5hcnktc2VjcmV0LW9uZS0xMjM0NTY=";
const ROTATED: &str = "whsec_bGVhay1jYW5hcnktc2VjcmV0LXR3by0xMjM0NTY=";
const BAD_SECRET: &str = "whsec_bGVha3k=";
const SENSITIVE: &str = "Bearer leak-canary-header-value";

fn request<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_errors_metrics_or_the_attempt_log() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug,h2=info,hyper=info,tower=info,rdkafka=info,librdkafka=info")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let (token, hash) = herald_auth::token::generate();
    let mut cfg = herald_testkit::fixtures::test_config();
    cfg.dispatch.attempt_log = true;
    cfg.auth.disabled = false;
    cfg.auth.tokens = vec![TokenConfig {
        name: "ops".into(),
        hash: hash.to_string(),
        scopes: vec!["admin".into()],
        ..Default::default()
    }];
    let (_broker, cfg) = support::broker(cfg);
    let node = support::start_loaded(cfg, herald::node::Roles::ALL).await;
    let ch = support::channel(&node).await;
    let mut endpoints = EndpointServiceClient::new(ch.clone());
    let mut events = EventServiceClient::new(ch.clone());
    // The first attempt fails (logged, recorded), the retry succeeds.
    let receiver = TestReceiver::with_policy(Policy::new(|_, n| {
        if n == 1 {
            Reply::status(500)
        } else {
            Reply::status(200)
        }
    }))
    .await
    .unwrap();
    let mut errors = Vec::new();

    endpoints
        .create_endpoint(request(
            pb::CreateEndpointRequest {
                id: "canary".into(),
                url: receiver.url_for("/canary"),
                secret: SECRET.into(),
                sensitive_headers: [("Authorization".to_string(), SENSITIVE.to_string())].into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("create");
    let bad = endpoints
        .create_endpoint(request(
            pb::CreateEndpointRequest {
                id: "bad".into(),
                url: receiver.url_for("/bad"),
                secret: BAD_SECRET.into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect_err("a secret too short");
    errors.push(bad.message().to_string());
    endpoints
        .update_endpoint(request(
            pb::UpdateEndpointRequest {
                id: "canary".into(),
                rotate_secret: Some(ROTATED.into()),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("rotate");
    let wrong = endpoints
        .get_endpoint(request(
            pb::GetEndpointRequest {
                id: "canary".into(),
            },
            "hrld_wrong",
        ))
        .await
        .expect_err("a wrong token");
    errors.push(wrong.message().to_string());
    let view = endpoints
        .get_endpoint(request(
            pb::GetEndpointRequest {
                id: "canary".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    errors.push(format!("{view:?}"));

    let sent = events
        .publish(request(
            support::publish_req("canary", r#"{"n":1}"#),
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    receiver
        .wait_for(
            |all| {
                all.iter()
                    .filter(|r| r.webhook_id() == sent.event_id)
                    .count()
                    >= 2
            },
            GUARD,
        )
        .await
        .expect("a failed attempt, then a delivery");
    // The attempt log is written after each attempt, best effort and
    // batched: the delivery's record can trail the receiver's 2xx, so ask
    // until both attempts are there.
    let started = std::time::Instant::now();
    let attempts = loop {
        let attempts = events
            .list_attempts(request(
                pb::ListAttemptsRequest {
                    endpoint_id: "canary".into(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        if attempts.attempts.len() >= 2 {
            break attempts;
        }
        assert!(
            started.elapsed() < GUARD,
            "the attempt log never showed both attempts: {attempts:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let metrics = herald_testkit::http::get(&format!("http://{}/metrics", node.http_addr))
        .await
        .unwrap()
        .text();
    drop((endpoints, events, ch));
    tokio::time::timeout(GUARD, node.shutdown())
        .await
        .unwrap()
        .unwrap();

    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(logs.contains("canary"), "the capture saw the node's logs");
    let places = [
        ("logs", logs.as_str()),
        ("errors", &errors.join("\n")),
        ("metrics", metrics.as_str()),
        ("attempt log", &format!("{attempts:?}")),
    ];
    for (place, text) in places {
        for secret in [SECRET, ROTATED, BAD_SECRET, SENSITIVE, token.as_str()] {
            // The base64 key alone, too, without its prefix.
            let key = secret
                .trim_start_matches("whsec_")
                .trim_start_matches("Bearer ");
            assert!(!text.contains(key), "{place} holds a secret ({key})");
        }
    }
    assert!(attempts.attempts.len() >= 2, "{attempts:?}");
}
