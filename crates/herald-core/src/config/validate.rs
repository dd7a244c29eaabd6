//! Range checks on a deserialised [`Config`]: values that are well-typed
//! but out of range, each error naming its key and saying what is allowed.

use std::time::Duration;

use super::{Config, ConfigError};

/// librdkafka's default `message.max.bytes`.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;
/// Room for an event's envelope around its payload: ids, type, key,
/// idempotency key, headers and record framing.
const ENVELOPE_ROOM: usize = 16 * 1024;

impl Config {
    /// Checks values that are well-typed but out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &str, message: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key: key.into(),
                message: message.into(),
            })
        }
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            return bad("kafka.brokers", "must list at least one host:port");
        }
        let topics = [
            ("kafka.events_topic", &k.events_topic),
            ("kafka.endpoints_topic", &k.endpoints_topic),
            ("kafka.retry_topic", &k.retry_topic),
            ("kafka.dlq_topic", &k.dlq_topic),
            ("kafka.ops_topic", &k.ops_topic),
            ("kafka.attempts_topic", &k.attempts_topic),
            ("kafka.idempotency_topic", &k.idempotency_topic),
            ("kafka.scheduled_topic", &k.scheduled_topic),
        ];
        for (i, (key, topic)) in topics.iter().enumerate() {
            if !valid_topic(topic) {
                return bad(key, format!("{topic:?} is not a valid Kafka topic name ([A-Za-z0-9._-], 1 to 249 characters)"));
            }
            if let Some((other, _)) = topics[..i].iter().find(|(_, t)| t == topic) {
                return bad(key, format!("must differ from {other} ({topic:?})"));
            }
        }
        if k.events_partitions < 1 {
            return bad("kafka.events_partitions", "must be at least 1");
        }
        if k.replication_factor < 1 {
            return bad("kafka.replication_factor", "must be at least 1");
        }
        if k.consumer_group.trim().is_empty() {
            return bad("kafka.consumer_group", "must not be empty");
        }
        if k.session_timeout_ms < 1000 {
            return bad("kafka.session_timeout_ms", "must be at least 1000");
        }
        if k.idle_pause_after_ms != 0 && !(100..=3_600_000).contains(&k.idle_pause_after_ms) {
            return bad(
                "kafka.idle_pause_after_ms",
                "must be 0 (never pause) or between 100 and 3600000",
            );
        }
        if !(10..=60_000).contains(&k.idle_probe_interval_ms) {
            return bad(
                "kafka.idle_probe_interval_ms",
                "must be between 10 and 60000",
            );
        }
        let g = &self.grpc;
        if g.max_payload_bytes == 0 || g.max_payload_bytes > 16 * 1024 * 1024 {
            return bad("grpc.max_payload_bytes", "must be between 1 and 16777216");
        }
        // An event is its payload plus an envelope (ids, type, headers);
        // the producer refuses records above its message.max.bytes, and a
        // refusal there would look transient to callers.
        let producer_max = k
            .client
            .get("message.max.bytes")
            .map(|v| v.trim().parse::<usize>())
            .transpose()
            .map_err(|_| ConfigError::Invalid {
                key: "kafka.client.\"message.max.bytes\"".into(),
                message: "must be a number of bytes".into(),
            })?
            .unwrap_or(LIBRDKAFKA_MESSAGE_MAX_BYTES);
        if g.max_payload_bytes + ENVELOPE_ROOM > producer_max {
            return bad(
                "grpc.max_payload_bytes",
                format!(
                    "is {} bytes, but with the event's envelope ({ENVELOPE_ROOM} bytes) that exceeds the producer's message.max.bytes ({producer_max}); lower it, or raise kafka.client.\"message.max.bytes\" together with the broker's message.max.bytes",
                    g.max_payload_bytes
                ),
            );
        }
        if g.max_endpoints == 0 {
            return bad("grpc.max_endpoints", "must be at least 1");
        }
        if g.fanout_chunk_records == 0 {
            return bad("grpc.fanout_chunk_records", "must be at least 1");
        }
        if self.kafka.idempotency_window < Duration::from_secs(60)
            || self.kafka.idempotency_window > Duration::from_secs(90 * 86_400)
        {
            return bad("kafka.idempotency_window", "must be between 1m and 90d");
        }
        if g.max_schedule_delay < Duration::from_secs(1)
            || g.max_schedule_delay > Duration::from_secs(365 * 86_400)
        {
            return bad("grpc.max_schedule_delay", "must be between 1s and 365d");
        }
        if g.max_batch_size == 0 {
            return bad("grpc.max_batch_size", "must be at least 1");
        }
        let d = &self.dispatch;
        if d.commit_interval_ms == 0 {
            return bad("dispatch.commit_interval_ms", "must be at least 1");
        }
        if d.max_buffered_per_partition == 0 {
            return bad("dispatch.max_buffered_per_partition", "must be at least 1");
        }
        if !(1..=60_000).contains(&d.fetch_wait_max_ms) {
            return bad("dispatch.fetch_wait_max_ms", "must be between 1 and 60000");
        }
        if d.max_buffered_per_lane < 2 {
            return bad("dispatch.max_buffered_per_lane", "must be at least 2");
        }
        if d.default_max_in_flight == 0 {
            return bad("dispatch.default_max_in_flight", "must be at least 1");
        }
        let r = &self.retry;
        if !(0.0..=1.0).contains(&r.jitter) {
            return bad("retry.jitter", "must be between 0.0 and 1.0");
        }
        if r.schedule.iter().any(|d| d.is_zero()) {
            return bad("retry.schedule", "delays must be longer than 0");
        }
        if r.max_age.is_zero() {
            return bad("retry.max_age", "must be longer than 0");
        }
        if self.kafka.retry_retention <= r.max_age {
            return bad(
                "kafka.retry_retention",
                format!(
                    "must be longer than retry.max_age ({}s), or records waiting in the retry topic could be deleted before they are due",
                    r.max_age.as_secs()
                ),
            );
        }
        if self.kafka.dlq_retention.is_zero() {
            return bad("kafka.dlq_retention", "must be longer than 0");
        }
        let v = &self.delivery;
        for c in &v.allow_cidrs {
            if let Err(e) = c.parse::<crate::egress::Cidr>() {
                return bad("delivery.allow_cidrs", format!("{c:?}: {e}"));
            }
        }
        if let Some(p) = &v.proxy {
            if !p.starts_with("http://") || p.parse::<http::Uri>().is_err() {
                return bad(
                    "delivery.proxy",
                    format!("{p:?} must be an http:// URL (host:port of an HTTP CONNECT proxy)"),
                );
            }
        }
        if v.connect_timeout_ms == 0 || v.timeout_ms == 0 {
            return bad("delivery.timeout_ms", "timeouts must be at least 1 ms");
        }
        if self.node.id.trim().is_empty() {
            return bad("node.id", "must not be empty");
        }
        Ok(())
    }
}

fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
