//! Publishing one event: validate, resolve the endpoint, build the envelope,
//! write it to the events topic keyed by endpoint id, and wait for Kafka's
//! acknowledgement (idempotent producer, `acks=all`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_core::config::{GrpcConfig, KafkaConfig};
use herald_core::{ids, time::now_ms, validate};
use herald_kafka::{DeliveryFuture, Producer};
use herald_proto::v1::{AttemptState, EventEnvelope, PublishRequest, PublishResponse};
use herald_registry::Registry;
use herald_telemetry::names;
use prost::Message as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use tonic::Status;

use crate::fanout;
use crate::idempotency::claims::{Claim, ClaimError};
use crate::idempotency::ledger::{Answer, Key, RequestHash};
use crate::idempotency::{scope, Claims};

/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// Why one event was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A request field is invalid.
    #[error(transparent)]
    Invalid(#[from] validate::FieldError),
    /// The endpoint does not exist.
    #[error("endpoint_id: endpoint {0:?} does not exist")]
    NotFound(String),
    /// The endpoint is disabled.
    #[error("endpoint {0:?} is disabled; enable it before publishing")]
    Disabled(String),
    /// The registry has not finished loading.
    #[error("the endpoint registry is still loading; retry shortly")]
    NotReady,
    /// Kafka did not acknowledge the event; it may or may not be stored.
    #[error("Kafka did not acknowledge the event: {0}; retry with the same idempotency key")]
    Kafka(#[from] KafkaError),
    /// The event type is not in the catalogue and
    /// `grpc.allow_unknown_event_types` is off.
    #[error("event_type: {0:?} is not in the event type catalogue; create it (herald event-type create) or set grpc.allow_unknown_event_types")]
    UnknownType(String),
    /// The event type is archived.
    #[error("event_type: {0:?} is archived; unarchive it (herald event-type archive --undo) to publish it again")]
    Archived(String),
    /// The record is larger than the producer or the broker accepts: a
    /// retry can never succeed.
    #[error("payload: the event is larger than Kafka accepts ({0}); the broker's and the producer's message.max.bytes bound it, lower than grpc.max_payload_bytes")]
    TooLarge(KafkaError),
    /// The idempotency key conflicts, is busy elsewhere, or could not be
    /// claimed.
    #[error(transparent)]
    Idempotency(#[from] ClaimError),
}

impl PublishError {
    /// Sorts a Kafka failure: a size refusal is the caller's, the rest are
    /// transient.
    pub fn from_kafka(e: KafkaError) -> Self {
        use rdkafka::error::RDKafkaErrorCode as C;
        match e.rdkafka_error_code() {
            Some(C::MessageSizeTooLarge | C::InvalidMessageSize) => PublishError::TooLarge(e),
            _ => PublishError::Kafka(e),
        }
    }
}

impl PublishError {
    /// The gRPC status for this error.
    pub fn status(&self) -> Status {
        let msg = self.to_string();
        match self {
            PublishError::Invalid(_) | PublishError::TooLarge(_) | PublishError::UnknownType(_) => {
                Status::invalid_argument(msg)
            }
            PublishError::NotFound(_) => Status::not_found(msg),
            PublishError::Disabled(_) | PublishError::Archived(_) => {
                Status::failed_precondition(msg)
            }
            PublishError::NotReady | PublishError::Kafka(_) => Status::unavailable(msg),
            PublishError::Idempotency(e) => match e {
                ClaimError::Conflict => Status::failed_precondition(msg),
                ClaimError::InProgress => Status::aborted(msg),
                ClaimError::Kafka(_) | ClaimError::Loading { .. } => Status::unavailable(msg),
            },
        }
    }

    /// The `outcome` metric label.
    pub fn outcome(&self) -> &'static str {
        match self {
            PublishError::Invalid(_)
            | PublishError::TooLarge(_)
            | PublishError::UnknownType(_)
            | PublishError::Archived(_) => "invalid",
            PublishError::NotFound(_) => "not_found",
            PublishError::Disabled(_) => "disabled",
            PublishError::Idempotency(ClaimError::Conflict) => "invalid",
            PublishError::NotReady
            | PublishError::Kafka(_)
            | PublishError::Idempotency(
                ClaimError::InProgress | ClaimError::Kafka(_) | ClaimError::Loading { .. },
            ) => "kafka_error",
        }
    }
}

/// Writes events to the events topic. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    pub(crate) producer: Producer,
    topic: Arc<str>,
    /// `kafka.scheduled_topic`.
    scheduled_topic: Arc<str>,
    /// `grpc.max_schedule_delay`, ms.
    max_schedule_ms: i64,
    pub(crate) registry: Registry,
    pub(crate) max_payload: usize,
    /// The idempotency topic (`None` when `grpc.idempotency_cache_size` is 0).
    pub(crate) claims: Option<Claims>,
    /// `grpc.allow_unknown_event_types`.
    pub(crate) allow_unknown: bool,
    /// `grpc.fanout_chunk_records`.
    pub(crate) chunk_records: usize,
}

