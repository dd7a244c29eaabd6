//! Creates Herald's topics where they are missing.
//!
//! The events topic gets `kafka.events_partitions` partitions; the endpoint
//! registry is a single-partition compacted topic (one total order of
//! endpoint writes). The replication factor is lowered to the number of
//! brokers when the cluster is smaller, with a warning.

use std::collections::HashMap;
use std::time::Duration;

use herald_core::config::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;

use crate::clients::base_config;

/// Topics could not be checked or created.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The cluster did not answer a metadata request.
    #[error("cannot reach Kafka at {brokers} (check kafka.brokers)")]
    Unreachable {
        /// Configured bootstrap servers.
        brokers: String,
        /// Client error.
        source: KafkaError,
    },
    /// The retry or dead-letter topic does not have the events topic's partition count.
    #[error("topic {topic} has {found} partitions but {events} has {expected}; they must match (the dispatcher pairs partition N of each)")]
    NotCoPartitioned {
        /// The mismatched topic.
        topic: String,
        /// Its partition count.
        found: i32,
        /// The events topic.
        events: String,
        /// The events topic's partition count.
        expected: i32,
    },
    /// The broker refused to create a topic.
    #[error("cannot create topic {topic}: {reason} (create it by hand, or fix permissions)")]
    Create {
        /// Topic name.
        topic: String,
        /// Broker's answer.
        reason: String,
    },
}

/// One topic Herald needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Partition count when created.
    pub partitions: i32,
    /// Whether the topic is compacted.
    pub compacted: bool,
    /// `retention.ms` when created (None = the broker's default).
    pub retention_ms: Option<i64>,
}

/// The topics a node with this configuration needs.
pub fn topic_specs(cfg: &KafkaConfig) -> Vec<TopicSpec> {
    vec![
        TopicSpec {
            name: cfg.events_topic.clone(),
            partitions: cfg.events_partitions,
            compacted: false,
            retention_ms: None,
        },
        TopicSpec {
            name: cfg.endpoints_topic.clone(),
            partitions: 1,
            compacted: true,
            retention_ms: None,
        },
        TopicSpec {
            name: cfg.retry_topic.clone(),
            partitions: cfg.events_partitions,
            compacted: false,
            retention_ms: Some(cfg.retry_retention.as_millis() as i64),
        },
        TopicSpec {
            name: cfg.dlq_topic.clone(),
            partitions: cfg.events_partitions,
            compacted: false,
            retention_ms: Some(cfg.dlq_retention.as_millis() as i64),
        },
        TopicSpec {
            name: cfg.ops_topic.clone(),
            partitions: 1,
            compacted: false,
            retention_ms: None,
        },
        TopicSpec {
            name: cfg.attempts_topic.clone(),
            partitions: cfg.events_partitions,
            compacted: false,
            retention_ms: Some(cfg.attempts_retention.as_millis() as i64),
        },
        TopicSpec {
            name: cfg.scheduled_topic.clone(),
            partitions: herald_core::delay::TIERS,
            compacted: false,
            retention_ms: Some(SCHEDULED_RETENTION_MS),
        },
        TopicSpec {
            name: cfg.idempotency_topic.clone(),
            partitions: 1,
            compacted: false,
            retention_ms: Some(idempotency_retention_ms(cfg.idempotency_window)),
        },
    ]
}

/// The scheduled topic keeps a record a week longer than the longest tier
/// makes it wait (a record is rewritten to another tier, or to the events
/// topic, once its tier's wait is over).
pub const SCHEDULED_RETENTION_MS: i64 =
    (1000_i64 << (herald_core::delay::TIERS - 1)) + 7 * 86_400_000;

/// The idempotency topic keeps its records an hour longer than the window,
/// so a node reading it at start sees every key still inside the window.
pub fn idempotency_retention_ms(window: std::time::Duration) -> i64 {
    window.as_millis() as i64 + 3_600_000
}

/// The retry and dead-letter topics must have as many partitions as the
/// events topic (when both exist, or when the events topic will be created
/// with `events_partitions`).
fn check_co_partitioned(
    cfg: &KafkaConfig,
    existing: &HashMap<String, i32>,
) -> Result<(), TopicError> {
    let expected = existing
        .get(&cfg.events_topic)
        .copied()
        .unwrap_or(cfg.events_partitions);
    for topic in [&cfg.retry_topic, &cfg.dlq_topic] {
        if let Some(&found) = existing.get(topic) {
            if found != expected {
                return Err(TopicError::NotCoPartitioned {
                    topic: topic.clone(),
                    found,
                    events: cfg.events_topic.clone(),
                    expected,
                });
            }
        }
    }
    Ok(())
}

