//! `EventService.ListAttempts`: reads the attempt log (the attempts topic)
//! for one endpoint, optionally one event, newest first.
//!
//! The topic is the only store: a call scans it from `since_ms` (or as far
//! back as retention keeps) up to the end at the start of the call.

use herald_core::config::KafkaConfig;
use herald_core::validate::{self, FieldError};
use herald_proto::v1 as pb;
use herald_proto::v1::AttemptRecord;
use prost::Message as _;
use rdkafka::message::Message;
use tonic::Status;

/// Default and largest number of attempts returned.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

fn invalid(e: FieldError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// Answers one `ListAttempts` request (blocking: call from `spawn_blocking`).
pub fn list(
    kafka: &KafkaConfig,
    node_id: &str,
    req: pb::ListAttemptsRequest,
) -> Result<pb::ListAttemptsResponse, Status> {
    validate::id("endpoint_id", &req.endpoint_id).map_err(invalid)?;
    if !req.event_id.is_empty() {
        validate::id("event_id", &req.event_id).map_err(invalid)?;
    }
    if req.since_ms < 0 {
        return Err(invalid(FieldError::new(
            "since_ms",
            "is unix milliseconds, not negative",
        )));
    }
    let limit = match req.limit as usize {
        0 => DEFAULT_LIMIT,
        n if n > MAX_LIMIT => {
            return Err(invalid(FieldError::new(
                "limit",
                format!("at most {MAX_LIMIT}"),
            )))
        }
        n => n,
    };
    let key = req.endpoint_id.as_bytes();
    let mut found: Vec<AttemptRecord> = Vec::new();
    let client = format!("herald-attempts-reader-{node_id}");
    herald_kafka::scan::scan_topic(kafka, &client, &kafka.attempts_topic, req.since_ms, |msg| {
        if msg.key() != Some(key) {
            return;
        }
        let Some(rec) = msg.payload().and_then(|v| AttemptRecord::decode(v).ok()) else {
            return;
        };
        if (req.event_id.is_empty() || rec.event_id == req.event_id) && rec.at_ms >= req.since_ms {
            found.push(rec);
        }
    })
    .map_err(|e| Status::unavailable(format!("cannot read the attempt log: {e}")))?;
    // Newest first; attempts of one event by attempt number when times tie.
    found.sort_by_key(|a| std::cmp::Reverse((a.at_ms, a.attempt)));
    found.truncate(limit);
    Ok(pb::ListAttemptsResponse {
        attempts: found
            .into_iter()
            .map(|r| pb::Attempt {
                event_id: r.event_id,
                endpoint_id: r.endpoint_id,
                event_type: r.event_type,
                attempt: r.attempt,
                at_ms: r.at_ms,
                status: r.status,
                latency_ms: r.latency_ms,
                outcome: r.outcome,
                error: r.error,
                response_body: String::from_utf8_lossy(&r.response_body).into_owned(),
                node: r.node,
            })
            .collect(),
    })
}
