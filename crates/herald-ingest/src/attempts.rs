//! `EventService.ListAttempts`: reads the attempt log (the attempts topic)
//! for one endpoint, or one message (every endpoint of a fan-out, read from
//! the message's one partition), optionally one event, newest first.
//!
//! The topic is the only store: a call scans it from `since_ms` (or as far
//! back as retention keeps) up to the end at the start of the call.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use herald_core::config::KafkaConfig;
use herald_core::validate::{self, FieldError};
use herald_proto::v1 as pb;
use herald_proto::v1::AttemptRecord;
use herald_telemetry::names;
use rdkafka::message::Message;
use tonic::Status;

/// An attempt ordered by recency: time, then attempt number.
struct Newest(AttemptRecord);

impl Newest {
    fn key(&self) -> (i64, u32) {
        (self.0.at_ms, self.0.attempt)
    }
}

impl PartialEq for Newest {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Newest {}

impl PartialOrd for Newest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Newest {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// Default and largest number of attempts returned.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

fn invalid(e: FieldError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// Answers one `ListAttempts` request (blocking: run it through the
/// node's [`crate::scan_gate::ScanGate`]); gives up when `stop` is set.
/// Memory stays at `limit` attempts whatever the topic holds.
pub fn list(
    kafka: &KafkaConfig,
    node_id: &str,
    req: pb::ListAttemptsRequest,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<pb::ListAttemptsResponse, Status> {
    if req.message_id.is_empty() || !req.endpoint_id.is_empty() {
        validate::id("endpoint_id", &req.endpoint_id).map_err(|e| {
            invalid(FieldError::new(
                "endpoint_id",
                format!("{} (or set message_id)", e.message),
            ))
        })?;
    }
    if !req.message_id.is_empty() {
        validate::id("message_id", &req.message_id).map_err(invalid)?;
        if herald_catalog::is_fanout_event_id(&req.message_id) {
            return Err(invalid(FieldError::new(
                "message_id",
                "is one endpoint's event id of a fan-out (evf_…); give the fan-out's message id (msg_…), or endpoint_id with this event_id",
            )));
        }
    }
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
    let key = (!req.endpoint_id.is_empty()).then_some(req.endpoint_id.as_bytes());
    // The newest `limit` so far; the heap's top is the oldest of them.
    let mut found: BinaryHeap<Reverse<Newest>> = BinaryHeap::with_capacity(limit + 1);
    let client = format!("herald-attempts-reader-{node_id}");
    let topic = &kafka.attempts_topic;
    // Every attempt of one message is in one partition.
    let pick = |partitions: usize| {
        (!req.message_id.is_empty())
            .then(|| herald_core::ids::attempt_partition(&req.message_id, partitions))
    };
    let visit = |msg: &rdkafka::message::BorrowedMessage<'_>| {
        // A record keyed by another endpoint holds none of this one's
        // attempts; an unkeyed batch may hold any endpoint's.
        if key.is_some_and(|k| msg.key().is_some_and(|m| m != k)) {
            return;
        }
        let Some(recs) = msg
            .payload()
            .and_then(|v| herald_proto::attempts::decode(v).ok())
        else {
            metrics::counter!(names::RECORDS_UNDECODABLE, "topic" => "attempts").increment(1);
            tracing::debug!(
                partition = msg.partition(),
                offset = msg.offset(),
                "undecodable attempt record skipped"
            );
            return;
        };
        for rec in recs {
            if (req.event_id.is_empty() || rec.event_id == req.event_id)
                && (req.endpoint_id.is_empty() || rec.endpoint_id == req.endpoint_id)
                && (req.message_id.is_empty() || rec.message_id == req.message_id)
                && rec.at_ms >= req.since_ms
            {
                found.push(Reverse(Newest(rec)));
                if found.len() > limit {
                    found.pop();
                }
            }
        }
    };
    herald_kafka::scan::scan_partitions_until(
        kafka,
        &client,
        topic,
        req.since_ms,
        stop,
        pick,
        visit,
    )
    .map_err(|e| Status::unavailable(format!("cannot read the attempt log: {e}")))?;
    // Newest first; attempts of one event by attempt number when times tie.
    let found: Vec<AttemptRecord> = found
        .into_sorted_vec()
        .into_iter()
        .map(|Reverse(Newest(r))| r)
        .collect();
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
                message_id: r.message_id,
            })
            .collect(),
    })
}
