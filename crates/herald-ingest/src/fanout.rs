//! Fan-out and the catalogue's checks on a publish.
//!
//! A publish that names an application instead of an endpoint goes to every
//! enabled endpoint of that application whose subscription takes it (event
//! type pattern, channels, filter), as one events-topic record per endpoint,
//! keyed by that endpoint: each gets its own lane, order and rate limit.
//!
//! All-or-nothing from the publisher's side without Kafka transactions
//! (tansu 0.6.0 cannot commit them, and a transaction could not span a
//! fan-out to thousands of endpoints anyway): every record's event id is
//! derived from the message id and the endpoint id, and the message id from
//! the idempotency key. The call answers only after Kafka acknowledged every
//! record; if any write fails the call fails, and a retry with the same key
//! writes the same records with the same ids again, so receivers see each
//! endpoint's event under one `webhook-id` (as for a retried single publish;
//! docs/api.md#fan-out). Records go to the producer in chunks
//! ([`herald_catalog::plan_chunks`]), each acknowledged before the next, so
//! a fan-out holds at most one chunk in flight whatever its size.

use std::sync::Arc;

use herald_catalog::{EventInput, Match, NoMatch};
use herald_core::validate::FieldError;
use herald_core::Endpoint;
use herald_registry::Registry;
use herald_telemetry::names;
use serde_json::Value;

use crate::publish::PublishError;

/// The catalogue's verdict on publishing `event_type` with `payload`:
/// archived types are refused, unknown ones per `allow_unknown`, and a
/// known type's schema must accept the payload (parsed into `parsed` once,
/// for the filters too).
pub(crate) fn check_event_type(
    registry: &Registry,
    allow_unknown: bool,
    event_type: &str,
    payload: &str,
    parsed: &mut Option<Value>,
) -> Result<(), PublishError> {
    let Some(ty) = registry.event_type(event_type) else {
        if allow_unknown {
            return Ok(());
        }
        return Err(PublishError::UnknownType(event_type.to_string()));
    };
    if ty.ty.archived() {
        return Err(PublishError::Archived(event_type.to_string()));
    }
    if ty.ty.schema().is_none() {
        return Ok(());
    }
    let value = parsed_payload(payload, parsed)?;
    ty.ty
        .validate_payload(value)
        .map_err(|e| FieldError::new("payload", e.to_string()).into())
}

/// The payload as a JSON value, parsed on first use.
pub(crate) fn parsed_payload<'a>(
    payload: &str,
    parsed: &'a mut Option<Value>,
) -> Result<&'a Value, PublishError> {
    if parsed.is_none() {
        let v: Value = serde_json::from_str(payload)
            .map_err(|e| FieldError::new("payload", format!("is not valid JSON: {e}")))?;
        *parsed = Some(v);
    }
    Ok(parsed.as_ref().expect("just parsed"))
}

/// The endpoints of `app` that take this event: enabled, and their
/// subscription matches. A filter that cannot be evaluated on this payload
/// (a missing field, a type mismatch) does not take it.
pub(crate) fn targets(
    registry: &Registry,
    app: &str,
    event_type: &str,
    channels: &[String],
    payload: &Value,
) -> Vec<Arc<Endpoint>> {
    let input = EventInput::new(event_type, channels, payload);
    let (mut filtered_out, mut filter_errors) = (0u64, 0u64);
    let targets: Vec<Arc<Endpoint>> = registry
        .endpoints_in(app)
        .into_iter()
        .filter(|ep| {
            if !ep.enabled {
                return false;
            }
            match ep.subscription.matches(&input) {
                Match::Matched => true,
                Match::NoMatch(NoMatch::FilteredOut) => {
                    filtered_out += 1;
                    false
                }
                Match::NoMatch(NoMatch::FilterError(e)) => {
                    filter_errors += 1;
                    tracing::debug!(endpoint = %ep.id, event_type, error = %e, "fan-out filter could not be evaluated; no record for this endpoint");
                    false
                }
                Match::NoMatch(_) => false,
            }
        })
        .collect();
    let count = |outcome: &'static str, n: u64| {
        if n > 0 {
            metrics::counter!(names::FANOUT_TARGETS, "outcome" => outcome).increment(n);
        }
    };
    count("matched", targets.len() as u64);
    count("filtered_out", filtered_out);
    count("filter_error", filter_errors);
    targets
}
