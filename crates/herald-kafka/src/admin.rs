//! Creates Herald's topics where they are missing.
//!
//! The events topic gets `kafka.events_partitions` partitions; the endpoint
//! registry is a single-partition compacted topic (one total order of
//! endpoint writes). The replication factor is lowered to the number of
//! brokers when the cluster is smaller, with a warning.

use std::collections::HashSet;
use std::time::Duration;

use herald_core::config::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::clients::base_config;

/// Topics could not be checked or created.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The cluster did not answer a metadata request.
    #[error("cannot reach Kafka at {brokers}: {source} (check kafka.brokers)")]
    Unreachable {
        /// Configured bootstrap servers.
        brokers: String,
        /// Client error.
        source: KafkaError,
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
}

/// The topics a node with this configuration needs.
pub fn topic_specs(cfg: &KafkaConfig) -> Vec<TopicSpec> {
    vec![
        TopicSpec { name: cfg.events_topic.clone(), partitions: cfg.events_partitions, compacted: false },
        TopicSpec { name: cfg.endpoints_topic.clone(), partitions: 1, compacted: true },
    ]
}

/// Creates whichever of `specs` do not exist yet.
pub async fn ensure_topics(cfg: &KafkaConfig, specs: &[TopicSpec]) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> = base_config(cfg)
        .create()
        .map_err(|source| TopicError::Unreachable { brokers: cfg.brokers.clone(), source })?;
    let admin = std::sync::Arc::new(admin);
    let probe = admin.clone();
    let (existing, brokers) = tokio::task::spawn_blocking(move || {
        probe
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|md| {
                let names: HashSet<String> = md
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                    .map(|t| t.name().to_string())
                    .collect();
                (names, md.brokers().len() as i32)
            })
    })
    .await
    .expect("metadata task panicked")
    .map_err(|source| TopicError::Unreachable { brokers: cfg.brokers.clone(), source })?;

    let missing: Vec<&TopicSpec> = specs.iter().filter(|s| !existing.contains(&s.name)).collect();
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
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|s| {
            let t = NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(rf));
            if s.compacted { t.set("cleanup.policy", "compact") } else { t }
        })
        .collect();
    let results = admin
        .create_topics(new.iter(), &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))))
        .await
        .map_err(|source| TopicError::Unreachable { brokers: cfg.brokers.clone(), source })?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicError::Create { topic, reason: code.to_string() }),
        }
    }
    Ok(())
}
