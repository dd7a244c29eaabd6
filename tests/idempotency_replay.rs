//! Where an ingest node starts reading the idempotency topic, on the
//! persistent broker (tansu): at the first record inside the topic's
//! retention, not at the first record the broker still holds. A broker may
//! keep records well past their retention (Kafka deletes whole segments;
//! tansu 0.6.0 keeps them), and every record read at start costs time.
//!
//! Three records stamped three days ago and two stamped now; with the
//! default one-day window (25 h retention) the reader starts at the fourth.
//! On librdkafka's mock cluster, which cannot look records up by time, the
//! same call starts at the low watermark (read it all, as before).

mod support;

use std::time::Duration;

use herald_core::config::KafkaConfig;
use herald_core::time::now_ms;
use herald_ingest::idempotency::claims::read_from;
use herald_kafka::admin::{ensure_topics, idempotency_retention_ms, topic_specs};
use herald_kafka::DevBroker;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use support::tansu::TansuBroker;

const DAY_MS: i64 = 86_400_000;

/// Writes five records to the idempotency topic: three stamped three days
/// ago, then two stamped now.
async fn five_records(cfg: &KafkaConfig) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .create()
        .expect("producer");
    let now = now_ms();
    for (i, at) in [now - 3 * DAY_MS; 3]
        .into_iter()
        .chain([now; 2])
        .enumerate()
    {
        let payload = format!("record {i}");
        producer
            .send(
                FutureRecord::to(&cfg.idempotency_topic)
                    .partition(0)
                    .key("k")
                    .payload(&payload)
                    .timestamp(at),
                Duration::from_secs(30),
            )
            .await
            .expect("written");
    }
}

fn reader(cfg: &KafkaConfig) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .create()
        .expect("consumer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_starts_inside_the_retention_on_tansu() {
    let Some(tansu) = TansuBroker::binary() else {
        return;
    };
    let dir = support::procs::run_dir("idempotency-replay");
    let _broker = TansuBroker::start(tansu, &dir);
    let cfg = KafkaConfig {
        brokers: _broker.bootstrap.clone(),
        ..KafkaConfig::default()
    };
    ensure_topics(&cfg, &topic_specs(&cfg))
        .await
        .expect("topics created");
    five_records(&cfg).await;
    let since = now_ms() - idempotency_retention_ms(cfg.idempotency_window);
    let found =
        tokio::task::block_in_place(|| read_from(&reader(&cfg), &cfg.idempotency_topic, since))
            .expect("watermarks");
    assert_eq!(found, (0, 3, 5), "(low, start, end)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_cannot_look_up_by_time_is_read_whole() {
    let mut cfg = KafkaConfig::default();
    let broker = DevBroker::start(&cfg).expect("mock broker");
    cfg.brokers = broker.bootstrap_servers().to_owned();
    five_records(&cfg).await;
    let since = now_ms() - idempotency_retention_ms(cfg.idempotency_window);
    let found =
        tokio::task::block_in_place(|| read_from(&reader(&cfg), &cfg.idempotency_topic, since))
            .expect("watermarks");
    assert_eq!(found, (0, 0, 5), "(low, start, end)");
}
