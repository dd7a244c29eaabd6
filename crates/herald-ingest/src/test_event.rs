//! `EndpointService.SendTestEvent`: a test event delivered through the
//! normal path (events topic, the endpoint's lane, signed, retried, in the
//! attempt log), and its first attempt read back from the attempt log so a
//! user wiring up a URL sees at once whether it works.
//!
//! The event is marked: its id (the `webhook-id`) starts with `test_`, its
//! type defaults to `herald.test`, and the default payload says
//! `"test": true`. It is not checked against the event type catalogue.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_core::config::KafkaConfig;
use herald_core::validate::{self, FieldError};
use herald_core::{ids, time::now_ms};
use herald_proto::v1 as pb;
use herald_proto::v1::{AttemptState, EventEnvelope};
use herald_registry::Registry;
use rdkafka::message::Message as _;
use tonic::Status;

use crate::publish::Publisher;

/// The default event type of a test event.
pub const TEST_EVENT_TYPE: &str = "herald.test";
/// The start of every test event's id (callers cannot choose such ids).
pub const TEST_EVENT_PREFIX: &str = "test_";
/// How long a call waits for the first attempt by default, and at most.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
const MAX_WAIT: Duration = Duration::from_secs(120);

/// What sending a test event needs from the node.
#[derive(Clone)]
pub struct TestEvents {
    publisher: Publisher,
    kafka: Arc<KafkaConfig>,
    node_id: Arc<str>,
    max_payload: usize,
}

impl TestEvents {
    /// Test events written through `publisher`, attempts read from
    /// `kafka.attempts_topic`.
    pub fn new(
        publisher: Publisher,
        kafka: &KafkaConfig,
        node_id: &str,
        max_payload: usize,
    ) -> Self {
        Self {
            publisher,
            kafka: Arc::new(kafka.clone()),
            node_id: node_id.into(),
            max_payload,
        }
    }

    /// Sends one test event to the endpoint `req.id` and waits for its
    /// first attempt.
    pub async fn send(
        &self,
        registry: &Registry,
        req: pb::SendTestEventRequest,
    ) -> Result<pb::SendTestEventResponse, Status> {
        let invalid = |e: FieldError| Status::invalid_argument(e.to_string());
        validate::id("id", &req.id).map_err(invalid)?;
        let ep = registry.get(&req.id).ok_or_else(|| {
            Status::not_found(format!("id: endpoint {:?} does not exist", req.id))
        })?;
        if !ep.enabled {
            return Err(Status::failed_precondition(format!(
                "endpoint {:?} is disabled; enable it before sending a test event",
                req.id
            )));
        }
        let event_type = if req.event_type.is_empty() {
            TEST_EVENT_TYPE.to_string()
        } else {
            req.event_type
        };
        validate::event_type(&event_type).map_err(invalid)?;
        let event_id = format!(
            "{TEST_EVENT_PREFIX}{}",
            ids::new_event_id().trim_start_matches("msg_")
        );
        let payload = if req.payload.is_empty() {
            serde_json::json!({
                "type": TEST_EVENT_TYPE,
                "test": true,
                "message": "A test event from Herald: if you can read this, the endpoint works.",
                "endpoint_id": ep.id,
                "sent_at_ms": now_ms(),
            })
            .to_string()
        } else {
            req.payload
        };
        validate::payload(&payload, self.max_payload).map_err(invalid)?;
        let wait = match req.wait_ms {
            0 => DEFAULT_WAIT,
            ms => Duration::from_millis(u64::from(ms)).min(MAX_WAIT),
        };

        // Positioned before the event exists, so its first attempt cannot be missed.
        let kafka = self.kafka.clone();
        let client = format!("herald-test-event-{}", self.node_id);
        let watch = tokio::task::spawn_blocking(move || {
            herald_kafka::watch::Watch::start(&kafka, &client, &kafka.attempts_topic)
        })
        .await
        .map_err(|e| Status::internal(format!("attempt log reader: {e}")))?
        .map_err(|e| Status::unavailable(format!("cannot read the attempt log: {e}")))?;

        let envelope = EventEnvelope {
            event_id: event_id.clone(),
            endpoint_id: ep.id.clone(),
            event_type,
            payload: Bytes::from(payload.into_bytes()),
            created_at_ms: now_ms(),
            attempt: Some(AttemptState::default()),
            ..Default::default()
        };
        let mut written = self.publisher.publish_envelopes(vec![envelope]).await;
        written
            .pop()
            .expect("one result per envelope")
            .map_err(|e| e.status())?;

        let id = event_id.clone();
        let first = tokio::task::spawn_blocking(move || {
            let mut first = None;
            let found = watch.until(wait, |msg| {
                let Some(recs) = msg
                    .payload()
                    .and_then(|v| herald_proto::attempts::decode(v).ok())
                else {
                    return false;
                };
                first = recs
                    .into_iter()
                    .find(|rec| rec.event_id == id && rec.attempt == 1);
                first.is_some()
            });
            found.map(|_| first)
        })
        .await
        .map_err(|e| Status::internal(format!("attempt log reader: {e}")))?
        .map_err(|e| Status::unavailable(format!("cannot read the attempt log: {e}")))?;
        Ok(match first {
            Some(a) => pb::SendTestEventResponse {
                event_id,
                attempted: true,
                status: a.status,
                latency_ms: a.latency_ms,
                outcome: a.outcome,
                error: a.error,
                response_body: String::from_utf8_lossy(&a.response_body).into_owned(),
            },
            None => pb::SendTestEventResponse {
                event_id,
                attempted: false,
                error: format!(
                    "no attempt within {wait:?}: no dispatcher owns the endpoint's partition yet, or its circuit is open, or it is rate-limited; the event stays queued and is delivered like any other"
                ),
                ..Default::default()
            },
        })
    }
}
