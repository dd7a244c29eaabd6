//! Dead-letter replay end to end: events exhausted against a failing
//! receiver land in the dead-letter topic; `ReplayDeadLetters` re-delivers
//! them in their original order, exactly once (a second replay skips them,
//! `force` sends them again), optionally to another endpoint, and
//! `ListDeadLetters` shows them as replayed.
//!
//! The broker runs as its own process (`herald-it-node mock-broker`); the
//! node (ingest and dispatcher) runs in the test process
//! ([`ProcessCluster`]).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use herald::node::Roles;
use herald_proto::v1 as pb;
use herald_proto::v1::dead_letter_service_client::DeadLetterServiceClient;
use herald_testkit::{Policy, Reply, TestReceiver};
use support::cluster::ProcessCluster;
use support::dlq::DlqTail;
use support::ledger::Ledger;
use support::procs;
use support::GUARD;

const PARTITIONS: i32 = 4;

async fn replay(
    client: &mut DeadLetterServiceClient<tonic::transport::Channel>,
    req: pb::ReplayDeadLettersRequest,
) -> pb::ReplayProgress {
    let mut stream = client
        .replay_dead_letters(req)
        .await
        .expect("replay starts")
        .into_inner();
    let mut last = None;
    while let Some(p) = stream.message().await.expect("replay progress") {
        last = Some(p);
    }
    let last = last.expect("at least one progress message");
    assert!(last.done, "the last progress message says done: {last:?}");
    last
}

/// Webhook ids of the 2xx deliveries to `path`, in arrival order.
fn delivered(receiver: &TestReceiver, path: &str) -> Vec<String> {
    receiver
        .requests_for(path)
        .iter()
        .map(|r| r.webhook_id().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replay_in_order_and_once() {
    let c = ProcessCluster::start_with(
        "replay",
        &procs::config_text(
            PARTITIONS,
            &[
                ("retry", "schedule = [\"50ms\", \"50ms\"]\njitter = 0.0"),
                ("endpoint_health", "failures_to_open = 0"),
            ],
        ),
        Roles::ALL,
    )
    .await;
    let node = c.node();

    // The receiver fails /orig until healed; /other always succeeds. Only
    // 2xx answers count as deliveries below (failed attempts are filtered).
    let healed = Arc::new(AtomicBool::new(false));
    let policy = {
        let healed = healed.clone();
        Policy::new(move |r, _| {
            if r.path == "/orig" && !healed.load(Ordering::SeqCst) {
                Reply::status(500)
            } else {
                Reply::status(200)
            }
        })
    };
    let receiver = TestReceiver::with_policy(policy).await.unwrap();
    node.create_endpoint("orig", &receiver.url_for("orig"))
        .await;
    node.create_endpoint("other", &receiver.url_for("other"))
        .await;

    // Five events in one batch: the head exhausts its retries, the four
    // behind it follow it to the dead-letter topic (ordered endpoint).
    let batch = pb::PublishBatchRequest {
        events: (0..5)
            .map(|i| support::publish_req("orig", &format!("{{\"n\":{i}}}")))
            .collect(),
    };
    let published: Vec<String> = node
        .events
        .clone()
        .publish_batch(batch)
        .await
        .unwrap()
        .into_inner()
        .results
        .into_iter()
        .map(|r| match r.result {
            Some(pb::publish_result::Result::Ok(ok)) => ok.event_id,
            other => panic!("publish failed: {other:?}"),
        })
        .collect();
    let ledger = Ledger::new();
    let dlq = DlqTail::start(c.bootstrap(), "herald.dlq", PARTITIONS, ledger.clone());
    ledger
        .wait_until(|_| dlq.len() >= 5, GUARD)
        .await
        .expect("five dead letters");
    let dead: Vec<String> = dlq
        .records()
        .iter()
        .map(|d| d.header("herald-event-id").to_string())
        .collect();
    assert_eq!(dead, published, "dead letters are in publish order");

    let mut client = DeadLetterServiceClient::connect(format!(
        "http://{}",
        node.node.grpc_addr.expect("ingest runs")
    ))
    .await
    .unwrap();
    let listed = client
        .list_dead_letters(pb::ListDeadLettersRequest {
            endpoint_id: "orig".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .dead_letters;
    assert_eq!(
        listed
            .iter()
            .map(|d| d.event_id.clone())
            .collect::<Vec<_>>(),
        published
    );
    assert_eq!(listed[0].reason, "attempts_exhausted");
    assert!(listed[1..]
        .iter()
        .all(|d| d.reason == "predecessor_dead_lettered"));
    assert!(listed.iter().all(|d| !d.replayed));

    // Replay to the healed endpoint: every dead letter once, in order.
    healed.store(true, Ordering::SeqCst);
    let before = receiver.requests_for("orig").len();
    let p = replay(
        &mut client,
        pb::ReplayDeadLettersRequest {
            endpoint_id: "orig".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!((p.total, p.replayed, p.skipped), (5, 5, 0));
    receiver
        .wait_for(
            |all| all.iter().filter(|r| r.path == "/orig").count() >= before + 5,
            GUARD,
        )
        .await
        .expect("replayed events arrive");
    assert_eq!(
        delivered(&receiver, "orig")[before..],
        published[..],
        "replayed in original order"
    );

    // A second replay skips them. A sentinel published afterwards arrives
    // next: had anything been re-sent, it would have come first (ordered).
    let p = replay(
        &mut client,
        pb::ReplayDeadLettersRequest {
            endpoint_id: "orig".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!((p.total, p.replayed, p.skipped), (5, 0, 5));
    let sentinel = node.publish("orig", "{\"sentinel\":1}").await.event_id;
    receiver
        .wait_for(|all| all.iter().any(|r| r.webhook_id() == sentinel), GUARD)
        .await
        .expect("sentinel arrives");
    assert_eq!(
        &delivered(&receiver, "orig")[before + 5..],
        std::slice::from_ref(&sentinel),
        "nothing re-sent"
    );
    let listed = client
        .list_dead_letters(pb::ListDeadLettersRequest {
            endpoint_id: "orig".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .dead_letters;
    assert!(
        listed.iter().all(|d| d.replayed),
        "all marked replayed: {listed:?}"
    );

    // `force` sends them again, here to another endpoint, in order.
    let p = replay(
        &mut client,
        pb::ReplayDeadLettersRequest {
            endpoint_id: "orig".into(),
            target_endpoint_id: "other".into(),
            force: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!((p.total, p.replayed, p.skipped), (5, 5, 0));
    receiver
        .wait_for(
            |all| all.iter().filter(|r| r.path == "/other").count() >= 5,
            GUARD,
        )
        .await
        .expect("forced replay arrives at the other endpoint");
    assert_eq!(
        delivered(&receiver, "other"),
        published,
        "same webhook ids, original order"
    );

    // Bad requests name the field.
    let err = client
        .list_dead_letters(pb::ListDeadLettersRequest {
            endpoint_id: "bad id".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("endpoint_id"), "{}", err.message());
    let err = client
        .replay_dead_letters(pb::ReplayDeadLettersRequest {
            endpoint_id: "orig".into(),
            target_endpoint_id: "missing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    c.shutdown().await;
}
