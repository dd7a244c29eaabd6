//! Writes to the registry topic. Each write returns once this node's
//! [`Registry`] has applied it, so a read right after a write sees it.

use std::time::Duration;

use herald_core::config::KafkaConfig;
use herald_core::Endpoint;
use herald_kafka::Producer;
use prost::Message as _;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;

use crate::sealing::KeyRing;
use crate::store::Registry;

/// A registry write failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Kafka did not accept the record.
    #[error("registry write to Kafka failed: {0}")]
    Kafka(#[from] KafkaError),
    /// Kafka accepted it but this node did not read it back in time.
    #[error("registry write was stored but not read back within {0:?}; is the registry consumer running?")]
    NotApplied(Duration),
}

/// Puts and deletes endpoints.
#[derive(Clone)]
pub struct RegistryWriter {
    producer: Producer,
    topic: String,
    registry: Registry,
    apply_timeout: Duration,
    /// Seals secrets before they reach the topic.
    ring: std::sync::Arc<KeyRing>,
}

impl RegistryWriter {
    /// A writer for `cfg.endpoints_topic` that waits on `registry`.
    pub fn new(
        cfg: &KafkaConfig,
        node_id: &str,
        registry: Registry,
        ring: std::sync::Arc<KeyRing>,
    ) -> Result<Self, KafkaError> {
        let producer = Producer::new(&herald_kafka::producer_config(
            cfg,
            &format!("herald-registry-writer-{node_id}"),
        ))?;
        Ok(Self {
            producer,
            topic: cfg.endpoints_topic.clone(),
            registry,
            apply_timeout: Duration::from_secs(30),
            ring,
        })
    }

    /// Creates or replaces an endpoint; its secrets and sensitive header
    /// values are sealed under the active master key.
    pub async fn put(&self, endpoint: &Endpoint) -> Result<(), WriteError> {
        let value = self.ring.seal_endpoint(endpoint).encode_to_vec();
        self.write(&endpoint.id, Some(&value)).await
    }

    /// Creates or replaces an event type of the catalogue.
    pub async fn put_event_type(&self, ty: &crate::StoredEventType) -> Result<(), WriteError> {
        let value = ty.to_record().encode_to_vec();
        self.write(
            &crate::event_types::key(ty.ty.name().as_str()),
            Some(&value),
        )
        .await
    }

    /// Deletes an endpoint (writes a tombstone).
    pub async fn delete(&self, id: &str) -> Result<(), WriteError> {
        self.write(id, None).await
    }

    async fn write(&self, id: &str, value: Option<&Vec<u8>>) -> Result<(), WriteError> {
        let mut record = FutureRecord::<str, Vec<u8>>::to(&self.topic).key(id);
        if let Some(v) = value {
            record = record.payload(v);
        }
        let delivery = self
            .producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| WriteError::Kafka(e))?;
        tokio::time::timeout(
            self.apply_timeout,
            self.registry
                .wait_applied(delivery.partition, delivery.offset),
        )
        .await
        .map_err(|_| WriteError::NotApplied(self.apply_timeout))
    }
}
