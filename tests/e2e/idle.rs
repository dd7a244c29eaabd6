//! An idle node's consumers pause fetching (`kafka.idle_pause_after_ms`)
//! and the node still delivers what is published while they sleep: every
//! event, once, in order per endpoint, across several quiet spells, and
//! after a second dispatcher joins the group while the first one is paused
//! (the new assignment fetches again). The registry and idempotency readers
//! sleep too: an endpoint created during a quiet spell is known at once (its
//! create waits for the read-back), and a keyed publish is claimed and
//! answered, then recognised when repeated. Writes through the node's own
//! producer wake its consumers at once (a nudge); records written by
//! another process are found by the sleeping dispatchers' probes.
//!
//! Each round waits until the node reports `herald_dispatch_idle_paused 1`
//! (a real condition, polled under the guard), then publishes.

use std::collections::HashMap;

use crate::support::{
    metric_sum, publish_req, publish_round, start_dispatcher, wait_metric, TestNode, GUARD,
};
use herald_proto::v1 as pb;
use herald_testkit::fixtures::now_unix;
use herald_testkit::{first_arrivals, TestReceiver};
use prost::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const ENDPOINTS: usize = 8;
const PER_ENDPOINT: usize = 5;

fn paused(text: &str) -> bool {
    metric_sum(text, "herald_dispatch_idle_paused") == Some(1.0)
}

/// Asserts that each endpoint's events first arrived in publish order, and
/// returns how many deliveries were repeats.
fn check_order(receiver: &TestReceiver, sent: &[(String, pb::PublishResponse)]) -> usize {
    let requests = receiver.requests();
    let position: HashMap<&str, usize> = first_arrivals(&requests)
        .into_iter()
        .enumerate()
        .map(|(i, r)| (r.webhook_id(), i))
        .collect();
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (ep, p) in sent {
        let at = position[p.event_id.as_str()];
        if let Some(prev) = last.insert(ep.as_str(), at) {
            assert!(prev < at, "{ep}: event {} arrived out of order", p.event_id);
        }
    }
    requests.len() - position.len()
}

/// Writes one event per endpoint with a plain Kafka producer, as an ingest
/// node in another process would; returns their event ids.
async fn write_from_outside(brokers: &str, topic: &str) -> Vec<String> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    let mut ids = Vec::new();
    for i in 0..ENDPOINTS {
        let endpoint = format!("q-{i:02}");
        let event_id = format!("msg_outside_{i:02}");
        let envelope = pb::EventEnvelope {
            event_id: event_id.clone(),
            endpoint_id: endpoint.clone(),
            event_type: "test.event".into(),
            payload: br#"{"outside":true}"#.to_vec().into(),
            created_at_ms: now_unix() * 1000,
            ..Default::default()
        }
        .encode_to_vec();
        producer
            .send(
                FutureRecord::to(topic).key(&endpoint).payload(&envelope),
                std::time::Duration::from_secs(10),
            )
            .await
            .expect("outside record written");
        ids.push(event_id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_dispatcher_pauses_and_still_delivers() {
    let mut cfg = crate::support::config();
    cfg.dispatch.fetch_wait_max_ms = 5;
    cfg.kafka.idle_pause_after_ms = 100;
    cfg.kafka.idle_probe_interval_ms = 50;
    cfg.dispatch.static_membership = true;
    let (_broker, cfg) = crate::support::broker(cfg);
    let mut cfg_a = cfg.clone();
    cfg_a.node.id = "idle-a".into();
    let (brokers, events_topic) = (cfg.kafka.brokers.clone(), cfg.kafka.events_topic.clone());
    let mut cfg_b = cfg;
    cfg_b.node.id = "idle-b".into();

    let receiver = TestReceiver::start().await.unwrap();
    let a = TestNode::start(cfg_a).await;
    for i in 0..ENDPOINTS {
        let id = format!("q-{i:02}");
        a.create_endpoint(&id, &receiver.url_for(&id)).await;
    }

    // Three quiet spells on one node: nothing lost, nothing sent twice.
    let mut sent = Vec::new();
    for round in 0..3 {
        wait_metric(&a.node, "node A pauses for idleness", paused).await;
        sent.extend(publish_round(&a, &receiver, ("q", ENDPOINTS), round, PER_ENDPOINT).await);
    }
    assert_eq!(
        check_order(&receiver, &sent),
        0,
        "a pause and a resume re-send nothing"
    );

    // The registry and the idempotency ledger wake for their records.
    wait_metric(&a.node, "node A pauses before a new endpoint", paused).await;
    a.create_endpoint("q-late", &receiver.url_for("q-late"))
        .await;
    let keyed = pb::PublishRequest {
        idempotency_key: "late-1".into(),
        ..publish_req("q-late", r#"{"late":1}"#)
    };
    let first = a
        .events
        .clone()
        .publish(keyed.clone())
        .await
        .expect("keyed publish")
        .into_inner();
    assert!(!first.duplicate);
    let again = a
        .events
        .clone()
        .publish(keyed)
        .await
        .expect("repeated keyed publish")
        .into_inner();
    assert!(
        again.duplicate,
        "the claim was read back: the repeat is known"
    );
    assert_eq!(again.event_id, first.event_id);
    receiver
        .wait_for_ids(std::slice::from_ref(&first.event_id), GUARD)
        .await
        .expect("the new endpoint's event is delivered");

    // B joins while A sleeps: both fetch their new assignment, then sleep.
    wait_metric(&a.node, "node A pauses before B joins", paused).await;
    let b = start_dispatcher(cfg_b).await;
    wait_metric(
        &a.node,
        "A keeps two of the four partitions and pauses",
        |m| metric_sum(m, "herald_partitions_assigned") == Some(2.0) && paused(m),
    )
    .await;
    wait_metric(&b, "node B pauses for idleness", paused).await;
    for round in 3..5 {
        wait_metric(&a.node, "node A pauses again", paused).await;
        sent.extend(publish_round(&a, &receiver, ("q", ENDPOINTS), round, PER_ENDPOINT).await);
    }
    // Records from elsewhere (another process's ingest) bring no nudge:
    // the sleeping dispatchers find them in a probe.
    wait_metric(&a.node, "node A pauses before outside records", paused).await;
    wait_metric(&b, "node B pauses before outside records", paused).await;
    let outside = write_from_outside(&brokers, &events_topic).await;
    receiver
        .wait_for_ids(&outside, GUARD)
        .await
        .expect("records written by another process are found by a probe");

    // Partitions that moved may re-send what A had not committed yet; the
    // order of first arrivals holds regardless.
    let repeats = check_order(&receiver, &sent);
    eprintln!("repeated deliveries after the rebalance: {repeats}");
    assert_eq!(sent.len(), 5 * ENDPOINTS * PER_ENDPOINT);

    tokio::time::timeout(GUARD, b.shutdown())
        .await
        .expect("node B stops in time")
        .expect("node B stops cleanly");
    a.shutdown().await;
}
