//! `SendTestEvent`.

use crate::common::*;

use crate::support::TestNode;
use herald_proto::v1 as pb;
use herald_testkit::{Policy, Reply, TestReceiver};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_event_reports_the_first_attempt() {
    let (_broker, cfg) = crate::support::broker(crate::support::config());
    let node = TestNode::start(cfg).await;
    let rx = TestReceiver::with_policy(Policy::new(|r, _| {
        if r.path == "/broken" {
            Reply::status(500).body("not today")
        } else {
            Reply::status(204)
        }
    }))
    .await
    .unwrap();
    node.create_endpoint("works", &rx.url_for("works")).await;
    node.create_endpoint("broken", &rx.url_for("broken")).await;
    let mut endpoints = node.endpoints.clone();
    let test = |id: &str| pb::SendTestEventRequest {
        id: id.into(),
        ..Default::default()
    };

    let ok = endpoints
        .send_test_event(test("works"))
        .await
        .expect("test event")
        .into_inner();
    assert!(ok.attempted, "{ok:?}");
    assert_eq!((ok.status, ok.outcome.as_str()), (204, "success"), "{ok:?}");
    assert!(ok.event_id.starts_with("test_"), "{}", ok.event_id);
    let got = rx.requests_for("works");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].webhook_id(), ok.event_id);
    assert!(got[0]
        .header("webhook-signature")
        .is_some_and(|s| s.starts_with("v1,")));
    let body: serde_json::Value = serde_json::from_str(&got[0].body_text()).unwrap();
    assert_eq!(
        (body["test"].as_bool(), body["type"].as_str()),
        (Some(true), Some("herald.test"))
    );

    let bad = endpoints
        .send_test_event(pb::SendTestEventRequest {
            id: "broken".into(),
            event_type: "order.paid".into(),
            payload: r#"{"amount":1}"#.into(),
            ..Default::default()
        })
        .await
        .expect("test event")
        .into_inner();
    assert!(bad.attempted, "{bad:?}");
    assert_eq!(
        (bad.status, bad.outcome.as_str(), bad.response_body.as_str()),
        (500, "retryable", "not today"),
        "{bad:?}"
    );

    assert_status(
        endpoints.send_test_event(test("nope")).await,
        Code::NotFound,
        &["nope"],
    );
    endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "works".into(),
            enabled: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_status(
        endpoints.send_test_event(test("works")).await,
        Code::FailedPrecondition,
        &["disabled"],
    );
    node.shutdown().await;
}
