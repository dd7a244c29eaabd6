//! What an attempt's outcome means for its events (one, or a batch that
//! shares the outcome): delivered, retried in memory, moved to the retry
//! topic, dead-lettered, or put back undecided; and how an in-flight head's
//! outcome is recorded on its tracked copy.

use std::sync::Arc;

use herald_core::schedule::{Failure, Step};
use herald_telemetry::names;

use super::{Ctx, Known, Partition};
use crate::attempt::{Event, Outcome};
use crate::lane::CopyFate;
use crate::sink::{DeadReason, Target};
use herald_proto::v1::AttemptState;

impl Partition {
    /// Records the original's outcome on its head copy; `true` if `event` is
    /// the original of a tracked copy (the copy then carries it forward).
    fn settle_original(
        &mut self,
        endpoint: &Arc<str>,
        event: &Event,
        fate: CopyFate,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let Some(lane) = self.lanes.get_mut(endpoint) else {
            return false;
        };
        // A tracked copy leaves `copies` before it is attempted, so a
        // pending entry for this origin means this is the original.
        let is_original = lane
            .copies
            .get(&event.origin)
            .is_some_and(|c| c.fate == CopyFate::Pending)
            && lane.head.iter().any(|(o, _)| *o == event.origin);
        if !is_original {
            return false;
        }
        let copy = lane.copies.get_mut(&event.origin).expect("copy exists");
        let delivered = fate == CopyFate::Settled;
        copy.fate = fate;
        let finish_now = delivered || copy.landed_at.is_some();
        if !finish_now {
            copy.finish_on_landing = Some(event.source);
        }
        if let (true, Some(at)) = (delivered, copy.landed_at) {
            // Nobody may send the copy now, even a next owner that reads
            // it before this node does (it lands finished in the metadata).
            ctx.trackers.retry.finished_ahead(at);
        }
        lane.in_flight -= 1;
        if finish_now {
            self.finish(event.source, ctx);
        }
        true
    }

    /// An attempt ended: `event` and, for a batch, the rest of its events
    /// in order. A batch shares one outcome: delivered together, retried
    /// together (one decision, from its first event), dead-lettered
    /// together.
    pub(super) fn on_attempt(
        &mut self,
        endpoint: Arc<str>,
        event: Event,
        batch: Vec<Event>,
        outcome: Outcome,
        ctx: &mut Ctx<'_>,
    ) {
        if outcome == Outcome::Aborted || (self.draining && outcome != Outcome::Delivered) {
            // Nothing is retried or moved during a drain. A copied head's
            // copy carries it already, though: its original finishes (now,
            // or when the copy lands), so the next owner gets it once.
            for e in std::iter::once(&event).chain(&batch) {
                let fate = CopyFate::Retry(attempt_state(e));
                self.settle_original(&endpoint, e, fate, ctx);
            }
            return;
        }
        let members: Vec<Event> = std::iter::once(event).chain(batch).collect();
        if outcome == Outcome::Stale {
            // The endpoint changed while the attempt waited: decide again
            // (or, for a copied head, let the copy carry it).
            return self.requeue(&endpoint, members, ctx);
        }
        self.breaker_record(&endpoint, outcome == Outcome::Delivered, ctx.now_ms);
        if outcome == Outcome::Delivered {
            self.failing_since.remove(&endpoint);
            return self.settle_all(&endpoint, members, ctx);
        }
        let Outcome::Failed {
            verdict,
            retry_after,
        } = outcome
        else {
            return;
        };
        self.note_failure(&endpoint, &members[0], ctx);
        let prepared = match self.known(&endpoint, ctx) {
            Known::Ready(p) => p,
            Known::Deleted => {
                metrics::counter!(names::EVENTS_SKIPPED, "reason" => "endpoint_deleted")
                    .increment(members.len() as u64);
                return self.settle_all(&endpoint, members, ctx);
            }
            // Back to the front: `pump` waits for the registry (or, for a
            // copied head, the copy carries it).
            Known::Unknown => return self.requeue(&endpoint, members, ctx),
        };
        let now = ctx.now_ms;
        let first = &members[0];
        let failure = Failure {
            verdict,
            attempts: first.attempts(),
            created_ms: crate::lane::age_base_ms(&first.envelope),
            now_ms: now,
            retry_after,
        };
        let ordered = prepared.endpoint.ordered;
        let unit = self.unit();
        match prepared.policy.after_failure(failure, unit) {
            Step::GiveUp(why) => {
                // Everything of this endpoint read so far follows it, even
                // if a copy reaches the front later.
                let bound = self
                    .lanes
                    .get(&endpoint)
                    .map_or(self.events_seen_until, |l| {
                        self.events_seen_until.max(l.max_origin + 1)
                    });
                let reason = DeadReason::Exhausted(why);
                // A copied event is dead-lettered when its copy reaches the
                // front.
                let dead = self.uncarried(
                    &endpoint,
                    members,
                    |e| CopyFate::GaveUp(reason, attempt_state(e), bound),
                    ctx,
                );
                if !dead.is_empty() && ordered {
                    self.lane(&endpoint).flush_below = Some(bound);
                }
                for e in dead {
                    self.dead_letter(&endpoint, e, reason);
                }
                self.after_settle(&endpoint, ctx);
            }
            Step::RetryIn(delay) => {
                let next = now + delay.as_millis() as i64;
                let mut members = members;
                for e in &mut members {
                    let state = e.envelope.attempt.get_or_insert_with(Default::default);
                    state.next_attempt_ms = next;
                }
                // A copied event's copy in the retry topic carries it.
                let left = self.uncarried(
                    &endpoint,
                    members,
                    |e| CopyFate::Retry(attempt_state(e)),
                    ctx,
                );
                if left.is_empty() {
                    return self.after_settle(&endpoint, ctx);
                }
                let long = delay.as_millis() as i64 > self.cfg.in_memory_max_ms;
                let lane = self.lane(&endpoint);
                lane.in_flight -= left.len();
                if ordered && long && !lane.durable {
                    self.move_to_retry(&endpoint, left);
                } else if !ordered && long {
                    for e in left {
                        self.write(endpoint.clone(), e, Target::Retry, false);
                    }
                } else {
                    // Back to the front of its lane: `pump` starts it again
                    // (at its due time) only if the endpoint is still
                    // enabled and its circuit lets it through.
                    for e in left.into_iter().rev() {
                        lane.queue.push_front(e);
                    }
                }
                self.after_settle(&endpoint, ctx);
            }
        }
    }

