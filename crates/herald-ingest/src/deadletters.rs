//! `DeadLetterService`: list dead letters and replay them.
//!
//! The dead-letter topic is the only store. Listing scans it (every
//! partition, from the offset of `from_ms` up to the high watermark seen at
//! the start of the call). A replay re-publishes the matching dead letters
//! to the events topic in their original order, then appends a *replay
//! marker* (no value, header `herald-replay-of: <partition>:<offset>`) to
//! the dead letter's partition; a later scan sees the marker, so replaying
//! again skips what was replayed unless `force` is set. A crash between the
//! re-publish and the marker can make a later replay send those events once
//! more (at-least-once, with the same `webhook-id`).

use std::sync::Arc;
use std::time::Duration;

use herald_core::config::KafkaConfig;
use herald_core::time::now_ms;
use herald_core::validate::{self, FieldError};
use herald_kafka::headers as h;
use herald_proto::v1 as pb;
use herald_proto::v1::dead_letter_service_server::DeadLetterService;
use herald_proto::v1::{AttemptState, EventEnvelope};
use herald_registry::Registry;
use herald_telemetry::names;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::dlq_scan::{self, Entry, Filter, Scan};
use crate::publish::Publisher;
use crate::scan_gate::ScanGate;

/// Default and largest page of `ListDeadLetters`.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// Dead letters re-published per step of a replay (one progress message each).
const REPLAY_CHUNK: usize = 200;
/// Most dead letters one replay call holds and re-publishes; the rest are
/// reported as `remaining` for a later call (markers make it resume).
const MAX_REPLAY: usize = 100_000;

/// Payload bytes one list page holds: a page of large payloads is shorter
/// (its `next_page_token` continues where it stopped).
const MAX_PAGE_BYTES: usize = 16 << 20;
/// Payload bytes one replay call holds.
const MAX_REPLAY_BYTES: usize = 256 << 20;

fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The `DeadLetterService` implementation.
#[derive(Clone)]
pub struct DeadLetterApi {
    kafka: Arc<KafkaConfig>,
    node_id: Arc<str>,
    registry: Registry,
    publisher: Publisher,
    /// Bounds the scans of this node's list and replay calls.
    gate: ScanGate,
}

impl DeadLetterApi {
    /// Serves the dead-letter topic of `kafka`, replaying through `publisher`.
    pub fn new(
        kafka: &KafkaConfig,
        node_id: &str,
        registry: Registry,
        publisher: Publisher,
    ) -> Self {
        Self {
            kafka: Arc::new(kafka.clone()),
            node_id: node_id.into(),
            registry,
            publisher,
            gate: ScanGate::default(),
        }
    }

    /// Shares `gate` (the node's bound on topic scans) with the other scanning RPCs.
    pub fn with_scan_gate(mut self, gate: ScanGate) -> Self {
        self.gate = gate;
        self
    }
}

