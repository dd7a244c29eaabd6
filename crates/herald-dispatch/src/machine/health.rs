//! Endpoint health decided in the core: each attempt's result feeds the
//! endpoint's circuit breaker (transitions become operational events), and
//! a `410 Gone` or failing for longer than `disable_after` asks the worker
//! to disable the endpoint, once per registry version of it.

use std::sync::Arc;

use herald_core::breaker::{Breaker, Transition};
use herald_registry::ops::kind;
use herald_telemetry::names;

use super::{Action, Ctx, Known, Partition};
use crate::attempt::Event;

impl Partition {
    /// Records an attempt's result in the endpoint's breaker; tells operators
    /// about transitions.
    pub(super) fn breaker_record(&mut self, endpoint: &Arc<str>, success: bool, now_ms: i64) {
        let config = self.cfg.breaker;
        let breaker = self
            .breakers
            .entry(endpoint.clone())
            .or_insert_with(|| Breaker::new(config));
        match breaker.record(success, now_ms) {
            Some(Transition::Opened) => {
                metrics::counter!(names::CIRCUIT_TRANSITIONS, "state" => "open").increment(1);
                metrics::gauge!(names::CIRCUITS_OPEN).increment(1.0);
                tracing::warn!(endpoint_id = %endpoint, "circuit opened: no requests until the cool-down ends");
                self.actions.push(Action::Ops {
                    kind: kind::CIRCUIT_OPENED,
                    endpoint: endpoint.clone(),
                    detail: serde_json::json!({"cool_down_ms": config.cool_down_ms}),
                });
            }
            Some(Transition::Closed) => {
                metrics::counter!(names::CIRCUIT_TRANSITIONS, "state" => "closed").increment(1);
                metrics::gauge!(names::CIRCUITS_OPEN).decrement(1.0);
                tracing::info!(endpoint_id = %endpoint, "circuit closed");
                self.actions.push(Action::Ops {
                    kind: kind::CIRCUIT_CLOSED,
                    endpoint: endpoint.clone(),
                    detail: serde_json::json!({}),
                });
            }
            None => {}
        }
    }

    /// A failed attempt: track how long the endpoint has been failing and
    /// disable it on `410 Gone` or after `disable_after`.
    pub(super) fn note_failure(&mut self, endpoint: &Arc<str>, event: &Event, ctx: &mut Ctx<'_>) {
        let a = event.envelope.attempt.clone().unwrap_or_default();
        let now = ctx.now_ms;
        let first = if a.first_attempt_ms > 0 {
            a.first_attempt_ms
        } else {
            now
        };
        let since = *self
            .failing_since
            .entry(endpoint.clone())
            .and_modify(|s| *s = (*s).min(first))
            .or_insert(first);
        let period = self.cfg.disable_after_ms;
        if a.last_status == 410 {
            self.disable(
                endpoint,
                "gone",
                "the endpoint answered 410 Gone".into(),
                ctx,
            );
        } else if period > 0 && now - since > period {
            let detail = format!("failing since {} ms ago", now - since);
            self.disable(endpoint, "failing", detail, ctx);
        }
    }

    /// Asks the worker to disable `endpoint` (once per registry version).
    fn disable(
        &mut self,
        endpoint: &Arc<str>,
        reason: &'static str,
        detail: String,
        ctx: &mut Ctx<'_>,
    ) {
        let Known::Ready(current) = self.known(endpoint, ctx) else {
            return;
        };
        let version = current.endpoint.updated_at_ms;
        if !current.endpoint.enabled || self.disabling.get(endpoint) == Some(&version) {
            return;
        }
        self.disabling.insert(endpoint.clone(), version);
        self.actions.push(Action::Disable {
            endpoint: endpoint.clone(),
            reason,
            detail,
        });
    }
}