impl Publisher {
    /// A publisher for `kafka.events_topic`.
    pub fn new(
        kafka: &KafkaConfig,
        grpc: &GrpcConfig,
        node_id: &str,
        registry: Registry,
    ) -> Result<Self, KafkaError> {
        let producer = Producer::new(&herald_kafka::producer_config(
            kafka,
            &format!("herald-ingest-{node_id}"),
        ))?;
        let claims = match grpc.idempotency_cache_size {
            0 => None,
            n => Some(Claims::start(kafka, n, producer.clone(), node_id)?),
        };
        Ok(Self {
            producer,
            topic: kafka.events_topic.as_str().into(),
            scheduled_topic: kafka.scheduled_topic.as_str().into(),
            max_schedule_ms: grpc.max_schedule_delay.as_millis() as i64,
            registry,
            max_payload: grpc.max_payload_bytes,
            claims,
            allow_unknown: grpc.allow_unknown_event_types,
            chunk_records: grpc.fanout_chunk_records,
        })
    }

    /// Validates and publishes one event; returns once Kafka acknowledged it.
    pub async fn publish(&self, req: PublishRequest) -> Result<PublishResponse, PublishError> {
        self.publish_as("", req).await
    }

    /// [`Publisher::publish`] for `caller` (an API token's name; empty when
    /// authentication is off): idempotency keys are scoped to the caller.
    pub async fn publish_as(
        &self,
        caller: &str,
        req: PublishRequest,
    ) -> Result<PublishResponse, PublishError> {
        let mut results = self.publish_many_as(caller, vec![req]).await;
        results.pop().expect("one result per request")
    }

    /// Publishes several events: all are validated, then enqueued to Kafka
    /// strictly in request order (so one endpoint's events keep their order
    /// even when the producer queue is full), then awaited together.
    pub async fn publish_many(
        &self,
        reqs: Vec<PublishRequest>,
    ) -> Vec<Result<PublishResponse, PublishError>> {
        self.publish_many_as("", reqs).await
    }

    /// [`Publisher::publish_many`] for `caller`: the same idempotency key
    /// from two callers names two different events, so one caller can
    /// neither guess nor collide with another's keys.
    pub async fn publish_many_as(
        &self,
        caller: &str,
        reqs: Vec<PublishRequest>,
    ) -> Vec<Result<PublishResponse, PublishError>> {
        // A started call runs to its end even if its caller goes away (a
        // gRPC deadline or a disconnect drops the handler's future): its
        // idempotency claims are then always answered or released, never
        // left to block their keys until their leases end.
        let n = reqs.len();
        let (this, caller) = (self.clone(), caller.to_string());
        match tokio::spawn(async move { this.publish_calls(&caller, reqs).await }).await {
            Ok(results) => results,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => (0..n)
                .map(|_| Err(PublishError::Kafka(KafkaError::Canceled)))
                .collect(),
        }
    }