fn view(e: &Entry) -> pb::DeadLetter {
    let num = |k: &str| {
        e.headers
            .get(k)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let a = e.envelope.attempt.clone().unwrap_or_default();
    pb::DeadLetter {
        endpoint_id: e.envelope.endpoint_id.clone(),
        event_id: e.envelope.event_id.clone(),
        event_type: e.envelope.event_type.clone(),
        partition: e.partition,
        offset: e.offset,
        dead_lettered_at_ms: e.at_ms,
        reason: e.headers.get(h::REASON).cloned().unwrap_or_default(),
        attempts: a.attempts,
        last_status: a.last_status,
        last_error: a.last_error,
        first_attempt_ms: a.first_attempt_ms,
        last_attempt_ms: a.last_attempt_ms,
        origin_topic: e.headers.get(h::ORIGIN_TOPIC).cloned().unwrap_or_default(),
        origin_partition: num(h::ORIGIN_PARTITION) as i32,
        origin_offset: num(h::ORIGIN_OFFSET),
        created_at_ms: e.envelope.created_at_ms,
        replayed: e.replayed,
        payload: String::from_utf8_lossy(&e.envelope.payload).into_owned(),
    }
}

fn invalid(e: FieldError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn check_range(from_ms: i64, to_ms: i64) -> Result<(), Status> {
    if from_ms < 0 || to_ms < 0 {
        return Err(invalid(FieldError::new(
            "from_ms",
            "times are unix milliseconds, not negative",
        )));
    }
    if to_ms > 0 && to_ms <= from_ms {
        return Err(invalid(FieldError::new(
            "to_ms",
            "must be later than from_ms",
        )));
    }
    Ok(())
}

impl DeadLetterApi {
    async fn scan(&self, what: &'static str, filter: Filter) -> Result<Scan, Status> {
        let (kafka, node) = (self.kafka.clone(), self.node_id.clone());
        self.gate
            .run(what, move |stop| {
                dlq_scan::scan(&kafka, &node, filter, stop).map_err(|e| {
                    Status::unavailable(format!("cannot read the dead-letter topic: {e}"))
                })
            })
            .await
    }

    /// Re-publishes `batch` to `target` in order, then marks each replayed.
    async fn replay_chunk(&self, batch: &[Entry], target: &str) -> Result<(), Status> {
        let now = now_ms();
        let envelopes = batch
            .iter()
            .map(|e| EventEnvelope {
                event_id: e.envelope.event_id.clone(),
                endpoint_id: target.to_string(),
                event_type: e.envelope.event_type.clone(),
                payload: e.envelope.payload.clone(),
                // A fresh age and attempt count: the replay is a new delivery.
                created_at_ms: now,
                idempotency_key: e.envelope.idempotency_key.clone(),
                attempt: Some(AttemptState::default()),
                replay_of: format!("{}:{}", e.partition, e.offset),
                // A replayed fan-out record stays part of its message.
                message_id: e.envelope.message_id.clone(),
                app_id: e.envelope.app_id.clone(),
                ..Default::default()
            })
            .collect();
        for r in self.publisher.publish_envelopes(envelopes).await {
            r.map_err(|e| Status::unavailable(format!("replay stopped: {e}")))?;
        }
        let replayed_at = now.to_string();
        for e in batch {
            let of = format!("{}:{}", e.partition, e.offset);
            let headers = OwnedHeaders::new_with_capacity(4)
                .insert(Header {
                    key: h::REPLAY_OF,
                    value: Some(of.as_bytes()),
                })
                .insert(Header {
                    key: h::REPLAYED_MS,
                    value: Some(replayed_at.as_bytes()),
                })
                .insert(Header {
                    key: h::REPLAY_TARGET,
                    value: Some(target.as_bytes()),
                })
                .insert(Header {
                    key: h::EVENT_ID,
                    value: Some(e.envelope.event_id.as_bytes()),
                });
            let record = FutureRecord::<str, [u8]>::to(&self.kafka.dlq_topic)
                .partition(e.partition)
                .key(&e.envelope.endpoint_id)
                .headers(headers);
            self.publisher
                .producer()
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(err, _)| {
                    Status::unavailable(format!("replayed, but the replay marker failed: {err}"))
                })?;
            metrics::counter!(names::DEAD_LETTERS_REPLAYED).increment(1);
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl DeadLetterService for DeadLetterApi {
    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        let req = request.into_inner();
        if !req.endpoint_id.is_empty() {
            validate::id("endpoint_id", &req.endpoint_id).map_err(invalid)?;
        }
        check_range(req.from_ms, req.to_ms)?;
        let size = match req.page_size as usize {
            0 => DEFAULT_PAGE,
            n if n > MAX_PAGE => {
                return Err(invalid(FieldError::new(
                    "page_size",
                    format!("at most {MAX_PAGE}"),
                )))
            }
            n => n,
        };
        let after = if req.page_token.is_empty() {
            None
        } else {
            let parsed = req
                .page_token
                .split_once(':')
                .and_then(|(p, o)| Some((p.parse::<i32>().ok()?, o.parse::<i64>().ok()?)));
            Some(parsed.ok_or_else(|| {
                invalid(FieldError::new(
                    "page_token",
                    "is not a token from a previous response",
                ))
            })?)
        };
        let filter = Filter {
            endpoint_id: req.endpoint_id,
            from_ms: req.from_ms,
            to_ms: req.to_ms,
            after,
            // One more than the page tells whether another page exists.
            keep: size + 1,
            max_bytes: MAX_PAGE_BYTES,
            drop_replayed: false,
        };
        let scan = self.scan("ListDeadLetters", filter).await?;
        let mut page = scan.entries;
        page.truncate(size);
        // More matched than this page holds (past `size`, or past the
        // page's byte budget): the next page starts after its last entry.
        let next_page_token = if scan.matched > page.len() as u64 {
            page.last()
                .map(|e| format!("{}:{}", e.partition, e.offset))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListDeadLettersResponse {
            dead_letters: page.iter().map(view).collect(),
            next_page_token,
        }))
    }

    type ReplayDeadLettersStream = ReceiverStream<Result<pb::ReplayProgress, Status>>;

    async fn replay_dead_letters(
        &self,
        request: Request<pb::ReplayDeadLettersRequest>,
    ) -> Result<Response<Self::ReplayDeadLettersStream>, Status> {
        let req = request.into_inner();
        validate::id("endpoint_id", &req.endpoint_id).map_err(invalid)?;
        check_range(req.from_ms, req.to_ms)?;
        let target = if req.target_endpoint_id.is_empty() {
            req.endpoint_id.clone()
        } else {
            req.target_endpoint_id.clone()
        };
        validate::id("target_endpoint_id", &target).map_err(invalid)?;
        if !self.registry.is_loaded() {
            return Err(Status::unavailable(
                "the endpoint registry is still loading; retry shortly",
            ));
        }
        match self.registry.get(&target) {
            None => {
                return Err(Status::not_found(format!(
                    "target_endpoint_id: endpoint {target:?} does not exist"
                )))
            }
            Some(ep) if !ep.enabled => {
                return Err(Status::failed_precondition(format!(
                    "endpoint {target:?} is disabled; enable it before replaying"
                )))
            }
            Some(_) => {}
        }
        let drop_replayed = !req.force;
        let filter = Filter {
            endpoint_id: req.endpoint_id,
            from_ms: req.from_ms,
            to_ms: req.to_ms,
            after: None,
            keep: MAX_REPLAY,
            max_bytes: MAX_REPLAY_BYTES,
            drop_replayed,
        };
        let scan = self.scan("ReplayDeadLetters", filter).await?;
        let total = clamp(scan.matched);
        let skipped = if drop_replayed {
            clamp(scan.replayed)
        } else {
            0
        };
        let remaining = clamp(scan.remaining(drop_replayed));
        let todo = scan.entries;
        let (tx, rx) = mpsc::channel(16);
        let api = self.clone();
        tokio::spawn(async move {
            let mut progress = pb::ReplayProgress {
                total,
                replayed: 0,
                skipped,
                done: false,
                remaining,
            };
            let _ = tx.send(Ok(progress)).await;
            for chunk in todo.chunks(REPLAY_CHUNK) {
                if tx.is_closed() {
                    // The client went away: stop between chunks (every
                    // replayed chunk has its markers, so a rerun resumes).
                    tracing::info!(target_endpoint = %target, replayed = progress.replayed, "replay stopped: the client went away");
                    return;
                }
                if let Err(status) = api.replay_chunk(chunk, &target).await {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                progress.replayed += chunk.len() as u32;
                let _ = tx.send(Ok(progress)).await;
            }
            progress.done = true;
            tracing::info!(target_endpoint = %target, replayed = progress.replayed, skipped, "dead letters replayed");
            let _ = tx.send(Ok(progress)).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
