//! A broker failure in the middle of a keyed fan-out, then a retry with the
//! same idempotency key: every subscribed endpoint gets exactly one record.
//!
//! The failure is injected at the fan-out's fault point
//! (`fanout-after-chunk`, compiled in by `herald-ingest`'s `failpoints`
//! feature): after its second chunk is acknowledged and its progress
//! recorded, the write fails as a produce to a broker that went away does.
//! The point is process-wide, so this test has a binary of its own.
//!
//! "Exactly one" is checked without waiting on time: after the retry, one
//! more fan-out (a marker) goes to the same ordered endpoints; once each has
//! received its marker, anything the retry wrote before it has arrived too.

mod support;

use std::collections::BTreeMap;

use herald_proto::v1 as pb;
use herald_testkit::TestReceiver;
use support::{TestNode, GUARD};
use tonic::Code;

const TARGETS: usize = 10;

fn fan_out(key: &str, payload: &str) -> pb::PublishRequest {
    pb::PublishRequest {
        app_id: "shop".into(),
        event_type: "order.created".into(),
        payload: payload.into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_failing_midway_then_retried_writes_each_endpoint_once() {
    let mut cfg = support::config();
    cfg.grpc.fanout_chunk_records = 3;
    let (_broker, cfg) = support::broker(cfg);
    let node = TestNode::start(cfg).await;
    let rx = TestReceiver::start().await.unwrap();
    for i in 0..TARGETS {
        node.endpoints
            .clone()
            .create_endpoint(pb::CreateEndpointRequest {
                id: format!("t-{i:02}"),
                url: rx.url_for(&format!("t-{i:02}")),
                app_id: "shop".into(),
                event_types: vec!["order.*".into()],
                ..Default::default()
            })
            .await
            .expect("create a subscribed endpoint");
    }
    let mut events = node.events.clone();

    // Chunks of 3 over 10 targets: 4 chunks. The first passes; after the
    // second the broker "fails".
    fail::cfg("fanout-after-chunk", "1*off->1*return").expect("configure the fault");
    let err = events
        .publish(fan_out("order-1", r#"{"n":1}"#))
        .await
        .expect_err("the fan-out fails midway");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    fail::remove("fanout-after-chunk");

    let answer = events
        .publish(fan_out("order-1", r#"{"n":1}"#))
        .await
        .expect("the retry with the same key completes it")
        .into_inner();
    assert_eq!(answer.fanned_out, TARGETS as u32, "{answer:?}");
    assert!(
        !answer.duplicate,
        "the first call did not finish: {answer:?}"
    );
    let again = events
        .publish(fan_out("order-1", r#"{"n":1}"#))
        .await
        .expect("a third call")
        .into_inner();
    assert!(
        again.duplicate && again.message_id == answer.message_id,
        "{again:?}"
    );

    let marker = events
        .publish(fan_out("", r#"{"n":"marker"}"#))
        .await
        .expect("the marker fan-out")
        .into_inner();
    let markers: Vec<String> = (0..TARGETS)
        .map(|i| herald_catalog::fanout_event_id(&marker.message_id, &format!("t-{i:02}")))
        .collect();
    rx.wait_for_ids(&markers, GUARD)
        .await
        .expect("every endpoint receives the marker");

    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..TARGETS {
        let path = format!("t-{i:02}");
        let want = herald_catalog::fanout_event_id(&answer.message_id, &path);
        let got = rx
            .requests_for(&path)
            .iter()
            .filter(|r| r.webhook_id() == want)
            .count();
        copies.insert(path, got);
    }
    assert!(
        copies.values().all(|&n| n == 1),
        "each endpoint gets the event exactly once: {copies:?}"
    );
    node.shutdown().await;
}
