//! Batched delivery end to end: an ordered endpoint taking batches, behind
//! a receiver that verifies every request with the Standard Webhooks
//! reference library (PyPI `standardwebhooks`, run by
//! `support/standard_webhooks_receiver.py`) and fails every third request.
//! Every event arrives once in an accepted request, in publish order; a
//! failed batch comes back whole, under the same `webhook-id`; the settings
//! are validated, naming the field.
//!
//! Needs a Python with `standardwebhooks` (`HERALD_SW_PYTHON`, default
//! `python3`). Skipped with a `SKIPPED` line when it has none, unless `CI`
//! or `HERALD_REQUIRE_STANDARD_WEBHOOKS` is set; `.ci/run` installs it in a
//! cached virtualenv and sets both.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::common::assert_status;
use crate::support::{self, TestNode, GUARD};
use herald_proto::v1 as pb;
use serde_json::Value;
use tonic::Code;

const EVENTS: usize = 240;

/// The Python receiver; killed when dropped.
struct PyReceiver {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Drop for PyReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> String {
    std::env::var("HERALD_SW_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether the library is there; `false` (with a `SKIPPED` line) only
/// where a missing one may be skipped.
fn library_or_skip(test: &str) -> bool {
    let ok = Command::new(python())
        .args(["-c", "import standardwebhooks"])
        .status()
        .is_ok_and(|s| s.success());
    let required = std::env::var_os("CI").is_some()
        || std::env::var_os("HERALD_REQUIRE_STANDARD_WEBHOOKS").is_some();
    match (ok, required) {
        (true, _) => true,
        (false, true) => panic!(
            "{test}: {} cannot import standardwebhooks (pip install standardwebhooks==1.1.0, \
             or point HERALD_SW_PYTHON at a Python that has it)",
            python()
        ),
        (false, false) => {
            eprintln!("{test}: SKIPPED (no standardwebhooks for {})", python());
            false
        }
    }
}

impl PyReceiver {
    fn start(secret: &str, fail_every: u32) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/support/standard_webhooks_receiver.py"
        );
        let mut child = Command::new(python())
            .args([script, secret, &fail_every.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Python receiver");
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        out.read_line(&mut first)
            .expect("the receiver's first line");
        let port = first
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("expected `PORT n`, got {first:?}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("receiver line {line:?}: {e}"));
                sink.lock().unwrap().push(v);
            }
        });
        Self { child, port, lines }
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }
}

/// The event ids a request carried, in its body's order.
fn ids_of(line: &Value) -> Vec<String> {
    line["body"]
        .as_array()
        .unwrap_or_else(|| panic!("a batch body is an array: {line}"))
        .iter()
        .map(|e| e["id"].as_str().expect("each event has an id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_keep_order_through_failures_and_verify_with_standard_webhooks() {
    let test = "batches_keep_order_through_failures_and_verify_with_standard_webhooks";
    if !library_or_skip(test) {
        return;
    }
    let (_broker, cfg) = support::broker(support::config());
    let node = TestNode::start(cfg).await;
    let mut api = node.endpoints.clone();

    // The secret is chosen here, so the receiver can start first.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let rx = PyReceiver::start(secret, 3);
    let created = api
        .create_endpoint(pb::CreateEndpointRequest {
            id: "bat".into(),
            url: format!("http://127.0.0.1:{}/hook", rx.port),
            secret: secret.into(),
            batch_max_events: 10,
            batch_linger_ms: 50,
            retry_schedule_ms: vec![100; 10],
            ..Default::default()
        })
        .await
        .expect("create a batching endpoint")
        .into_inner()
        .endpoint
        .expect("the endpoint");
    assert_eq!(
        (created.batch_max_events, created.batch_linger_ms),
        (10, 50)
    );

    let mut published = Vec::new();
    for chunk in 0..EVENTS / 60 {
        let events = (0..60)
            .map(|i| support::publish_req("bat", &format!(r#"{{"n":{}}}"#, chunk * 60 + i)))
            .collect();
        let resp = node
            .events
            .clone()
            .publish_batch(pb::PublishBatchRequest { events })
            .await
            .expect("publish a batch")
            .into_inner();
        published.extend(resp.results.into_iter().map(|r| match r.result {
            Some(pb::publish_result::Result::Ok(ok)) => ok.event_id,
            other => panic!("publish item refused: {other:?}"),
        }));
    }
    assert_eq!(published.len(), EVENTS);

    // Every event accepted once (polling the receiver's own record).
    let deadline = std::time::Instant::now() + GUARD;
    let lines = loop {
        let lines = rx.lines();
        let accepted: usize = lines
            .iter()
            .filter(|l| l["status"] == 204)
            .map(|l| ids_of(l).len())
            .sum();
        if accepted >= EVENTS {
            break lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{accepted} of {EVENTS} events accepted; receiver saw {lines:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };

    assert!(
        lines.iter().all(|l| l["status"] != 400),
        "the library refused a request: {lines:?}"
    );
    let accepted: Vec<String> = lines
        .iter()
        .filter(|l| l["status"] == 204)
        .flat_map(ids_of)
        .collect();
    assert_eq!(
        accepted, published,
        "accepted requests carry every event once, in publish order"
    );
    let largest = lines.iter().map(|l| ids_of(l).len()).max().unwrap_or(0);
    assert!(largest > 1, "no request carried more than one event");
    assert!(largest <= 10, "a request carried {largest} events (max 10)");
    // A failed batch is retried whole: the next request is the same batch.
    let failed: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i]["status"] == 503)
        .collect();
    assert!(!failed.is_empty(), "the receiver failed no request");
    for i in failed {
        let retry = lines
            .get(i + 1)
            .unwrap_or_else(|| panic!("request {i} failed and was never retried"));
        assert_eq!(
            retry["webhook_id"], lines[i]["webhook_id"],
            "{retry} after {}",
            lines[i]
        );
        assert_eq!(ids_of(retry), ids_of(&lines[i]));
    }
    for l in &lines {
        let id = l["webhook_id"].as_str().expect("a webhook-id");
        let n = ids_of(l).len();
        assert!(
            id.starts_with("batch_") && n >= 1,
            "webhook-id {id} for {n} events: a batching endpoint always gets the batch format"
        );
        for e in l["body"].as_array().expect("array") {
            assert_eq!(e["type"], "test.event");
            assert!(e["data"]["n"].is_u64(), "data is the payload: {e}");
        }
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_settings_are_validated_and_updated() {
    let (_broker, cfg) = support::broker(support::config());
    let node = TestNode::start(cfg).await;
    let mut api = node.endpoints.clone();
    let create = |max: u32, linger: u32| pb::CreateEndpointRequest {
        id: "b".into(),
        url: "http://127.0.0.1:9/hook".into(),
        batch_max_events: max,
        batch_linger_ms: linger,
        ..Default::default()
    };
    assert_status(
        api.create_endpoint(create(1001, 0)).await,
        Code::InvalidArgument,
        &["batch_max_events", "1000"],
    );
    assert_status(
        api.create_endpoint(create(5, 10_001)).await,
        Code::InvalidArgument,
        &["batch_linger_ms", "10000"],
    );
    assert_status(
        api.create_endpoint(create(0, 20)).await,
        Code::InvalidArgument,
        &["batch_linger_ms", "batching is off"],
    );

    api.create_endpoint(create(5, 20)).await.expect("create");
    let update = |max: Option<u32>, linger: Option<u32>| pb::UpdateEndpointRequest {
        id: "b".into(),
        batch_max_events: max,
        batch_linger_ms: linger,
        ..Default::default()
    };
    let ep = api
        .update_endpoint(update(None, Some(40)))
        .await
        .expect("update the linger")
        .into_inner();
    assert_eq!((ep.batch_max_events, ep.batch_linger_ms), (5, 40));
    let ep = api
        .update_endpoint(update(Some(0), None))
        .await
        .expect("turn batching off")
        .into_inner();
    assert_eq!(
        (ep.batch_max_events, ep.batch_linger_ms),
        (0, 0),
        "off drops the linger"
    );
    assert_status(
        api.update_endpoint(update(Some(2000), None)).await,
        Code::InvalidArgument,
        &["batch_max_events"],
    );
    node.shutdown().await;
}
