//! librdkafka client configurations for each role.

use herald_core::config::KafkaConfig;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::ClientConfig;

/// Settings every client shares: brokers plus the operator's `kafka.client` map.
pub fn base_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.client {
        c.set(k, v);
    }
    c
}

/// A producer that loses nothing and never reorders: idempotent, `acks=all`,
/// batching briefly (`linger.ms=2`) so concurrent publishes share requests.
pub fn producer_config(cfg: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut c = base_config(cfg);
    c.set("client.id", client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "30000");
    // Operator overrides win over these defaults.
    for (k, v) in &cfg.client {
        c.set(k, v);
    }
    c
}

/// [`consumer_config`] for a member of consumer group `group` that polls
/// all the time: `max.poll.interval.ms` (sent as the group's rebalance
/// timeout, how long a coordinator waits for members to rejoin) is 30 s
/// instead of librdkafka's 5 minutes, unless `kafka.client` sets it. tansu
/// 0.6.0's coordinator waits that long for members that already left, which
/// stalled every group on the broker after a scale-down (tests/fleet.rs).
pub fn group_member_config(cfg: &KafkaConfig, group: &str, client_id: &str) -> ClientConfig {
    let mut c = consumer_config(cfg, Some(group), client_id);
    if !cfg.client.contains_key("max.poll.interval.ms") {
        c.set("max.poll.interval.ms", "30000");
    }
    c
}

/// A consumer that stores nothing on its own: Herald commits explicitly.
pub fn consumer_config(cfg: &KafkaConfig, group: Option<&str>, client_id: &str) -> ClientConfig {
    let mut c = base_config(cfg);
    c.set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    if let Some(g) = group {
        c.set("group.id", g)
            .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (cfg.session_timeout_ms / 4).max(100).to_string(),
            )
            .set("partition.assignment.strategy", "cooperative-sticky");
    }
    for (k, v) in &cfg.client {
        c.set(k, v);
    }
    c
}

/// Drops `consumer`, unless librdkafka marked it fatally failed (a static
/// member fenced by another process with the same instance id). Destroying
/// such a consumer spins for good inside librdkafka's close (seen with
/// librdkafka 2.12.1: its main thread busy-loops while the destroy waits),
/// so it is leaked instead: after a fatal error the node stops anyway.
pub fn dispose<C: Consumer<X>, X: ConsumerContext>(consumer: C) {
    if let Some((code, reason)) = consumer.client().fatal_error() {
        tracing::warn!(?code, %reason, "not destroying a fatally failed Kafka consumer (librdkafka would spin); it is released when the process exits");
        std::mem::forget(consumer);
    }
}
