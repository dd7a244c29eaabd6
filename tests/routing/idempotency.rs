//! Idempotency keys across ingest nodes and restarts: two ingest nodes on
//! one broker (one of them also dispatching), the same key published to
//! both at once, then again after one of them restarted; then the attempt
//! log read by message id (a whole fan-out, a direct event).

use crate::common::*;

use crate::support::attempts_tail::AttemptsTail;
use crate::support::{self, TestNode, GUARD};
use herald::node::Roles;
use herald_proto::v1 as pb;
use herald_testkit::fixtures::unique;
use herald_testkit::TestReceiver;
use tonic::Code;

/// Waits until `b`'s registry has read every endpoint `a`'s has.
async fn same_registry(a: &TestNode, b: &TestNode) {
    let next = a.node.registry.progress().borrow().next_offset.clone();
    for (p, &n) in next.iter().enumerate() {
        if n > 0 {
            tokio::time::timeout(GUARD, b.node.registry.wait_applied(p as i32, n - 1))
                .await
                .expect("the second node reads the registry");
        }
    }
}

fn keyed(mut req: pb::PublishRequest, key: &str) -> pb::PublishRequest {
    req.idempotency_key = key.into();
    req
}

/// Publishes `req` through both nodes at once; both must succeed with one
/// answer, exactly one of them writing.
async fn publish_on_both(
    a: &TestNode,
    b: &TestNode,
    req: &pb::PublishRequest,
) -> pb::PublishResponse {
    let (mut ca, mut cb) = (a.events.clone(), b.events.clone());
    let (ra, rb) = tokio::join!(ca.publish(req.clone()), cb.publish(req.clone()));
    let (ra, rb) = (
        ra.expect("node a").into_inner(),
        rb.expect("node b").into_inner(),
    );
    assert_eq!(
        (&ra.event_id, &ra.message_id, ra.fanned_out),
        (&rb.event_id, &rb.message_id, rb.fanned_out),
        "one answer: {ra:?} {rb:?}"
    );
    assert_eq!(
        [ra.duplicate, rb.duplicate].iter().filter(|d| !**d).count(),
        1,
        "exactly one node wrote: {ra:?} {rb:?}"
    );
    ra
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_on_two_ingest_nodes_and_after_a_restart_delivers_once() {
    let (_broker, cfg) = support::broker(support::config());
    let a = TestNode::start(cfg.clone()).await;
    let mut cfg_b = cfg.clone();
    cfg_b.node.id = unique("ingest-b");
    let ingest_only = Roles {
        ingest: true,
        dispatch: false,
    };
    let b = TestNode::start_with(cfg_b.clone(), ingest_only).await;
    let rx = TestReceiver::start().await.unwrap();
    a.create_endpoint("ep", &rx.url_for("ep")).await;
    // crm (the shared table's first row: shop, order.*) and erp (every type).
    let erp = Sub {
        id: "erp",
        types: &[],
        ..SUBS[0]
    };
    for s in [&SUBS[0], &erp] {
        create_sub(&a, &rx, s).await;
    }
    same_registry(&a, &b).await;

    // Direct publishes: one event, whichever node answers.
    let direct = keyed(support::publish_req("ep", r#"{"n":1}"#), "order-1");
    let first = publish_on_both(&a, &b, &direct).await;
    assert!(first.event_id.starts_with("msg_"), "{first:?}");
    // Fan-out: one record per endpoint.
    let fan = keyed(
        fan_out_req("shop", "order.paid", &[], r#"{"amount":5}"#.into()),
        "order-1",
    );
    let fanned = publish_on_both(&a, &b, &fan).await;
    assert_eq!(fanned.fanned_out, 2, "{fanned:?}");

    // The same key with another request is refused on both nodes, for both kinds.
    let other = keyed(support::publish_req("ep", r#"{"n":2}"#), "order-1");
    let other_fan = keyed(
        fan_out_req("shop", "order.paid", &["eu"], r#"{"amount":5}"#.into()),
        "order-1",
    );
    for node in [&a, &b] {
        let refused = node.events.clone().publish(other.clone()).await;
        assert_status(
            refused,
            Code::FailedPrecondition,
            &["idempotency_key", "different request"],
        );
        let refused = node.events.clone().publish(other_fan.clone()).await;
        assert_status(refused, Code::FailedPrecondition, &["idempotency_key"]);
    }

    // The ingest-only node restarts: it knows the keys again from the topic.
    b.shutdown().await;
    cfg_b.node.id = unique("ingest-b-again");
    let b = TestNode::start_with(cfg_b, ingest_only).await;
    let again = b
        .events
        .clone()
        .publish(direct.clone())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(
        (again.event_id.as_str(), again.duplicate),
        (first.event_id.as_str(), true)
    );
    let again = b
        .events
        .clone()
        .publish(fan.clone())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(
        (again.message_id.as_str(), again.fanned_out, again.duplicate),
        (fanned.message_id.as_str(), 2, true)
    );
    assert_status(
        b.events.clone().publish(other).await,
        Code::FailedPrecondition,
        &["idempotency_key"],
    );
    // In one batch, a repeated key gets the first item's answer.
    let batch = b
        .events
        .clone()
        .publish_batch(pb::PublishBatchRequest {
            events: vec![
                keyed(support::publish_req("ep", r#"{"n":3}"#), "order-3"),
                keyed(support::publish_req("ep", r#"{"n":3}"#), "order-3"),
                keyed(support::publish_req("ep", r#"{"n":4}"#), "order-3"),
            ],
        })
        .await
        .expect("batch")
        .into_inner();
    let results: Vec<_> = batch.results.iter().map(|r| r.result.clone()).collect();
    let ok = |i: usize| match &results[i] {
        Some(pb::publish_result::Result::Ok(ok)) => ok.clone(),
        other => panic!("item {i}: {other:?}"),
    };
    let (third, repeat) = (ok(0), ok(1));
    assert_eq!(
        (repeat.event_id.as_str(), repeat.duplicate, third.duplicate),
        (third.event_id.as_str(), true, false)
    );
    match &results[2] {
        Some(pb::publish_result::Result::Error(e)) => {
            assert_eq!(e.code, "FAILED_PRECONDITION", "{e:?}")
        }
        other => panic!("item 2: {other:?}"),
    }

    // Caller-chosen ids cannot enter the derived namespaces.
    for id in ["msg_abc", "evf_abc", "test_abc", "batch_abc"] {
        let mut req = support::publish_req("ep", "{}");
        req.event_id = id.into();
        assert_status(
            b.events.clone().publish(req).await,
            Code::InvalidArgument,
            &["event_id", "reserved"],
        );
    }

    // A marker after everything: each endpoint's records arrive in order, so
    // once the markers are in, any second copy would have been too.
    let mut markers = vec![a.publish("ep", "{}").await.event_id];
    for ep in ["crm", "erp"] {
        markers.push(a.publish(ep, "{}").await.event_id);
    }
    rx.wait_for_ids(&markers, GUARD)
        .await
        .expect("markers delivered");
    let ids = |path: &str| -> Vec<String> {
        rx.requests_for(path)
            .iter()
            .map(|r| r.webhook_id().to_string())
            .collect()
    };
    assert_eq!(
        ids("ep"),
        vec![
            first.event_id.clone(),
            third.event_id.clone(),
            markers[0].clone()
        ]
    );
    for (i, ep) in ["crm", "erp"].iter().enumerate() {
        let got = ids(ep);
        assert_eq!(got.len(), 2, "{ep}: {got:?}");
        assert_eq!(
            got[0],
            herald_catalog::fanout_event_id(&fanned.message_id, ep)
        );
        assert_eq!(got[1], markers[i + 1]);
    }

    // The attempt log by message: the whole fan-out (both endpoints), and a
    // direct publish by its event id, each read from one partition.
    let tail = AttemptsTail::start(&cfg.kafka.brokers, &cfg.kafka.attempts_topic, 0);
    let wanted = [fanned.message_id.clone(), first.event_id.clone()];
    tail.wait_for(
        |recs| {
            wanted
                .iter()
                .all(|m| recs.iter().any(|r| &r.message_id == m))
                && recs
                    .iter()
                    .filter(|r| r.message_id == fanned.message_id)
                    .count()
                    >= 2
        },
        GUARD,
    )
    .await
    .expect("the attempts are logged");
    let by_message = |message_id: &str| pb::ListAttemptsRequest {
        message_id: message_id.into(),
        ..Default::default()
    };
    let listed = b
        .events
        .clone()
        .list_attempts(by_message(&fanned.message_id))
        .await
        .expect("ListAttempts by message")
        .into_inner()
        .attempts;
    let mut seen: Vec<(String, String, String)> = listed
        .iter()
        .map(|a| {
            (
                a.endpoint_id.clone(),
                a.event_id.clone(),
                a.message_id.clone(),
            )
        })
        .collect();
    seen.sort();
    let expected: Vec<(String, String, String)> = ["crm", "erp"]
        .iter()
        .map(|ep| {
            (
                ep.to_string(),
                herald_catalog::fanout_event_id(&fanned.message_id, ep),
                fanned.message_id.clone(),
            )
        })
        .collect();
    assert_eq!(seen, expected);
    let direct_attempts = b
        .events
        .clone()
        .list_attempts(by_message(&first.event_id))
        .await
        .expect("ListAttempts by event id")
        .into_inner()
        .attempts;
    assert_eq!(direct_attempts.len(), 1, "{direct_attempts:?}");
    assert_eq!(
        (
            direct_attempts[0].endpoint_id.as_str(),
            direct_attempts[0].outcome.as_str()
        ),
        ("ep", "success")
    );
    // Neither an endpoint nor a message: refused, naming both.
    assert_status(
        b.events
            .clone()
            .list_attempts(pb::ListAttemptsRequest::default())
            .await,
        Code::InvalidArgument,
        &["endpoint_id", "message_id"],
    );
    b.shutdown().await;
    a.shutdown().await;
}

/// The idempotency topic's end (its records so far).
fn idempotency_records(cfg: &herald_core::config::Config) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .create()
        .expect("watermark reader");
    c.fetch_watermarks(&cfg.kafka.idempotency_topic, 0, GUARD)
        .expect("idempotency topic watermarks")
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_batch_is_claimed_in_a_few_records_and_known_to_a_new_node() {
    let (_broker, cfg) = support::broker(support::config());
    let a = TestNode::start(cfg.clone()).await;
    let rx = TestReceiver::start().await.unwrap();
    a.create_endpoint("ep", &rx.url_for("ep")).await;
    let batch = pb::PublishBatchRequest {
        events: (0..50)
            .map(|i| {
                keyed(
                    support::publish_req("ep", &format!(r#"{{"n":{i}}}"#)),
                    &format!("k-{i}"),
                )
            })
            .collect(),
    };
    let before = idempotency_records(&cfg);
    let first = a
        .events
        .clone()
        .publish_batch(batch.clone())
        .await
        .expect("batch")
        .into_inner();
    let ids = |resp: &pb::PublishBatchResponse, duplicate: bool| -> Vec<String> {
        resp.results
            .iter()
            .enumerate()
            .map(|(i, r)| match &r.result {
                Some(pb::publish_result::Result::Ok(ok)) => {
                    assert_eq!(ok.duplicate, duplicate, "item {i}: {ok:?}");
                    ok.event_id.clone()
                }
                other => panic!("item {i}: {other:?}"),
            })
            .collect()
    };
    let written = ids(&first, false);
    // 50 claims and 50 answers, written as they became ready together: the
    // writer sends at most 4 Kafka records at once, and a call queues all
    // its claims (then all its answers) before any of them is acknowledged,
    // so each side takes at most 5 records (one per call would be 100).
    let added = idempotency_records(&cfg) - before;
    assert!((2..=10).contains(&added), "{added} records for 50 keys");

    // A node started now reads the batched records back and answers every
    // key with the first call's event ids, writing nothing.
    let mut cfg_b = cfg.clone();
    cfg_b.node.id = unique("ingest-b");
    let b = TestNode::start_with(
        cfg_b,
        Roles {
            ingest: true,
            dispatch: false,
        },
    )
    .await;
    let again = b
        .events
        .clone()
        .publish_batch(batch)
        .await
        .expect("batch again")
        .into_inner();
    assert_eq!(ids(&again, true), written);
    rx.wait_for_ids(&written, GUARD)
        .await
        .expect("the batch is delivered");
    assert_eq!(rx.requests_for("ep").len(), 50, "each event once");
    b.shutdown().await;
    a.shutdown().await;
}
