//! One delivery attempt of one event (or of one batch of an endpoint's
//! events, in one request): wait out the backoff, POST, classify the
//! answer, record metrics and a log line per event, and say what happens
//! next.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use herald_core::retry::{decide, FailureKind, RetryRules, Verdict};
use herald_core::time::now_ms;
use herald_delivery::{AttemptError, AttemptResult, Deliverer, DeliveryRequest};
use herald_proto::v1::EventEnvelope;
use herald_telemetry::names;
use tokio_util::sync::CancellationToken;

use crate::attempt_log::{AttemptLog, Entry};
use crate::endpoint::Prepared;
use crate::rate::Pacer;

/// Where an event held by a worker came from: finishing it finishes this
/// offset in that topic's tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The events topic, at this offset.
    Events(i64),
    /// The retry topic, at this offset.
    Retry(i64),
}

/// An event held in a lane, with its delivery progress.
#[derive(Debug)]
pub struct Event {
    /// Where this copy of the event is stored.
    pub source: Source,
    /// Its original events-topic offset: orders an endpoint's events.
    pub origin: i64,
    /// The decoded record, with its attempt state kept current.
    pub envelope: EventEnvelope,
}

impl Event {
    /// Attempts made so far (including those of earlier owners).
    pub fn attempts(&self) -> u32 {
        self.envelope.attempt.as_ref().map_or(0, |a| a.attempts)
    }

    /// Unix ms before which the next attempt must not start.
    pub fn due_ms(&self) -> i64 {
        self.envelope
            .attempt
            .as_ref()
            .map_or(0, |a| a.next_attempt_ms)
    }
}

/// What an attempt concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Delivered (2xx).
    Delivered,
    /// Failed; the verdict says whether retrying may help.
    Failed {
        /// Retryable or final.
        verdict: Verdict,
        /// The receiver's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// Not attempted: the partition is draining.
    Aborted,
    /// Not attempted: the endpoint changed (URL, secrets, headers, deleted)
    /// while the attempt waited; the partition decides again.
    Stale,
}

/// How an attempt checks, right before it sends, that the endpoint it was
/// decided for is still the registry's current one.
#[derive(Clone)]
pub struct Freshness {
    /// The registry.
    pub registry: herald_registry::Registry,
    /// Its version when the attempt was decided.
    pub version: u64,
}

impl Freshness {
    /// Whether `prepared` is still current (one atomic load when nothing
    /// changed).
    fn is_current(&self, prepared: &Prepared) -> bool {
        if self.registry.version() == self.version {
            return true;
        }
        self.registry
            .get(&prepared.endpoint.id)
            .is_some_and(|now| *now == *prepared.endpoint)
    }
}

/// Settings shared by every attempt of a node.
pub struct AttemptContext {
    /// The shared HTTP client.
    pub deliverer: Deliverer,
    /// Which answers are final.
    pub rules: RetryRules,
    /// Where attempts are recorded (None = not recorded).
    pub log: Option<AttemptLog>,
    /// Metric handles of the delivered path, looked up once.
    pub delivered: DeliveredMetrics,
    /// The node-wide ceiling per destination host (None = off).
    pub host_ceiling: Option<crate::host_ceiling::HostCeiling>,
}

/// The metrics every successful attempt updates, registered once (a
/// lookup hashes the name and labels each time; this path runs for every
/// delivery). Build it after the recorder is installed.
#[derive(Clone)]
pub struct DeliveredMetrics {
    attempts: metrics::Counter,
    latency: metrics::Histogram,
    events: metrics::Counter,
    end_to_end: metrics::Histogram,
}

impl DeliveredMetrics {
    /// Registers the handles with the installed recorder.
    pub fn new() -> Self {
        Self {
            attempts: metrics::counter!(names::DELIVERY_ATTEMPTS, "outcome" => "success", "status_class" => "2xx"),
            latency: metrics::histogram!(names::DELIVERY_LATENCY, "outcome" => "success"),
            events: metrics::counter!(names::EVENTS_DELIVERED),
            end_to_end: metrics::histogram!(names::END_TO_END_LATENCY),
        }
    }
}