/// The partition count of the events topic as it exists (or will be created).
pub fn events_partitions(cfg: &KafkaConfig, existing: &HashMap<String, i32>) -> i32 {
    existing
        .get(&cfg.events_topic)
        .copied()
        .unwrap_or(cfg.events_partitions)
}

/// How long a starting node keeps trying to reach the cluster when the
/// connection itself fails (a broker that is still starting, a loaded
/// machine): librdkafka reports a refused connection at once, not after
/// the metadata timeout.
const REACH_DEADLINE: Duration = Duration::from_secs(30);

/// The cluster's metadata; a transport failure is tried again (every
/// 500 ms, up to [`REACH_DEADLINE`]) before it counts as unreachable.
fn metadata_with_retries<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
) -> KafkaResult<rdkafka::metadata::Metadata> {
    let start = std::time::Instant::now();
    loop {
        match client.fetch_metadata(None, Duration::from_secs(10)) {
            Err(KafkaError::MetadataFetch(
                code
                @ (RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown),
            )) if start.elapsed() < REACH_DEADLINE => {
                tracing::warn!(error = ?code, "Kafka not reachable yet; trying again");
                std::thread::sleep(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// Creates whichever of `specs` do not exist yet.
pub async fn ensure_topics(cfg: &KafkaConfig, specs: &[TopicSpec]) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(cfg)
            .create()
            .map_err(|source| TopicError::Unreachable {
                brokers: cfg.brokers.clone(),
                source,
            })?;
    let admin = std::sync::Arc::new(admin);
    let probe = admin.clone();
    let (existing, brokers) = tokio::task::spawn_blocking(move || {
        metadata_with_retries(probe.inner()).map(|md| {
            let names: HashMap<String, i32> = md
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                .map(|t| (t.name().to_string(), t.partitions().len() as i32))
                .collect();
            (names, md.brokers().len() as i32)
        })
    })
    .await
    .expect("metadata task panicked")
    .map_err(|source| TopicError::Unreachable {
        brokers: cfg.brokers.clone(),
        source,
    })?;

    check_co_partitioned(cfg, &existing)?;
    let missing: Vec<&TopicSpec> = specs
        .iter()
        .filter(|s| !existing.contains_key(&s.name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let rf = cfg.replication_factor.min(brokers.max(1));
    if rf < cfg.replication_factor {
        tracing::warn!(
            configured = cfg.replication_factor,
            used = rf,
            "kafka.replication_factor is larger than the cluster ({brokers} brokers); creating topics with {rf}"
        );
    }
    // Retry and dead-letter topics follow the events topic's real count.
    let events_count = events_partitions(cfg, &existing);
    let retentions: Vec<Option<String>> = missing
        .iter()
        .map(|s| s.retention_ms.map(|m| m.to_string()))
        .collect();
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .zip(&retentions)
        .map(|(s, retention)| {
            let partitions = if s.name == cfg.retry_topic || s.name == cfg.dlq_topic {
                events_count
            } else {
                s.partitions
            };
            let t = NewTopic::new(&s.name, partitions, TopicReplication::Fixed(rf));
            let t = if s.compacted {
                t.set("cleanup.policy", "compact")
            } else {
                t
            };
            match retention {
                Some(ms) => t.set("retention.ms", ms),
                None => t,
            }
        })
        .collect();
    let results = admin
        .create_topics(
            new.iter(),
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(|source| TopicError::Unreachable {
            brokers: cfg.brokers.clone(),
            source,
        })?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(TopicError::Create {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;

    /// Known limit "retention is set only when Herald creates the retry and
    /// dead-letter topics": the specs Herald creates them from carry
    /// `retention.ms` from `kafka.retry_retention` (default 14 days) and
    /// `kafka.dlq_retention` (default 30 days). `ensure_topics` creates
    /// only the topics missing from the cluster, so these values never
    /// reach a topic that already exists.
    #[test]
    fn retry_and_dead_letter_retention_come_from_the_config() {
        let cfg = KafkaConfig::default();
        let specs = topic_specs(&cfg);
        let retention = |name: &str| {
            specs
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("no spec for {name}"))
                .retention_ms
        };
        assert_eq!(retention(&cfg.retry_topic), Some(14 * DAY_MS));
        assert_eq!(retention(&cfg.dlq_topic), Some(30 * DAY_MS));

        let cfg = KafkaConfig {
            retry_retention: Duration::from_secs(3 * 86_400),
            dlq_retention: Duration::from_secs(90 * 86_400),
            ..KafkaConfig::default()
        };
        let specs = topic_specs(&cfg);
        let retry = specs.iter().find(|s| s.name == cfg.retry_topic);
        let dlq = specs.iter().find(|s| s.name == cfg.dlq_topic);
        assert_eq!(retry.and_then(|s| s.retention_ms), Some(3 * DAY_MS));
        assert_eq!(dlq.and_then(|s| s.retention_ms), Some(90 * DAY_MS));
    }
}