    async fn publish_calls(
        &self,
        caller: &str,
        reqs: Vec<PublishRequest>,
    ) -> Vec<Result<PublishResponse, PublishError>> {
        if !reqs.iter().any(is_fan_out) {
            let slots: Vec<Slot> = reqs.into_iter().map(|r| self.prepare(caller, r)).collect();
            return self.send_slots(slots).await;
        }
        // In request order: each run of direct publishes together, each
        // fan-out on its own.
        let mut out = Vec::with_capacity(reqs.len());
        let mut run: Vec<Slot> = Vec::new();
        for req in reqs {
            if is_fan_out(&req) {
                out.extend(self.send_slots(std::mem::take(&mut run)).await);
                let result = self.fan_out(caller, req).await;
                let outcome = result.as_ref().map_or_else(|e| e.outcome(), |_| "ok");
                metrics::counter!(names::EVENTS_PUBLISHED, "outcome" => outcome).increment(1);
                out.push(result);
            } else {
                run.push(self.prepare(caller, req));
            }
        }
        out.extend(self.send_slots(run).await);
        out
    }

    /// Writes already-built envelopes (e.g. replayed dead letters) in order,
    /// without validation or idempotency lookups.
    pub async fn publish_envelopes(
        &self,
        envelopes: Vec<EventEnvelope>,
    ) -> Vec<Result<PublishResponse, PublishError>> {
        let slots = envelopes
            .into_iter()
            // Not claimed as a publisher's idempotency key either.
            .map(|envelope| Slot::Ready(Prepared::plain(envelope)))
            .collect();
        self.send_slots(slots).await
    }

    /// Waits until this node knows every idempotency key claimed before it
    /// started (at once when idempotency tracking is off).
    pub async fn wait_idempotency_loaded(&self) {
        if let Some(claims) = &self.claims {
            claims.wait_loaded().await;
        }
    }

