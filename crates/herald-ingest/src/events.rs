//! `EventService`: `Publish` and `PublishBatch`.
//!
//! A batch validates and produces every item concurrently (so librdkafka
//! batches them into few requests) and reports a result per item, in
//! request order: a partial failure is always visible.

use std::time::Instant;

use herald_proto::v1::event_service_server::EventService;
use herald_proto::v1::{
    publish_result, PublishBatchRequest, PublishBatchResponse, PublishError as ItemError,
    PublishRequest, PublishResponse, PublishResult,
};
use herald_telemetry::names;
use tonic::{Request, Response, Status};

use crate::publish::Publisher;

/// The `EventService` implementation.
#[derive(Clone)]
pub struct EventApi {
    publisher: Publisher,
    max_batch: usize,
    /// For reading the attempt log.
    kafka: std::sync::Arc<herald_core::config::KafkaConfig>,
    node_id: std::sync::Arc<str>,
    /// Bounds `ListAttempts` scans.
    gate: crate::scan_gate::ScanGate,
}

impl EventApi {
    /// Serves publishes through `publisher`, allowing batches of `max_batch`.
    pub fn new(
        publisher: Publisher,
        max_batch: usize,
        kafka: &herald_core::config::KafkaConfig,
        node_id: &str,
    ) -> Self {
        Self {
            publisher,
            max_batch,
            kafka: std::sync::Arc::new(kafka.clone()),
            node_id: node_id.into(),
            gate: Default::default(),
        }
    }

    /// Shares `gate` (the node's bound on topic scans) with the other scanning RPCs.
    pub fn with_scan_gate(mut self, gate: crate::scan_gate::ScanGate) -> Self {
        self.gate = gate;
        self
    }
}

/// The canonical gRPC name of a status code, as in `PublishError.code`.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

fn observe(method: &'static str, started: Instant, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!(names::PUBLISH_REQUESTS, "method" => method, "outcome" => outcome)
        .increment(1);
    metrics::histogram!(names::PUBLISH_LATENCY, "method" => method)
        .record(started.elapsed().as_secs_f64());
}

/// The authenticated caller's name, which scopes idempotency keys; empty
/// when authentication is off (every caller is the same "anonymous").
fn caller<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<std::sync::Arc<herald_auth::Principal>>()
        .filter(|p| !p.is_anonymous())
        .map(|p| p.name.clone())
        .unwrap_or_default()
}

/// Takes `n` events from the caller's publish budget (`publish_per_second`
/// of its token), or refuses the whole call: nothing of it is published.
fn admit<T>(request: &Request<T>, n: usize) -> Result<(), Status> {
    use herald_auth::limit::Refusal;
    let Some(p) = request
        .extensions()
        .get::<std::sync::Arc<herald_auth::Principal>>()
    else {
        return Ok(());
    };
    let Some(limit) = &p.publish_limit else {
        return Ok(());
    };
    limit.admit(n).map_err(|refusal| {
        metrics::counter!(names::EVENTS_PUBLISHED, "outcome" => "rate_limited").increment(n as u64);
        match refusal {
            Refusal::Wait(wait) => Status::resource_exhausted(format!(
                "{:?} is over its publish rate of {} events/s; retry in {} ms",
                p.name,
                limit.per_second(),
                wait.as_millis().max(1)
            )),
            Refusal::TooMany { burst } => Status::invalid_argument(format!(
                "events: {n} events in one call, more than {:?} may publish at once ({burst}); split the batch",
                p.name
            )),
        }
    })
}

#[tonic::async_trait]
impl EventService for EventApi {
    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        let started = Instant::now();
        let caller = caller(&request);
        if let Err(status) = admit(&request, 1) {
            observe("publish", started, false);
            return Err(status);
        }
        let result = self
            .publisher
            .publish_as(&caller, request.into_inner())
            .await;
        observe("publish", started, result.is_ok());
        result.map(Response::new).map_err(|e| e.status())
    }

    async fn publish_batch(
        &self,
        request: Request<PublishBatchRequest>,
    ) -> Result<Response<PublishBatchResponse>, Status> {
        let started = Instant::now();
        let caller = caller(&request);
        if let Err(status) = admit(&request, request.get_ref().events.len()) {
            observe("publish_batch", started, false);
            return Err(status);
        }
        let events = request.into_inner().events;
        if events.is_empty() {
            observe("publish_batch", started, false);
            return Err(Status::invalid_argument(
                "events: at least one event is required",
            ));
        }
        if events.len() > self.max_batch {
            observe("publish_batch", started, false);
            return Err(Status::invalid_argument(format!(
                "events: {} events in one batch; at most {} allowed (grpc.max_batch_size)",
                events.len(),
                self.max_batch
            )));
        }
        let outcomes = self.publisher.publish_many_as(&caller, events).await;
        let mut resp = PublishBatchResponse::default();
        for (index, outcome) in outcomes.into_iter().enumerate() {
            let result = match outcome {
                Ok(ok) => {
                    resp.accepted += 1;
                    publish_result::Result::Ok(ok)
                }
                Err(e) => {
                    resp.rejected += 1;
                    let status = e.status();
                    publish_result::Result::Error(ItemError {
                        code: code_name(status.code()).to_string(),
                        message: status.message().to_string(),
                    })
                }
            };
            resp.results.push(PublishResult {
                index: index as u32,
                result: Some(result),
            });
        }
        observe("publish_batch", started, true);
        Ok(Response::new(resp))
    }

    async fn list_attempts(
        &self,
        request: Request<herald_proto::v1::ListAttemptsRequest>,
    ) -> Result<Response<herald_proto::v1::ListAttemptsResponse>, Status> {
        let (kafka, node) = (self.kafka.clone(), self.node_id.clone());
        let req = request.into_inner();
        self.gate
            .run("ListAttempts", move |stop| {
                crate::attempts::list(&kafka, &node, req, stop)
            })
            .await
            .map(Response::new)
    }
}
