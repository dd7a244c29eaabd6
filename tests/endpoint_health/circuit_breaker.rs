//! The circuit breaker and operator webhooks (issue 4), end to end: a
//! broker process, real HTTP receivers on port 0 and one in-process node
//! ([`crate::support::health::Cluster`]).
//!
//! - `circuit_breaker_opens_and_closes` and
//!   `open_circuit_sends_nothing_until_the_cool_down_ends`: the breaker, its
//!   metric and its operational events.
//! - `operator_endpoint_receives_ops_webhooks`: operational events as webhooks.
//!
//! The only timing assertions are the ones the issue specifies (the rate
//! window, `Retry-After`, the breaker's cool-down), checked with the
//! receiver's recorded arrival `Instant`s; they are lower bounds or window
//! counts, never "fast enough". Every wait is on a condition (receiver,
//! dead-letter or operations topic, registry) with a generous failure guard.
//! Metric assertions use `>=`, because under `cargo test` the in-process
//! nodes of all tests share one recorder. Each test prints its run directory
//! (config and child logs).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::health::{at, endpoint, gaps, payloads, retry_section, Cluster};
use crate::support::{metric_sum_with, GUARD};
use herald_signing::Secret;
use herald_testkit::fixtures::now_unix;
use herald_testkit::{first_arrivals, Policy, Recorded, Reply, TestReceiver};
// ----- circuit breaker -----------------------------------------------------------

/// `failures_to_open = 3`, `cool_down = 1s`: an always-failing endpoint opens
/// its circuit (metric and `circuit.opened` on the operations topic); once it
/// is healthy again the circuit closes (`circuit.closed`) and its events are
/// delivered, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_opens_and_closes() {
    let retry = retry_section("100ms", 200);
    let c = Cluster::start(
        "breaker",
        &[
            (
                "endpoint_health",
                "failures_to_open = 3\ncool_down = \"1s\"",
            ),
            ("retry", &retry),
        ],
    )
    .await;
    let healthy = Arc::new(AtomicBool::new(false));
    let policy = {
        let healthy = healthy.clone();
        Policy::new(move |_, _| {
            Reply::status(if healthy.load(Ordering::SeqCst) {
                200
            } else {
                500
            })
        })
    };
    let rx = TestReceiver::with_policy(policy).await.unwrap();
    c.create_endpoint(endpoint("flaky", rx.url_for("flaky")))
        .await;
    let ids = c.publish_all("flaky", &payloads("flaky", 5)).await;

    let opened = c.ops.wait_kind("circuit.opened", "flaky", GUARD).await;
    assert_eq!(
        opened.key, "flaky",
        "operations records are keyed by endpoint"
    );
    assert_eq!(
        opened.value["detail"]["cool_down_ms"], 1000,
        "{}",
        opened.value
    );
    assert!(
        opened.value["at_ms"].as_i64().is_some_and(|t| t > 0),
        "{}",
        opened.value
    );
    assert!(
        at(&rx, "flaky").len() >= 3,
        "the circuit opened after 3 failures"
    );
    // The counter is bumped before the operational event is written.
    let metrics = c.node().metrics().await;
    let open = metric_sum_with(
        &metrics,
        "herald_circuit_transitions_total",
        r#"state="open""#,
    );
    assert!(open.is_some_and(|v| v >= 1.0), "open transitions: {open:?}");

    healthy.store(true, Ordering::SeqCst);
    c.ops.wait_kind("circuit.closed", "flaky", GUARD).await;
    rx.wait_for_ids(&ids, GUARD).await.unwrap();
    let order: Vec<String> = first_arrivals(&at(&rx, "flaky"))
        .iter()
        .map(|r| r.webhook_id().to_string())
        .collect();
    assert_eq!(order, ids, "delivered in order once the circuit closed");
    let metrics = c.node().metrics().await;
    let closed = metric_sum_with(
        &metrics,
        "herald_circuit_transitions_total",
        r#"state="closed""#,
    );
    assert!(
        closed.is_some_and(|v| v >= 1.0),
        "closed transitions: {closed:?}"
    );
    c.shutdown().await;
}

