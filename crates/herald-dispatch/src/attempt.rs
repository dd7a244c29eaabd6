//! One delivery attempt of one event: wait out the backoff, POST, classify
//! the answer, record metrics and a log line, and say what happens next.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use herald_core::backoff::{honour_retry_after, Backoff};
use herald_core::retry::{decide, FailureKind, RetryRules, Verdict};
use herald_core::time::now_ms;
use herald_delivery::{AttemptError, AttemptResult, Deliverer, DeliveryRequest};
use herald_proto::v1::EventEnvelope;
use herald_telemetry::names;
use tokio_util::sync::CancellationToken;

use crate::endpoint::Prepared;

/// An event held in a lane, with its delivery progress.
#[derive(Debug)]
pub struct Event {
    /// Offset in its partition.
    pub offset: i64,
    /// The decoded record.
    pub envelope: EventEnvelope,
    /// Attempts made so far (including those of earlier owners).
    pub attempts: u32,
}

/// What an attempt concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Delivered (2xx).
    Delivered,
    /// Failed; try again after this long.
    Retry(Duration),
    /// Failed for good; the reason.
    Final(String),
    /// Not attempted: the partition is draining.
    Aborted,
}

/// Settings shared by every attempt of a node.
pub struct AttemptContext {
    /// The shared HTTP client.
    pub deliverer: Deliverer,
    /// Which answers are final.
    pub rules: RetryRules,
    /// Delay schedule of in-lane retries.
    pub backoff: Backoff,
    /// Longest wait a `Retry-After` may impose.
    pub retry_after_cap: Duration,
}

impl AttemptContext {
    /// Waits `delay` (aborting if `drain` fires first), then makes one attempt.
    pub async fn run(
        self: Arc<Self>,
        prepared: Arc<Prepared>,
        mut event: Event,
        delay: Duration,
        drain: CancellationToken,
    ) -> (Event, Outcome) {
        if !delay.is_zero() {
            tokio::select! {
                _ = drain.cancelled() => return (event, Outcome::Aborted),
                _ = tokio::time::sleep(delay) => {}
            }
        }
        let timestamp = now_ms() / 1000;
        let req = DeliveryRequest {
            url: &prepared.endpoint.url,
            msg_id: &event.envelope.event_id,
            timestamp,
            body: event.envelope.payload.clone(),
            signer: &prepared.signer,
            headers: &prepared.headers,
        };
        let result = self.deliverer.deliver(&req).await;
        event.attempts += 1;
        let outcome = self.classify(&result, event.attempts);
        observe(&prepared, &event, &result, &outcome);
        (event, outcome)
    }

    fn classify(&self, r: &AttemptResult, attempts: u32) -> Outcome {
        let failure = r.error.as_ref().map(failure_kind);
        // A status with a body-read error still counts as the receiver's answer.
        let status = r.status;
        match decide(status, if status.is_some() { None } else { failure }, self.rules) {
            Verdict::Success => Outcome::Delivered,
            Verdict::Final => Outcome::Final(describe(r)),
            Verdict::Retry => {
                let unit: f64 = rand::random();
                let delay = self.backoff.delay(attempts, unit);
                let ra = r.retry_after.as_ref().map(|ra| ra.delay(SystemTime::now()));
                Outcome::Retry(honour_retry_after(delay, ra, self.retry_after_cap))
            }
        }
    }
}

fn failure_kind(e: &AttemptError) -> FailureKind {
    match e {
        AttemptError::Connect(_) => FailureKind::Connect,
        AttemptError::Timeout => FailureKind::Timeout,
        AttemptError::Tls(_) => FailureKind::Tls,
        AttemptError::InvalidRequest(_) => FailureKind::Refused,
        AttemptError::Request(_) | AttemptError::BodyRead(_) => FailureKind::Other,
    }
}

/// A short human-readable account of a failed attempt.
pub fn describe(r: &AttemptResult) -> String {
    match (&r.status, &r.error) {
        (Some(s), _) if r.location.is_some() => {
            format!("HTTP {s} redirect to {} (not followed)", r.location.as_deref().unwrap_or(""))
        }
        (Some(s), _) => format!("HTTP {s}"),
        (None, Some(e)) => e.to_string(),
        (None, None) => "no answer".to_string(),
    }
}

fn observe(prepared: &Prepared, event: &Event, r: &AttemptResult, outcome: &Outcome) {
    let label = match outcome {
        Outcome::Delivered => "success",
        Outcome::Retry(_) => "retryable",
        Outcome::Final(_) if matches!(r.error, Some(AttemptError::InvalidRequest(_))) => "refused",
        Outcome::Final(_) => "final",
        Outcome::Aborted => return,
    };
    metrics::counter!(names::DELIVERY_ATTEMPTS, "outcome" => label, "status_class" => names::status_class(r.status))
        .increment(1);
    metrics::histogram!(names::DELIVERY_LATENCY, "outcome" => label).record(r.latency.as_secs_f64());
    let ep = &prepared.endpoint.id;
    let id = &event.envelope.event_id;
    match outcome {
        Outcome::Delivered => {
            metrics::counter!(names::EVENTS_DELIVERED).increment(1);
            let age_ms = (now_ms() - event.envelope.created_at_ms).max(0);
            metrics::histogram!(names::END_TO_END_LATENCY).record(age_ms as f64 / 1000.0);
            tracing::debug!(event_id = %id, endpoint_id = %ep, attempt = event.attempts, status = r.status, "delivered");
        }
        Outcome::Retry(delay) => tracing::info!(
            event_id = %id, endpoint_id = %ep, attempt = event.attempts, status = r.status,
            error = %describe(r), retry_in_ms = delay.as_millis() as u64, "delivery failed; will retry"
        ),
        Outcome::Final(reason) => tracing::warn!(
            event_id = %id, endpoint_id = %ep, attempt = event.attempts, status = r.status,
            error = %reason, "delivery failed for good"
        ),
        Outcome::Aborted => {}
    }
}