impl Default for DeliveredMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AttemptContext {
    /// Waits `delay` (aborting if `drain` fires first), then makes one
    /// attempt of `event` (with the rest of its `batch`, in one request) and
    /// records it in each event's attempt state. If the endpoint changed
    /// meanwhile, nothing is sent ([`Outcome::Stale`]).
    #[allow(clippy::too_many_arguments)] // the worker's one call site names each
    pub async fn run(
        self: Arc<Self>,
        prepared: Arc<Prepared>,
        pacer: Arc<Pacer>,
        event: Event,
        batch: Vec<Event>,
        delay: Duration,
        drain: CancellationToken,
        fresh: Freshness,
    ) -> (Event, Vec<Event>, Outcome) {
        let mut members: Vec<Event> = std::iter::once(event).chain(batch).collect();
        let outcome = self
            .attempt(&prepared, &pacer, &mut members, delay, &drain, &fresh)
            .await;
        let mut members = members.into_iter();
        let event = members.next().expect("a batch has a first event");
        (event, members.collect(), outcome)
    }

    async fn attempt(
        &self,
        prepared: &Prepared,
        pacer: &Pacer,
        members: &mut [Event],
        delay: Duration,
        drain: &CancellationToken,
        fresh: &Freshness,
    ) -> Outcome {
        if !delay.is_zero() {
            tokio::select! {
                _ = drain.cancelled() => return Outcome::Aborted,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        // The endpoint's rate limit and Retry-After, then the node's ceiling
        // for the destination host: waiting is not an attempt. A batch is
        // one request.
        tokio::select! {
            _ = drain.cancelled() => return Outcome::Aborted,
            _ = pacer.acquire() => {}
        }
        if let Some(ceiling) = &self.host_ceiling {
            let key = crate::host_ceiling::HostCeiling::key(&prepared.endpoint.url);
            tokio::select! {
                _ = drain.cancelled() => return Outcome::Aborted,
                _ = ceiling.acquire(&key) => {}
            }
        }
        if drain.is_cancelled() {
            return Outcome::Aborted;
        }
        if !fresh.is_current(prepared) {
            return Outcome::Stale;
        }
        let started_ms = now_ms();
        // An endpoint that takes batches always gets the batch format, one
        // event or many, so its receiver parses one shape.
        let (msg_id, body) = match (&*members, prepared.endpoint.batch) {
            ([one], None) => (one.envelope.event_id.clone(), one.envelope.payload.clone()),
            _ => {
                let envelopes = members.iter().map(|e| &e.envelope);
                (
                    crate::batch::id(envelopes.clone()),
                    crate::batch::body(envelopes),
                )
            }
        };
        let req = DeliveryRequest {
            url: &prepared.endpoint.url,
            msg_id: &msg_id,
            timestamp: started_ms / 1000,
            body,
            signer: prepared.signer_at(started_ms),
            headers: &prepared.headers,
            timeout: prepared.endpoint.timeout,
        };
        let result = self.deliverer.deliver(&req).await;
        let outcome = self.classify(&result);
        match result.status {
            Some(429) | Some(503) => pacer.throttled(result.retry_after.as_ref().map(|ra| {
                ra.delay(SystemTime::now())
                    .min(prepared.policy.max_retry_after)
            })),
            Some(200..=299) => pacer.succeeded(),
            _ => {}
        }
        let error = if outcome == Outcome::Delivered {
            String::new()
        } else {
            describe(&result)
        };
        observe_request(&self.delivered, &result, &outcome);
        for event in members.iter_mut() {
            let state = event.envelope.attempt.get_or_insert_with(Default::default);
            state.attempts += 1;
            if state.first_attempt_ms == 0 {
                state.first_attempt_ms = started_ms;
            }
            state.last_attempt_ms = started_ms;
            state.last_status = result.status.map_or(0, u32::from);
            state.last_error.clone_from(&error);
            observe_event(&self.delivered, prepared, event, &result, &outcome);
            if let Some(log) = &self.log {
                let state = event.envelope.attempt.as_ref();
                log.record(Entry {
                    event_id: &event.envelope.event_id,
                    message_id: &event.envelope.message_id,
                    endpoint_id: &event.envelope.endpoint_id,
                    event_type: &event.envelope.event_type,
                    attempt: state.map_or(1, |a| a.attempts),
                    at_ms: started_ms,
                    status: result.status.map_or(0, u32::from),
                    latency_ms: result.latency.as_millis().min(u128::from(u32::MAX)) as u32,
                    outcome: outcome_label(&result, &outcome),
                    error: state.map_or("", |a| a.last_error.as_str()),
                    body: result.body_snippet.clone(),
                });
            }
        }
        outcome
    }

    fn classify(&self, r: &AttemptResult) -> Outcome {
        // A status with a body-read error still counts as the receiver's answer.
        let failure = if r.status.is_some() {
            None
        } else {
            r.error.as_ref().map(failure_kind)
        };
        match decide(r.status, failure, self.rules) {
            Verdict::Success => Outcome::Delivered,
            verdict => Outcome::Failed {
                verdict,
                retry_after: r.retry_after.as_ref().map(|ra| ra.delay(SystemTime::now())),
            },
        }
    }
}

fn failure_kind(e: &AttemptError) -> FailureKind {
    match e {
        AttemptError::Connect(_) => FailureKind::Connect,
        AttemptError::Timeout => FailureKind::Timeout,
        AttemptError::Tls(_) => FailureKind::Tls,
        AttemptError::InvalidRequest(_) | AttemptError::Refused(_) => FailureKind::Refused,
        AttemptError::Request(_) | AttemptError::BodyRead(_) => FailureKind::Other,
    }
}

/// Longest `last_error` kept: the receiver controls part of it (e.g. a
/// redirect's `Location`), and it travels in retry and dead-letter records.
pub const MAX_ERROR_TEXT: usize = 512;

/// A short human-readable account of a failed attempt, at most
/// [`MAX_ERROR_TEXT`] bytes.
pub fn describe(r: &AttemptResult) -> String {
    herald_core::text::bounded(&describe_in_full(r), MAX_ERROR_TEXT)
}

fn describe_in_full(r: &AttemptResult) -> String {
    match (&r.status, &r.error) {
        (Some(s), _) if r.location.is_some() => {
            format!(
                "HTTP {s} redirect to {} (not followed)",
                r.location.as_deref().unwrap_or("")
            )
        }
        (Some(s), _) => format!("HTTP {s}"),
        (None, Some(e)) => e.to_string(),
        (None, None) => "no answer".to_string(),
    }
}

/// The `outcome` label of an attempt.
fn outcome_label(r: &AttemptResult, outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Delivered => "success",
        Outcome::Failed {
            verdict: Verdict::Retry,
            ..
        } => "retryable",
        Outcome::Failed { .. }
            if matches!(
                r.error,
                Some(AttemptError::InvalidRequest(_) | AttemptError::Refused(_))
            ) =>
        {
            "refused"
        }
        Outcome::Failed { .. } | Outcome::Aborted | Outcome::Stale => "final",
    }
}

/// The request's metrics: one attempt, whatever a batch carried.
fn observe_request(m: &DeliveredMetrics, r: &AttemptResult, outcome: &Outcome) {
    let label = match outcome {
        Outcome::Aborted | Outcome::Stale => return,
        _ => outcome_label(r, outcome),
    };
    let class = names::status_class(r.status);
    if matches!(outcome, Outcome::Delivered) && class == "2xx" {
        m.attempts.increment(1);
        m.latency.record(r.latency.as_secs_f64());
    } else {
        metrics::counter!(names::DELIVERY_ATTEMPTS, "outcome" => label, "status_class" => class)
            .increment(1);
        metrics::histogram!(names::DELIVERY_LATENCY, "outcome" => label)
            .record(r.latency.as_secs_f64());
    }
}

/// Each event's metrics and log line.
fn observe_event(
    m: &DeliveredMetrics,
    prepared: &Prepared,
    event: &Event,
    r: &AttemptResult,
    outcome: &Outcome,
) {
    let ep = &prepared.endpoint.id;
    let id = &event.envelope.event_id;
    let attempt = event.attempts();
    match outcome {
        Outcome::Delivered => {
            m.events.increment(1);
            let age_ms = (now_ms() - crate::lane::age_base_ms(&event.envelope)).max(0);
            m.end_to_end.record(age_ms as f64 / 1000.0);
            tracing::debug!(event_id = %id, endpoint_id = %ep, attempt, status = r.status, "delivered");
        }
        Outcome::Failed { verdict, .. } => tracing::info!(
            event_id = %id, endpoint_id = %ep, attempt, status = r.status,
            error = %describe(r), final_answer = (*verdict == Verdict::Final), "delivery attempt failed"
        ),
        Outcome::Aborted | Outcome::Stale => {}
    }
}