    /// The producer (for records that are not events, e.g. replay markers).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    async fn send_slots(&self, mut slots: Vec<Slot>) -> Vec<Result<PublishResponse, PublishError>> {
        self.acquire_keys(&mut slots).await;
        for slot in &mut slots {
            if let Slot::Ready(p) = slot {
                *slot = self.enqueue(p).await;
            }
        }
        let mut out = Vec::with_capacity(slots.len());
        // One metric update per outcome per call, not per event: a lookup
        // costs about as much as validating a small event.
        let mut outcomes: Vec<(&'static str, u64)> = Vec::new();
        let (mut finished, mut released) = (Vec::new(), Vec::new());
        for slot in slots {
            let result = match slot {
                Slot::Done(r) => r,
                Slot::SameAs(j) => crate::publish_keys::same_answer(&out[j]),
                Slot::Ready(_) => unreachable!("every ready slot was enqueued"),
                Slot::Sent(p, fut) => {
                    let claim = p.keyed.and_then(|k| k.claim);
                    match fut.await {
                        Ok(Ok(delivery)) => {
                            let answer = Answer {
                                event_id: p.envelope.event_id,
                                partition: delivery.partition,
                                offset: delivery.offset,
                                deliver_at_ms: p.envelope.deliver_at_ms,
                                ..Default::default()
                            };
                            // The answer is kept only for a claimed key.
                            let resp = match claim {
                                Some(c) => {
                                    let resp = response(answer.clone(), false);
                                    finished.push((c, answer));
                                    resp
                                }
                                None => response(answer, false),
                            };
                            Ok(resp)
                        }
                        Ok(Err((e, _))) => {
                            released.extend(claim);
                            Err(PublishError::from_kafka(e))
                        }
                        Err(_) => {
                            released.extend(claim);
                            Err(PublishError::Kafka(KafkaError::Canceled))
                        }
                    }
                }
            };
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            };
            match outcomes.iter_mut().find(|(o, _)| *o == outcome) {
                Some((_, n)) => *n += 1,
                None => outcomes.push((outcome, 1)),
            }
            out.push(result);
        }
        for (outcome, n) in outcomes {
            metrics::counter!(names::EVENTS_PUBLISHED, "outcome" => outcome).increment(n);
        }
        self.settle_claims(finished, released).await;
        out
    }

    /// Hands one prepared event to the producer, waiting while its queue is full.
    pub(crate) async fn enqueue(&self, p: &mut Prepared) -> Slot {
        let p = std::mem::take(p);
        // A scheduled event waits in its tier of the scheduled topic.
        let wait = match herald_core::delay::step(now_ms(), p.envelope.deliver_at_ms) {
            herald_core::delay::Step::Wait { tier, ready_ms } => Some((tier, ready_ms.to_string())),
            herald_core::delay::Step::Deliver => None,
        };
        loop {
            let mut headers = OwnedHeaders::new_with_capacity(2).insert(Header {
                key: herald_kafka::headers::EVENT_ID,
                value: Some(p.envelope.event_id.as_bytes()),
            });
            let mut record = FutureRecord::to(&self.topic);
            if let Some((tier, ready)) = &wait {
                headers = headers.insert(Header {
                    key: herald_kafka::headers::READY_MS,
                    value: Some(ready.as_bytes()),
                });
                record = FutureRecord::to(&self.scheduled_topic).partition(*tier);
            }
            let record = record
                .key(p.envelope.endpoint_id.as_bytes())
                .payload(&p.value)
                .headers(headers);
            match self.producer.send_result(record) {
                Ok(fut) => return Slot::Sent(p, fut),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Slot::Done(Err(PublishError::from_kafka(e))),
            }
        }
    }

    /// Validates a request and builds its envelope (or answers it from the
    /// idempotency cache).
    fn prepare(&self, caller: &str, req: PublishRequest) -> Slot {
        match self.validate(caller, req) {
            Ok(Validated::Cached(resp)) => Slot::Done(Ok(resp)),
            Ok(Validated::New(envelope, keyed)) => {
                let value = envelope.encode_to_vec();
                Slot::Ready(Prepared {
                    envelope,
                    value,
                    keyed,
                })
            }
            Err(e) => Slot::Done(Err(e)),
        }
    }

    fn validate(&self, caller: &str, req: PublishRequest) -> Result<Validated, PublishError> {
        if req.endpoint_id.is_empty() {
            return Err(validate::FieldError::new(
                "endpoint_id",
                "is required (or leave it empty and set app_id to fan out to an application's subscribed endpoints)",
            )
            .into());
        }
        validate::id("endpoint_id", &req.endpoint_id)?;
        validate::event_type(&req.event_type)?;
        validate::payload(&req.payload, self.max_payload)?;
        check_key_len(&req.idempotency_key)?;
        let due = self.due_ms(&req)?;
        if !req.event_id.is_empty() {
            validate::id("event_id", &req.event_id)?;
            check_caller_event_id(&req.event_id)?;
        }
        if !self.registry.is_loaded() {
            return Err(PublishError::NotReady);
        }
        match self.registry.get(&req.endpoint_id) {
            None => return Err(PublishError::NotFound(req.endpoint_id)),
            Some(ep) if !ep.enabled => return Err(PublishError::Disabled(req.endpoint_id)),
            Some(_) => {}
        }
        let keyed = !req.idempotency_key.is_empty();
        let cache_key = if keyed {
            ids::scoped_idempotency_key(caller, &req.idempotency_key)
        } else {
            String::new()
        };
        let mut idem = None;
        if let (true, Some(claims)) = (keyed, &self.claims) {
            let key = scope::key(
                caller,
                scope::Target::Endpoint(&req.endpoint_id),
                &req.idempotency_key,
            );
            let request = scope::request(
                &req.event_type,
                &req.payload,
                &req.event_id,
                &[],
                (req.deliver_at_ms, req.delay_ms),
            );
            match claims.peek(&key, &request) {
                Some(Ok(answer)) => return Ok(Validated::Cached(response(answer, true))),
                Some(Err(e)) => return Err(e.into()),
                None => {
                    idem = Some(Keyed {
                        key,
                        request,
                        claim: None,
                    })
                }
            }
        }
        // After the cache: a retry of an accepted publish gets its answer
        // even if the type was archived or its schema changed since.
        fanout::check_event_type(
            &self.registry,
            self.allow_unknown,
            &req.event_type,
            &req.payload,
            &mut None,
        )?;
        let event_id = if !req.event_id.is_empty() {
            req.event_id
        } else if keyed {
            ids::idempotent_event_id(&req.endpoint_id, &cache_key)
        } else {
            ids::new_event_id()
        };
        Ok(Validated::New(
            EventEnvelope {
                event_id,
                endpoint_id: req.endpoint_id,
                event_type: req.event_type,
                payload: Bytes::from(req.payload.into_bytes()),
                created_at_ms: now_ms(),
                idempotency_key: req.idempotency_key,
                attempt: Some(AttemptState::default()),
                deliver_at_ms: due,
                ..Default::default()
            },
            idem,
        ))
    }

    /// When `req` asks to be delivered (0 = at once).
    pub(crate) fn due_ms(&self, req: &PublishRequest) -> Result<i64, validate::FieldError> {
        herald_core::delay::due_ms(
            req.deliver_at_ms,
            req.delay_ms,
            now_ms(),
            self.max_schedule_ms,
        )
    }
}

