//! Rebalances cost nothing for the partitions that stay, and poison records
//! are dead-lettered instead of skipped.
//!
//! `partitions_that_stay_resume_in_place`: node A (ingest + dispatcher)
//! delivers events on four partitions with commits effectively off (one per
//! hour), so everything it finished lives only in its trackers. Node B joins
//! the group and later leaves it. Both are static members, so the range
//! assignor orders them by node id and A keeps partitions 0 and 1 through
//! both rebalances. A worker that was dropped and restarted would re-read
//! those partitions from offset 0 and send every event again (the embedded
//! broker also refuses commits while the group rebalances); a worker resumed
//! in place sends none again. Events of partitions 2 and 3 move to B and
//! back, and their duplicates are only printed.
//!
//! `a_fenced_member_stops_without_committing`: when the coordinator fences
//! the dispatcher's static member (another process with the same node id;
//! injected here as `FENCED_INSTANCE_ID` answers to heartbeats), librdkafka
//! raises a fatal error. The dispatcher stops every worker at once, leaves
//! readiness, and the node stops with an error that says so.
//!
//! `poison_records_are_dead_lettered`: a record that is not an envelope, and
//! one whose key does not match its envelope, each reach the dead-letter
//! topic with reason `poison_record`, and the partition moves on.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use herald_proto::v1 as pb;
use herald_testkit::TestReceiver;
use prost::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaApiKey;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientConfig;
use support::dlq::DlqTail;
use support::ledger::Ledger;
use support::{metric_sum, publish_round, start_dispatcher, wait_metric, TestNode, GUARD};