    /// Delivered (or the endpoint was deleted): each event is finished, or
    /// its copy is told to finish unsent.
    fn settle_all(&mut self, endpoint: &Arc<str>, members: Vec<Event>, ctx: &mut Ctx<'_>) {
        let left = self.uncarried(endpoint, members, |_| CopyFate::Settled, ctx);
        self.lane(endpoint).in_flight -= left.len();
        for e in left {
            self.finish(e.source, ctx);
        }
        self.after_settle(endpoint, ctx);
    }

    /// Not decided: the events go back to the front of the lane in order
    /// (a copied event's copy carries it forward instead).
    fn requeue(&mut self, endpoint: &Arc<str>, members: Vec<Event>, ctx: &mut Ctx<'_>) {
        let left = self.uncarried(
            endpoint,
            members,
            |e| CopyFate::Retry(attempt_state(e)),
            ctx,
        );
        let lane = self.lane(endpoint);
        lane.in_flight -= left.len();
        for e in left.into_iter().rev() {
            lane.queue.push_front(e);
        }
        self.after_settle(endpoint, ctx);
    }

    /// Records each event's fate on its tracked
    /// copy, where it has one (the copy then carries it forward), and takes
    /// it out of the in-flight head; returns the events no copy carries, in
    /// order.
    fn uncarried(
        &mut self,
        endpoint: &Arc<str>,
        members: Vec<Event>,
        fate: impl Fn(&Event) -> CopyFate,
        ctx: &mut Ctx<'_>,
    ) -> Vec<Event> {
        let mut left = Vec::with_capacity(members.len());
        for e in members {
            let carried = self.settle_original(endpoint, &e, fate(&e), ctx);
            self.clear_head(endpoint, e.origin);
            if !carried {
                left.push(e);
            }
        }
        left
    }

    fn clear_head(&mut self, endpoint: &Arc<str>, origin: i64) {
        if let Some(l) = self.lanes.get_mut(endpoint) {
            l.head.retain(|(o, _)| *o != origin);
        }
    }
}

/// An event's attempt state as its copy should carry it.
fn attempt_state(e: &Event) -> AttemptState {
    e.envelope.attempt.clone().unwrap_or_default()
}