/// Most bytes of fan-out records handed to the producer before they are
/// acknowledged (under Kafka's default 1 MiB request size), unless one
/// record of the largest accepted payload needs more.
pub const FANOUT_CHUNK_BYTES: usize = 900_000;

/// Whether `req` fans out (names an application, no endpoint).
pub(crate) fn is_fan_out(req: &PublishRequest) -> bool {
    req.endpoint_id.is_empty() && !req.app_id.is_empty()
}

pub(crate) fn check_key_len(key: &str) -> Result<(), PublishError> {
    if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(validate::FieldError::new(
            "idempotency_key",
            format!("is longer than {MAX_IDEMPOTENCY_KEY_LEN} bytes"),
        )
        .into());
    }
    Ok(())
}

/// Refuses caller-chosen event ids in the namespaces of derived ones, so a
/// caller's id can never collide with an id Herald derives or generates.
pub(crate) fn check_caller_event_id(id: &str) -> Result<(), validate::FieldError> {
    for prefix in [
        herald_catalog::fanout::FANOUT_ID_PREFIX,
        herald_catalog::fanout::MESSAGE_ID_PREFIX,
        crate::test_event::TEST_EVENT_PREFIX,
        herald_core::ids::BATCH_ID_PREFIX,
    ] {
        if id.starts_with(prefix) {
            return Err(validate::FieldError::new(
                "event_id",
                format!(
                    "must not start with {prefix:?} (reserved for ids Herald derives or generates)"
                ),
            ));
        }
    }
    Ok(())
}

/// The response repeating an idempotency key's answer.
pub(crate) fn response(answer: Answer, duplicate: bool) -> PublishResponse {
    PublishResponse {
        event_id: answer.event_id,
        partition: answer.partition,
        offset: answer.offset,
        duplicate,
        message_id: answer.message_id,
        fanned_out: answer.fanned_out,
        deliver_at_ms: answer.deliver_at_ms,
    }
}

/// An idempotent publish's key, request and (once acquired) claim.
pub(crate) struct Keyed {
    pub(crate) key: Key,
    pub(crate) request: RequestHash,
    pub(crate) claim: Option<Claim>,
}

/// A validated event ready for Kafka.
#[derive(Default)]
pub(crate) struct Prepared {
    pub(crate) envelope: EventEnvelope,
    pub(crate) value: Vec<u8>,
    /// Set when the publish carries an idempotency key (and the node
    /// tracks keys).
    pub(crate) keyed: Option<Keyed>,
}

impl Prepared {
    /// An event written without an idempotency claim.
    pub(crate) fn plain(envelope: EventEnvelope) -> Self {
        let value = envelope.encode_to_vec();
        Self {
            envelope,
            value,
            keyed: None,
        }
    }
}

// Lives for one call on the stack; boxing the envelope would cost an
// allocation per published event.
#[allow(clippy::large_enum_variant)]
enum Validated {
    Cached(PublishResponse),
    /// The event, and its idempotency key's hashes.
    New(EventEnvelope, Option<Keyed>),
}

/// One request's progress through [`Publisher::publish_many`].
pub(crate) enum Slot {
    Ready(Prepared),
    Sent(Prepared, DeliveryFuture),
    Done(Result<PublishResponse, PublishError>),
    /// Repeats an earlier slot of the same call (same key and request).
    SameAs(usize),
}