const ENDPOINTS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_that_stay_resume_in_place() {
    let mut cfg = support::config();
    cfg.dispatch.static_membership = true;
    // Nothing is committed on a timer: only in-memory state can prevent re-sends.
    cfg.dispatch.commit_interval_ms = 3_600_000;
    let (_broker, cfg) = support::broker(cfg);
    let mut cfg_a = cfg.clone();
    cfg_a.node.id = "node-a".into();
    let mut cfg_b = cfg.clone();
    cfg_b.node.id = "node-b".into();

    let receiver = TestReceiver::start().await.unwrap();
    let a = TestNode::start(cfg_a).await;
    for i in 0..ENDPOINTS {
        a.create_endpoint(
            &format!("r-{i:02}"),
            &receiver.url_for(&format!("/r-{i:02}")),
        )
        .await;
    }
    let mut sent = publish_round(&a, &receiver, ("r", ENDPOINTS), 0, 10).await;

    // B joins: A's partitions are revoked, A keeps 0 and 1.
    let b = start_dispatcher(cfg_b).await;
    wait_metric(&a.node, "A resumes partitions 0 and 1", |m| {
        metric_sum(m, "herald_partitions_resumed_total").unwrap_or(0.0) >= 2.0
    })
    .await;
    sent.extend(publish_round(&a, &receiver, ("r", ENDPOINTS), 1, 10).await);

    // B leaves: A gets 2 and 3 back and resumes 0 and 1 once more.
    tokio::time::timeout(GUARD, b.shutdown())
        .await
        .expect("node B stops in time")
        .expect("node B stops cleanly");
    wait_metric(&a.node, "A resumes partitions 0 and 1 again", |m| {
        metric_sum(m, "herald_partitions_resumed_total").unwrap_or(0.0) >= 4.0
            && metric_sum(m, "herald_partitions_assigned").unwrap_or(0.0) == 4.0
    })
    .await;
    sent.extend(publish_round(&a, &receiver, ("r", ENDPOINTS), 2, 10).await);

    let mut arrivals: HashMap<String, usize> = HashMap::new();
    for r in receiver.requests() {
        *arrivals.entry(r.webhook_id().to_string()).or_default() += 1;
    }
    let mut resent_kept = Vec::new();
    let mut resent_moved = 0;
    for (ep, p) in &sent {
        let n = arrivals.get(&p.event_id).copied().unwrap_or(0);
        assert!(n >= 1, "{} of {ep} was never delivered", p.event_id);
        if n > 1 {
            if p.partition <= 1 {
                resent_kept.push((ep.clone(), p.partition, p.offset, n));
            } else {
                resent_moved += n - 1;
            }
        }
    }
    eprintln!(
        "{} events; re-sent on partitions that stayed: {}; on partitions that moved: {resent_moved}",
        sent.len(),
        resent_kept.len()
    );
    assert!(
        resent_kept.is_empty(),
        "events of partitions that stayed with node A were sent again: {resent_kept:?}"
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_member_stops_without_committing() {
    let mut cfg = support::config();
    cfg.dispatch.static_membership = true;
    let (broker, cfg) = support::broker(cfg);
    let receiver = TestReceiver::start().await.unwrap();
    let a = TestNode::start(cfg).await;
    a.create_endpoint("f-1", &receiver.url_for("/f-1")).await;
    let published = a.publish("f-1", r#"{"n":0}"#).await;
    receiver
        .wait_for_ids(std::slice::from_ref(&published.event_id), GUARD)
        .await
        .expect("delivered while the member is in the group");

    // Every group member of the node is fenced at its next heartbeat.
    broker.cluster().request_errors(
        RDKafkaApiKey::Heartbeat,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID; 16],
    );
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let (ready, detail) = a.node.health.report();
        let why = detail["components"]["dispatcher"]["reason"].to_string();
        if !ready && why.contains("fatal Kafka error") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fenced dispatcher did not stop: ready {ready}, {detail}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = tokio::time::timeout(GUARD, a.node.shutdown())
        .await
        .expect("the node stops in time")
        .expect_err("a fenced dispatcher stops the node with an error");
    let text = format!("{err:#}");
    assert!(text.contains("fatal Kafka consumer error"), "{text}");
    assert!(
        text.contains("FencedInstanceId") || text.contains("fenced"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered() {
    let cfg = support::config();
    let (_broker, cfg) = support::broker(cfg);
    let receiver = TestReceiver::start().await.unwrap();
    let a = TestNode::start(cfg.clone()).await;
    a.create_endpoint("p-1", &receiver.url_for("/p-1")).await;
    let dlq = DlqTail::start(
        &cfg.kafka.brokers,
        &cfg.kafka.dlq_topic,
        cfg.kafka.events_partitions,
        Ledger::new(),
    );
    let before = a.publish("p-1", r#"{"n":0}"#).await;

    // Two poison records on the same partition as p-1's events: garbage, and
    // a valid envelope under another endpoint's key.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .create()
        .expect("producer");
    let mismatched = pb::EventEnvelope {
        event_id: "msg_mismatch".into(),
        endpoint_id: "p-1".into(),
        payload: b"{}".to_vec().into(),
        ..Default::default()
    }
    .encode_to_vec();
    for (key, value) in [
        ("p-1", b"\xff\x00 not an envelope".to_vec()),
        ("someone-else", mismatched),
    ] {
        producer
            .send(
                FutureRecord::to(&cfg.kafka.events_topic)
                    .partition(before.partition)
                    .key(key)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("poison record written");
    }
    // The partition moves on: an event published after them is delivered.
    let after = a.publish("p-1", r#"{"n":1}"#).await;
    receiver
        .wait_for_ids(&[before.event_id.clone(), after.event_id.clone()], GUARD)
        .await
        .expect("events around the poison records are delivered");

    let deadline = tokio::time::Instant::now() + GUARD;
    while dlq.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "poison records never reached the dead-letter topic"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let letters = dlq.records();
    assert_eq!(letters.len(), 2, "{letters:#?}");
    for d in &letters {
        assert_eq!(d.header("herald-dlq-reason"), "poison_record");
        assert_eq!(d.partition, before.partition);
        assert_eq!(d.envelope.event_type, "herald.poison_record");
        assert!(d.envelope.event_id.starts_with("poison-events-"));
        assert!(!d.header("herald-last-error").is_empty());
    }
    assert_eq!(letters[0].key, "p-1");
    assert_eq!(
        &letters[0].envelope.payload[..],
        b"\xff\x00 not an envelope"
    );
    assert_eq!(letters[1].key, "someone-else");
    let m = a.metrics().await;
    assert_eq!(
        support::metric_sum_with(&m, "herald_events_skipped_total", "reason=\"poison\""),
        Some(2.0)
    );
    a.shutdown().await;
}
