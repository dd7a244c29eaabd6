//! Operational events: circuit opened/closed, endpoint disabled or enabled
//! (by a dispatcher or through the API), event dead-lettered. Each is written as JSON to the operations topic (key =
//! endpoint id) and, when `endpoint_health.operator_endpoint` names an
//! endpoint, also published to it as a webhook (event type `herald.<kind>`).
//!
//! Fire-and-forget: an operational event never delays a delivery; a failed
//! write is logged.

use std::sync::Arc;
use std::time::Duration;

use crate::store::Registry;
use bytes::Bytes;
use herald_core::ids::new_event_id;
use herald_core::time::now_ms;
use herald_kafka::Producer;
use herald_proto::v1::{AttemptState, EventEnvelope};
use prost::Message as _;
use rdkafka::producer::FutureRecord;

/// Kinds of operational events.
pub mod kind {
    /// An endpoint's circuit opened.
    pub const CIRCUIT_OPENED: &str = "circuit.opened";
    /// An endpoint's circuit closed again.
    pub const CIRCUIT_CLOSED: &str = "circuit.closed";
    /// The dispatcher disabled an endpoint.
    pub const ENDPOINT_DISABLED: &str = "endpoint.disabled";
    /// An event was dead-lettered.
    pub const EVENT_EXHAUSTED: &str = "event.exhausted";
    /// An endpoint was enabled (through the API).
    pub const ENDPOINT_ENABLED: &str = "endpoint.enabled";
}

/// Writer of operational events. Cheap to clone.
#[derive(Clone)]
pub struct Ops {
    producer: Producer,
    ops_topic: Arc<str>,
    events_topic: Arc<str>,
    operator_endpoint: Option<Arc<str>>,
    registry: Registry,
    node_id: Arc<str>,
}

impl Ops {
    /// Writes through `producer` to the topics named.
    pub fn new(
        producer: Producer,
        ops_topic: &str,
        events_topic: &str,
        operator_endpoint: &str,
        registry: Registry,
        node_id: &str,
    ) -> Self {
        Self {
            producer,
            ops_topic: ops_topic.into(),
            events_topic: events_topic.into(),
            operator_endpoint: (!operator_endpoint.is_empty()).then(|| operator_endpoint.into()),
            registry,
            node_id: node_id.into(),
        }
    }

    /// Emits one operational event about `endpoint`.
    pub fn emit(&self, kind: &'static str, endpoint: &str, detail: serde_json::Value) {
        let body = serde_json::json!({
            "type": kind,
            "endpoint_id": endpoint,
            "at_ms": now_ms(),
            "node": &*self.node_id,
            "detail": detail,
        })
        .to_string();
        tracing::info!(kind, endpoint_id = endpoint, "operational event");
        let this = self.clone();
        let endpoint = endpoint.to_string();
        tokio::spawn(async move {
            let record = FutureRecord::to(&this.ops_topic)
                .key(endpoint.as_str())
                .payload(body.as_str());
            if let Err((e, _)) = this.producer.send(record, Duration::from_secs(30)).await {
                tracing::warn!(error = %e, "cannot write an operational event");
            }
            let Some(operator) = this.operator_endpoint.as_deref() else {
                return;
            };
            // Never report on the operator endpoint to itself (no loops).
            if operator == endpoint || !this.registry.get(operator).is_some_and(|e| e.enabled) {
                return;
            }
            let envelope = EventEnvelope {
                event_id: new_event_id(),
                endpoint_id: operator.to_string(),
                event_type: format!("herald.{kind}"),
                payload: Bytes::from(body.into_bytes()),
                created_at_ms: now_ms(),
                attempt: Some(AttemptState::default()),
                ..Default::default()
            };
            let value = envelope.encode_to_vec();
            let record = FutureRecord::to(&this.events_topic)
                .key(operator)
                .payload(&value);
            if let Err((e, _)) = this.producer.send(record, Duration::from_secs(30)).await {
                tracing::warn!(error = %e, "cannot publish an operational event to the operator endpoint");
            }
        });
    }
}
