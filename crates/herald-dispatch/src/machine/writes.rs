//! Custody of events being written to the retry and dead-letter topics.
//!
//! Every write gets an id and is handed to the worker as
//! [`super::Action::Write`], in decision order; the worker keeps them in
//! that order on the producer. The event's source offset is finished only
//! when its write has landed; a head copy's landing is recorded on the
//! lane's [`crate::lane::HeadCopy`] (and finishes the original if the
//! original already failed). A write that fails for good stops the
//! partition ([`super::Action::Fatal`]): writing it again could land it
//! behind later writes.

use std::sync::Arc;

use herald_registry::ops::kind;
use herald_telemetry::names;

use super::{Action, Ctx, Partition};
use crate::attempt::{Event, Source};
use crate::lane::CopyFate;
use crate::sink::{DeadReason, Target};

/// What the core remembers of a write while it is under way.
#[derive(Debug, Clone)]
pub struct WriteMeta {
    /// The lane it belongs to (empty for a poison record).
    pub endpoint: Arc<str>,
    /// The offset it carries (finished when it lands), unless a copy.
    pub source: Source,
    /// The event's origin offset.
    pub origin: i64,
    /// Where it goes.
    pub target: Target,
    /// A copy of an in-flight head: the original still owns its offset.
    pub copy: bool,
    /// For operational events.
    pub event_id: String,
}

impl Partition {
    /// Hands a write to the worker (in decision order).
    pub(super) fn write(
        &mut self,
        endpoint: Arc<str>,
        mut event: Event,
        target: Target,
        copy: bool,
    ) {
        if target == Target::Retry {
            self.lane(&endpoint).appends += 1;
        }
        event.envelope.origin_partition = self.cfg.partition;
        let id = self.next_write;
        self.next_write += 1;
        self.writes.insert(
            id,
            WriteMeta {
                endpoint,
                source: event.source,
                origin: event.origin,
                target,
                copy,
                event_id: event.envelope.event_id.clone(),
            },
        );
        self.actions.push(Action::Write {
            id,
            target,
            envelope: event.envelope,
        });
    }

    pub(super) fn on_written(&mut self, id: u64, result: Result<i64, String>, ctx: &mut Ctx<'_>) {
        let Some(w) = self.writes.remove(&id) else {
            return;
        };
        let offset = match result {
            Ok(offset) => offset,
            Err(e) => {
                tracing::error!(partition = self.cfg.partition, endpoint_id = %w.endpoint, error = %e, "a retry/dead-letter write failed for good");
                self.actions.push(Action::Fatal(e));
                return;
            }
        };
        match w.target {
            Target::Retry => {
                metrics::counter!(names::RETRY_WRITES).increment(1);
                let mut finish_original = None;
                if let Some(lane) = self.lanes.get_mut(&w.endpoint) {
                    lane.appends -= 1;
                    lane.last_append = Some(lane.last_append.map_or(offset, |a| a.max(offset)));
                    if w.copy {
                        if let Some(c) = lane.copies.get_mut(&w.origin) {
                            c.landed_at = Some(offset);
                            finish_original = c.finish_on_landing.take();
                            if c.fate == CopyFate::Settled {
                                // The original was delivered first.
                                ctx.trackers.retry.finished_ahead(offset);
                            }
                        }
                    }
                }
                if let Some(source) = finish_original {
                    self.finish(source, ctx);
                }
                if !w.copy {
                    self.finish(w.source, ctx);
                }
            }
            Target::DeadLetter(reason) => {
                metrics::counter!(names::DEAD_LETTERS, "reason" => reason.as_str()).increment(1);
                if matches!(
                    reason,
                    DeadReason::Exhausted(_) | DeadReason::UnknownEndpoint
                ) {
                    self.actions.push(Action::Ops {
                        kind: kind::EVENT_EXHAUSTED,
                        endpoint: w.endpoint.clone(),
                        detail: serde_json::json!({"event_id": w.event_id, "reason": reason.as_str()}),
                    });
                }
                if let Some(lane) = self.lanes.get_mut(&w.endpoint) {
                    lane.in_flight -= 1;
                }
                self.finish(w.source, ctx);
            }
        }
        self.after_settle(&w.endpoint, ctx);
    }
}