/// The breaker's spec, measured at the receiver: once the circuit is open the
/// endpoint gets no request until the cool-down has passed; then one probe;
/// a failed probe re-opens it for another cool-down. The endpoint fails its
/// first 5 requests (3 open the circuit, 2 probes fail), then succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_circuit_sends_nothing_until_the_cool_down_ends() {
    const COOL_DOWN: Duration = Duration::from_secs(1);
    let retry = retry_section("100ms", 50);
    let c = Cluster::start(
        "cool-down",
        &[
            (
                "endpoint_health",
                "failures_to_open = 3\ncool_down = \"1s\"",
            ),
            ("retry", &retry),
        ],
    )
    .await;
    let rx = TestReceiver::with_policy(Policy::new(|_, n| {
        Reply::status(if n <= 5 { 500 } else { 200 })
    }))
    .await
    .unwrap();
    c.create_endpoint(endpoint("cooling", rx.url_for("cooling")))
        .await;
    let ids = c.publish_all("cooling", &payloads("cool", 2)).await;
    rx.wait_for_ids(&ids, GUARD).await.unwrap();
    c.ops.wait_kind("circuit.closed", "cooling", GUARD).await;

    let reqs = at(&rx, "cooling");
    // Requests 4, 5 and 6 (index 3..=5) each follow a failure that left the
    // circuit open.
    assert!(reqs.len() >= 6, "{} requests", reqs.len());
    for i in 3..=5 {
        let gap = reqs[i].at - reqs[i - 1].at;
        assert!(
            gap >= COOL_DOWN,
            "request {} came {gap:?} after request {} although the circuit was open (cool-down {COOL_DOWN:?}); gaps between requests: {:?}",
            i + 1,
            i,
            gaps(&reqs)
        );
    }
    c.shutdown().await;
}

// ----- operator webhooks ------------------------------------------------------------

/// `endpoint_health.operator_endpoint` names an endpoint: a circuit opening
/// on another endpoint reaches it as a signed webhook whose JSON body says
/// `"type":"circuit.opened"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_endpoint_receives_ops_webhooks() {
    let retry = retry_section("100ms", 50);
    let c = Cluster::start(
        "operator",
        &[
            (
                "endpoint_health",
                "failures_to_open = 2\ncool_down = \"60s\"\noperator_endpoint = \"ops-hook\"",
            ),
            ("retry", &retry),
        ],
    )
    .await;
    let rx = TestReceiver::with_policy(Policy::by_path(
        [("flaky".to_string(), Policy::always(500))],
        Policy::always(200),
    ))
    .await
    .unwrap();
    let (_, ops_secret) = c
        .create_endpoint(endpoint("ops-hook", rx.url_for("ops-hook")))
        .await;
    c.create_endpoint(endpoint("flaky", rx.url_for("flaky")))
        .await;
    c.publish_all("flaky", &payloads("flaky", 1)).await;

    let is_opened = |r: &Recorded| {
        r.path == "/ops-hook"
            && serde_json::from_slice::<serde_json::Value>(&r.body)
                .is_ok_and(|v| v["type"] == "circuit.opened")
    };
    rx.wait_for(|all| all.iter().any(is_opened), GUARD)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the operator endpoint got no circuit.opened webhook: {e}; operations topic: {:?}",
                c.ops
                    .records()
                    .iter()
                    .map(|r| r.value.to_string())
                    .collect::<Vec<_>>()
            )
        });
    let hook = rx
        .requests()
        .into_iter()
        .find(|r| is_opened(r))
        .expect("just seen");
    let body: serde_json::Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(body["endpoint_id"], "flaky", "{body}");
    assert!(body["at_ms"].as_i64().is_some_and(|t| t > 0), "{body}");
    hook.verify(&[Secret::parse(&ops_secret).unwrap()], now_unix())
        .expect("the operator webhook is signed with the operator endpoint's secret");
    // The same event is on the operations topic.
    c.ops.wait_kind("circuit.opened", "flaky", GUARD).await;
    assert!(
        c.ops.records().iter().all(|r| r.endpoint() != "ops-hook"),
        "nothing reports on the operator endpoint itself"
    );
    c.shutdown().await;
}
