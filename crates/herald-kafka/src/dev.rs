//! The embedded broker of `herald dev` and the in-process tests: librdkafka's
//! mock cluster, which speaks the Kafka protocol over TCP on localhost but
//! keeps everything in memory (nothing is persisted).
//!
//! The mock cluster does not implement CreateTopics, so [`DevBroker::start`]
//! creates Herald's topics directly.

use herald_core::config::KafkaConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::admin::topic_specs;

/// A running in-memory Kafka-protocol cluster. Dropping it stops the cluster.
///
/// Not `Send`: keep it on the task (or thread) that started it.
pub struct DevBroker {
    /// The mock cluster; owns the brokers.
    cluster: MockCluster<'static, DefaultProducerContext>,
    /// Its `host:port` bootstrap list.
    bootstrap: String,
}

impl DevBroker {
    /// Starts a one-broker cluster with Herald's topics (as named in `cfg`) created.
    pub fn start(cfg: &KafkaConfig) -> Result<Self, rdkafka::error::KafkaError> {
        Self::start_with_topics(cfg, &[])
    }

    /// Like [`DevBroker::start`], also creating `extra` topics (name, partitions).
    pub fn start_with_topics(
        cfg: &KafkaConfig,
        extra: &[(&str, i32)],
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let cluster = MockCluster::new(1)?;
        for spec in topic_specs(cfg) {
            cluster.create_topic(&spec.name, spec.partitions, 1)?;
        }
        for (name, partitions) in extra {
            cluster.create_topic(name, *partitions, 1)?;
        }
        let bootstrap = cluster.bootstrap_servers();
        Ok(Self { cluster, bootstrap })
    }

    /// Bootstrap servers to put in `kafka.brokers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The underlying mock cluster (to inject errors in tests).
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}
