//! The attempt log's batches against a real Kafka-protocol broker (the
//! embedded mock cluster): the dispatcher's writer ([`AttemptLog`]) puts
//! every buffered attempt of one attempts-topic partition into one record,
//! each attempt in its message's partition, in the order recorded; and the
//! reader (`EventService.ListAttempts`) lists batched attempts and the
//! single-attempt records older dispatchers wrote, side by side, filtering
//! batches by endpoint attempt by attempt.
//!
//! The test runs on a current-thread runtime and records every attempt
//! without yielding, so the flusher cannot cut the buffer early: what is
//! written is decided by the test alone. Waiting for the records is a read
//! loop with a failure guard.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use herald_core::config::KafkaConfig;
use herald_core::ids::attempt_partition;
use herald_dispatch::attempt_log::{AttemptLog, Entry};
use herald_kafka::DevBroker;
use herald_proto::v1::{self as pb, AttemptRecord};
use prost::bytes::Bytes;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const MESSAGES: usize = 30;
const ATTEMPTS_EACH: u32 = 10;
const GUARD: Duration = Duration::from_secs(60);

fn message(i: usize) -> String {
    format!("msg_{i:04}")
}

fn endpoint(i: usize) -> String {
    format!("ep_{}", i % 3)
}

/// Every record of `topic` as (partition, key, attempts), until `want`
/// attempts were read.
fn read_all(
    brokers: &str,
    topic: &str,
    partitions: usize,
    want: usize,
) -> Vec<(i32, Option<String>, Vec<AttemptRecord>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "attempt-log-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + GUARD;
    let mut out = Vec::new();
    while out
        .iter()
        .map(|(_, _, a): &(i32, Option<String>, Vec<AttemptRecord>)| a.len())
        .sum::<usize>()
        < want
    {
        assert!(
            Instant::now() < deadline,
            "only {out:?} of {want} attempts read"
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("read the attempts topic");
            let attempts = herald_proto::attempts::decode(m.payload().unwrap_or_default())
                .expect("every attempts-topic record decodes");
            let key = m.key().map(|k| String::from_utf8(k.to_vec()).unwrap());
            out.push((m.partition(), key, attempts));
        }
    }
    out
}

#[tokio::test(flavor = "current_thread")]
async fn batches_per_partition_and_old_records_read_alike() {
    let mut cfg = KafkaConfig::default();
    let broker = DevBroker::start(&cfg).expect("mock broker");
    cfg.brokers = broker.bootstrap_servers().to_string();
    let topic = cfg.attempts_topic.clone();
    let producer =
        herald_kafka::Producer::new(&herald_kafka::producer_config(&cfg, "attempt-log-test"))
            .expect("producer");
    let partitions = producer
        .partition_count(&topic, Duration::from_secs(30))
        .expect("the attempts topic's partitions");
    assert!(partitions > 1, "the test needs several partitions");

    // What an older dispatcher wrote: one attempt per record, keyed by
    // endpoint.
    let old = AttemptRecord {
        event_id: "ev_old".into(),
        endpoint_id: "ep_old".into(),
        attempt: 1,
        at_ms: 1_000,
        status: 200,
        outcome: "success".into(),
        node: "node-old".into(),
        event_type: "test.event".into(),
        message_id: "ev_old".into(),
        ..Default::default()
    };
    let value = old.encode_to_vec();
    producer
        .send_result(
            FutureRecord::to(&topic)
                .key("ep_old")
                .payload(&value)
                .partition(attempt_partition("ev_old", partitions)),
        )
        .map_err(|(e, _)| e)
        .expect("old record queued");

    let log = AttemptLog::new(producer.clone(), &topic, Some(partitions), "node-t");
    // Attempt n of every message, round after round: each message's
    // attempts interleave with the others'.
    for n in 1..=ATTEMPTS_EACH {
        for i in 0..MESSAGES {
            let (msg, ep) = (message(i), endpoint(i));
            log.record(Entry {
                event_id: &msg,
                message_id: "",
                endpoint_id: &ep,
                event_type: "test.event",
                attempt: n,
                at_ms: 2_000 + i64::from(n),
                status: if n == ATTEMPTS_EACH { 200 } else { 500 },
                latency_ms: 3,
                outcome: if n == ATTEMPTS_EACH {
                    "success"
                } else {
                    "retryable"
                },
                error: "",
                body: Bytes::from_static(b"{}"),
            });
        }
    }
    log.flush();

    let total = MESSAGES * ATTEMPTS_EACH as usize + 1;
    let records = read_all(broker.bootstrap_servers(), &topic, partitions, total);
    // One record per partition the messages fall in, plus the old one.
    let used: std::collections::BTreeSet<i32> = (0..MESSAGES)
        .map(|i| attempt_partition(&message(i), partitions))
        .collect();
    assert_eq!(records.len(), used.len() + 1, "{records:?}");
    let mut per_message: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (partition, key, attempts) in &records {
        if attempts[0].node == "node-old" {
            assert_eq!(key.as_deref(), Some("ep_old"));
            continue;
        }
        // Keyed by endpoint only when the batch holds one endpoint's
        // attempts alone.
        let first = &attempts[0].endpoint_id;
        let one_endpoint = attempts.iter().all(|a| &a.endpoint_id == first);
        assert_eq!(key.as_ref(), one_endpoint.then_some(first), "{attempts:?}");
        for a in attempts {
            assert_eq!(
                *partition,
                attempt_partition(&a.message_id, partitions),
                "{a:?}"
            );
            assert_eq!(
                a.message_id, a.event_id,
                "a direct publish's message is its event"
            );
            assert_eq!(a.node, "node-t");
            per_message
                .entry(a.message_id.clone())
                .or_default()
                .push(a.attempt);
        }
    }
    assert_eq!(per_message.len(), MESSAGES);
    for (msg, attempts) in &per_message {
        let want: Vec<u32> = (1..=ATTEMPTS_EACH).collect();
        assert_eq!(attempts, &want, "{msg}: in the order recorded");
    }

    // The reader: by message, by endpoint (attempt by attempt inside a
    // batch), and the old record.
    let stop = AtomicBool::new(false);
    let list = |req: pb::ListAttemptsRequest| {
        herald_ingest::attempts::list(&cfg, "t", req, &stop)
            .expect("ListAttempts")
            .attempts
    };
    let one = list(pb::ListAttemptsRequest {
        message_id: message(7),
        ..Default::default()
    });
    let numbers: Vec<u32> = one.iter().map(|a| a.attempt).collect();
    assert_eq!(
        numbers,
        (1..=ATTEMPTS_EACH).rev().collect::<Vec<_>>(),
        "newest first"
    );
    assert!(one.iter().all(|a| a.endpoint_id == endpoint(7)));

    let by_endpoint = list(pb::ListAttemptsRequest {
        endpoint_id: "ep_1".into(),
        limit: 1000,
        ..Default::default()
    });
    assert_eq!(by_endpoint.len(), MESSAGES / 3 * ATTEMPTS_EACH as usize);
    assert!(
        by_endpoint.iter().all(|a| a.endpoint_id == "ep_1"),
        "{by_endpoint:?}"
    );

    let old_listed = list(pb::ListAttemptsRequest {
        endpoint_id: "ep_old".into(),
        ..Default::default()
    });
    assert_eq!(old_listed.len(), 1, "{old_listed:?}");
    assert_eq!(
        (old_listed[0].event_id.as_str(), old_listed[0].node.as_str()),
        ("ev_old", "node-old")
    );
}
