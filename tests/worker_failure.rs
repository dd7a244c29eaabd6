//! Issue 12, scenario 12: a partition worker that panics is never silent.
//! The panic is injected at the worker's record intake (`fail` point
//! `dispatch-worker-record`, compiled in by `herald-dispatch`'s
//! `failpoints` feature; process-wide, so this test has a binary of its
//! own). The node must say so: the worker-failure counter counts it, the
//! dispatcher leaves readiness, and the node stops with an error naming the
//! failed partition. A node started again on the same broker delivers the
//! event: nothing was committed past it.

mod support;

use herald_testkit::TestReceiver;
use support::{metric_sum, TestNode, GUARD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_panic_fails_the_node_and_loses_nothing() {
    let (broker, cfg) = support::broker(support::config());
    let node = TestNode::start(cfg.clone()).await;
    let rx = TestReceiver::start().await.unwrap();
    node.create_endpoint("ep", &rx.url_for("ep")).await;

    fail::cfg("dispatch-worker-record", "1*panic(injected worker failure)")
        .expect("configure the fault");
    let published = node.publish("ep", r#"{"n":1}"#).await;

    // The failure is counted and the dispatcher leaves readiness (polled:
    // a real condition, bounded by the guard).
    let deadline = std::time::Instant::now() + GUARD;
    loop {
        let failures = metric_sum(&node.metrics().await, "herald_worker_failures_total");
        let (ready, detail) = node.node.health.report();
        if failures == Some(1.0) && !ready {
            let why = detail["components"]["dispatcher"]["reason"].to_string();
            assert!(why.contains("worker"), "{detail}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no sign of the failed worker: failures {failures:?}, ready {ready}, {detail}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    fail::remove("dispatch-worker-record");
    let err = tokio::time::timeout(GUARD, node.node.shutdown())
        .await
        .expect("the node stops in time")
        .expect_err("a node whose worker failed stops with an error");
    let text = format!("{err:#}");
    assert!(
        text.contains("injected worker failure") || text.contains("worker"),
        "{text}"
    );
    assert!(
        rx.requests_for("ep").is_empty(),
        "the event was not delivered before the failure"
    );

    // Restarted from committed state: the event arrives.
    let again = TestNode::start(cfg).await;
    rx.wait_for_ids(&[&published.event_id], GUARD)
        .await
        .expect("the restarted node delivers the event");
    again.shutdown().await;
    drop(broker);
}
