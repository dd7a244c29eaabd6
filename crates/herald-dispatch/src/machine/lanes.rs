//! Lanes at work: which queued event (or batch) starts next (order,
//! in-flight limit, enabled, age, circuit, linger), moves of a lane's
//! backlog, dead letters, and the explicit custody of head copies. What an
//! attempt's outcome means is in [`super::outcomes`].

use std::sync::Arc;

use herald_core::breaker::{Breaker, Permit};
use herald_core::schedule::Exhaustion;
use herald_telemetry::names;

use super::{Action, CatchUp, Ctx, Known, Partition, Wait};
use crate::attempt::{Event, Source};
use crate::endpoint::Prepared;
use crate::lane::{CopyFate, HeadCopy};
use crate::sink::{DeadReason, Target};

/// What to do with the event at the front of an ordered lane that is the
/// copy of an earlier in-flight head.
enum CopyAtFront {
    /// Not a copy this lane tracks: handle it like any event.
    No,
    /// The copy's write or its original are not done yet: wait.
    Wait,
    /// The original was delivered: finish the copy unsent.
    Settle,
    /// The original gave up: dead-letter the copy; events below the bound
    /// (read when the original gave up) follow it.
    DeadLetter(DeadReason, i64),
    /// Carry on with the original's attempt state (already applied).
    Go,
}

/// Most payload bytes one batched request carries (its first event always
/// goes, however large).
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// Events per batch: the endpoint's setting, at most half a lane's window so
/// a batch in flight never makes its lane overflow by itself.
fn batch_cap(max_events: u32, max_lane: usize) -> usize {
    (max_events as usize).min(max_lane / 2).max(1)
}

impl Partition {
    /// Starts as many of `endpoint`'s queued events as its lane allows.
    pub(super) fn pump(&mut self, endpoint: &Arc<str>, ctx: &mut Ctx<'_>) {
        // While the retry backlog is caught up nothing starts: a dead letter
        // decided now could not see the endpoint's records not read yet.
        if self.suspended || self.draining || self.catch_up != CatchUp::None {
            return;
        }
        let prepared = match self.known(endpoint, ctx) {
            Known::Ready(p) => p,
            Known::Deleted => return self.drop_deleted(endpoint, ctx),
            Known::Unknown if self.unknown.contains(endpoint) => {
                return self.dead_letter_unknown(endpoint, ctx)
            }
            // Registry lag, never deletion: wait until it caught up.
            Known::Unknown => return self.sync_registry(endpoint),
        };
        let ordered = prepared.endpoint.ordered;
        let enabled = prepared.endpoint.enabled;
        let limit = prepared
            .endpoint
            .effective_in_flight(self.cfg.default_in_flight);
        let now = ctx.now_ms;
        loop {
            let Some(lane) = self.lanes.get_mut(endpoint) else {
                return;
            };
            let Some(front) = lane.queue.front() else {
                return;
            };
            // Events behind a dead-lettered one follow it, in order (the
            // write FIFO keeps the order), even when the endpoint is disabled.
            match lane.flush_below {
                Some(f) if ordered && front.origin < f => {
                    let event = lane.queue.pop_front().expect("front exists");
                    lane.in_flight += 1;
                    let original = lane.forget_copy(&event);
                    if let Some(source) = original {
                        self.finish(source, ctx);
                    }
                    self.dead_letter(endpoint, event, DeadReason::Predecessor);
                    continue;
                }
                Some(_) if lane.in_flight == 0 => lane.flush_below = None,
                _ => {}
            }
            match self.copy_at_front(endpoint) {
                CopyAtFront::No | CopyAtFront::Go => {}
                CopyAtFront::Wait => return,
                CopyAtFront::Settle => {
                    let lane = self.lanes.get_mut(endpoint).expect("lane exists");
                    let event = lane.queue.pop_front().expect("front exists");
                    self.finish(event.source, ctx);
                    continue;
                }
                CopyAtFront::DeadLetter(reason, bound) => {
                    let lane = self.lanes.get_mut(endpoint).expect("lane exists");
                    let event = lane.queue.pop_front().expect("front exists");
                    lane.in_flight += 1;
                    if ordered {
                        lane.flush_below = Some(bound);
                    }
                    self.dead_letter(endpoint, event, reason);
                    continue;
                }
            }
            let lane = self.lanes.get_mut(endpoint).expect("lane exists");
            if !enabled {
                // Parked: its front still ages into the dead-letter topic
                // (checked again when it would expire), and the rest of its
                // backlog waits in the retry topic, not in memory.
                let front = lane.queue.front().expect("front exists");
                let created = crate::lane::age_base_ms(&front.envelope);
                if (lane.in_flight == 0 || !ordered) && prepared.policy.expired(created, now) {
                    self.dead_letter_expired_front(endpoint, ordered, ctx);
                    continue;
                }
                self.parked.insert(endpoint.clone());
                self.hold_back(endpoint, ctx);
                let expires = created.saturating_add(prepared.policy.max_age.as_millis() as i64);
                return self.wake_at(endpoint, expires.saturating_add(1));
            }
            self.parked.remove(endpoint);
            if !lane.can_start(limit, ordered) {
                return;
            }
            if !ordered {
                // Order does not bind an unordered lane: an event that is
                // due goes before one still waiting out its retry delay.
                if let Some(i) = lane.queue.iter().position(|e| e.due_ms() <= now) {
                    if i > 0 {
                        let due = lane.queue.remove(i).expect("index exists");
                        lane.queue.push_front(due);
                    }
                }
            }
            let front = lane.queue.front().expect("front exists");
            let front_due = front.due_ms();
            if prepared
                .policy
                .expired(crate::lane::age_base_ms(&front.envelope), now)
            {
                self.dead_letter_expired_front(endpoint, ordered, ctx);
                continue;
            }
            if let Some(b) = prepared.endpoint.batch {
                let lane = self.lanes.get_mut(endpoint).expect("lane exists");
                let linger = b.linger.as_millis() as i64;
                if let Some(until) = lane.linger_until(
                    batch_cap(b.max_events, self.cfg.max_lane),
                    linger,
                    MAX_BATCH_BYTES,
                    now,
                ) {
                    return self.wake_at(endpoint, until);
                }
            }
            let breaker = self
                .breakers
                .entry(endpoint.clone())
                .or_insert_with(|| Breaker::new(self.cfg.breaker));
            if breaker.is_open() && front_due > now {
                // The probe of an open circuit is an event that is due: a
                // probe waiting hours for its retry would hold the circuit
                // half-open that long.
                self.hold_back(endpoint, ctx);
                return self.wake_at(endpoint, front_due);
            }
            match breaker.permit(now) {
                Permit::Go => {}
                Permit::WaitUntil(t) => {
                    self.hold_back(endpoint, ctx);
                    return self.wake_at(endpoint, t);
                }
                Permit::WaitForProbe => return self.hold_back(endpoint, ctx),
            }
            let lane = self.lanes.get_mut(endpoint).expect("lane exists");
            lane.held_back = false;
            let delay = (front_due - now).max(0) as u64;
            // A batch waiting out a long retry would hold more than the
            // lane's window of one: it goes one event at a time.
            let members = match prepared.endpoint.batch {
                Some(b) if delay as i64 <= self.cfg.in_memory_max_ms => {
                    lane.batchable(batch_cap(b.max_events, self.cfg.max_lane), MAX_BATCH_BYTES)
                }
                _ => 1,
            };
            lane.linger = None;
            let event = lane.queue.pop_front().expect("front exists");
            let batch: Vec<Event> = lane.queue.drain(..members - 1).collect();
            lane.in_flight += members;
            if ordered {
                lane.head = std::iter::once(&event)
                    .chain(&batch)
                    .map(|e| (e.origin, e.envelope.clone()))
                    .collect();
            }
            self.launch(endpoint.clone(), prepared.clone(), event, batch, delay);
        }
    }

    /// The lane's front event is past its maximum age: dead-letter it; for
    /// an ordered endpoint everything read so far follows it.
    fn dead_letter_expired_front(&mut self, endpoint: &Arc<str>, ordered: bool, ctx: &mut Ctx<'_>) {
        let events_seen_until = self.events_seen_until;
        let lane = self.lanes.get_mut(endpoint).expect("lane exists");
        let event = lane.queue.pop_front().expect("front exists");
        lane.in_flight += 1;
        if ordered {
            lane.flush_below = Some(events_seen_until.max(lane.max_origin + 1));
        }
        if let Some(source) = lane.forget_copy(&event) {
            self.finish(source, ctx);
        }
        self.dead_letter(endpoint, event, DeadReason::Exhausted(Exhaustion::Age));
    }

    /// Applies a tracked head copy's fate to the lane's front event, if it
    /// is that copy.
    fn copy_at_front(&mut self, endpoint: &Arc<str>) -> CopyAtFront {
        let Some(lane) = self.lanes.get_mut(endpoint) else {
            return CopyAtFront::No;
        };
        let Some(front) = lane.queue.front_mut() else {
            return CopyAtFront::No;
        };
        let Source::Retry(offset) = front.source else {
            return CopyAtFront::No;
        };
        let Some(copy) = lane.copies.get(&front.origin) else {
            return CopyAtFront::No;
        };
        match copy.landed_at {
            // Read back before its delivery report: wait for the report.
            None => return CopyAtFront::Wait,
            Some(at) if at != offset => return CopyAtFront::No,
            Some(_) => {}
        }
        let verdict = match &copy.fate {
            CopyFate::Pending => return CopyAtFront::Wait,
            CopyFate::Settled => CopyAtFront::Settle,
            CopyFate::Retry(state) => {
                front.envelope.attempt = Some(state.clone());
                CopyAtFront::Go
            }
            CopyFate::GaveUp(reason, state, bound) => {
                front.envelope.attempt = Some(state.clone());
                CopyAtFront::DeadLetter(*reason, *bound)
            }
        };
        lane.copies.remove(&front.origin);
        verdict
    }

    /// The endpoint takes no requests for now (disabled, open circuit): the
    /// lane keeps one event in memory. Events it read from the events topic
    /// move to the retry topic (a copy of an in-flight head first); events it
    /// read back from the retry topic go back to Kafka unfinished, and a scan
    /// reads them again when the lane has room.
    fn hold_back(&mut self, endpoint: &Arc<str>, ctx: &mut Ctx<'_>) {
        let Some(lane) = self.lanes.get_mut(endpoint) else {
            return;
        };
        lane.held_back = true;
        if lane.scanning || lane.held() <= 1 {
            return;
        }
        if !lane.durable && !lane.queue.is_empty() {
            self.overflow(endpoint, ctx);
        }
        let ordered = self.ordered(endpoint, ctx);
        let lane = self.lanes.get_mut(endpoint).expect("lane exists");
        let mut kept = std::collections::VecDeque::new();
        let mut shed = Vec::new();
        let mut moved = Vec::new();
        for event in lane.queue.drain(..) {
            match event.source {
                _ if kept.is_empty() => kept.push_back(event),
                Source::Retry(offset) => shed.push(offset),
                // An unordered lane's short retries: order does not matter.
                Source::Events(_) if !ordered => moved.push(event),
                Source::Events(_) => kept.push_back(event),
            }
        }
        lane.queue = kept;
        for event in moved {
            self.write(endpoint.clone(), event, Target::Retry, false);
        }
        let lane = self.lanes.get_mut(endpoint).expect("lane exists");
        if let Some(&first) = shed.iter().min() {
            lane.behind = Some(lane.behind.map_or(first, |b| b.min(first)));
            self.behind.insert(endpoint.clone());
        }
        for offset in shed {
            self.retry_held.remove(&offset);
            self.custody(Source::Retry(offset), -1);
        }
    }

    /// Sends `Wake` for `endpoint` at `at_ms`, unless one is due no later.
    fn wake_at(&mut self, endpoint: &Arc<str>, at_ms: i64) {
        if self.wakes.get(endpoint).is_some_and(|&t| t <= at_ms) {
            return;
        }
        self.wakes.insert(endpoint.clone(), at_ms);
        self.actions.push(Action::WakeAt {
            endpoint: endpoint.clone(),
            at_ms,
        });
    }

    fn launch(
        &mut self,
        endpoint: Arc<str>,
        prepared: Arc<Prepared>,
        event: Event,
        batch: Vec<Event>,
        delay: u64,
    ) {
        let wait = if delay == 0 {
            Wait::None
        } else if delay as i64 > self.cfg.in_memory_max_ms {
            Wait::Long
        } else {
            Wait::Short
        };
        if let Some(l) = self.lanes.get_mut(&endpoint) {
            match wait {
                Wait::None => {}
                Wait::Short => l.waiting += 1,
                Wait::Long => {
                    l.waiting += 1;
                    l.waiting_long += 1;
                }
            }
        }
        self.actions.push(Action::Attempt {
            endpoint,
            prepared,
            event,
            batch,
            delay_ms: delay,
            wait,
        });
    }

    /// Writes `event` (counted in flight) to the dead-letter topic.
    pub(super) fn dead_letter(&mut self, endpoint: &Arc<str>, event: Event, reason: DeadReason) {
        tracing::warn!(event_id = %event.envelope.event_id, endpoint_id = %endpoint, reason = reason.as_str(),
            attempt = event.attempts(), "dead-lettering event");
        self.write(endpoint.clone(), event, Target::DeadLetter(reason), false);
    }

    /// Moves the lane's backlog (with `heads` first) to the retry topic;
    /// the lane turns durable.
    pub(super) fn move_to_retry(&mut self, endpoint: &Arc<str>, heads: Vec<Event>) {
        let partition = self.cfg.partition;
        let lane = self.lane(endpoint);
        lane.durable = true;
        let queued: Vec<Event> = lane.queue.drain(..).collect();
        tracing::info!(endpoint_id = %endpoint, partition, events = queued.len() + heads.len(),
            "moving endpoint backlog to the retry topic");
        for e in heads.into_iter().chain(queued) {
            self.write(endpoint.clone(), e, Target::Retry, false);
        }
    }

    /// The lane holds more than it may: its backlog moves to the retry topic.
    /// An ordered lane's in-flight head (each event of a batch) goes first,
    /// as tracked copies, so it is never split from its followers; the
    /// original attempt keeps running.
    pub(super) fn overflow(&mut self, endpoint: &Arc<str>, ctx: &mut Ctx<'_>) {
        let ordered = self.ordered(endpoint, ctx);
        let lane = self.lane(endpoint);
        if ordered && lane.in_flight > 0 {
            let mut copies = Vec::new();
            for (origin, envelope) in &lane.head {
                if let std::collections::hash_map::Entry::Vacant(slot) = lane.copies.entry(*origin)
                {
                    slot.insert(HeadCopy {
                        landed_at: None,
                        finish_on_landing: None,
                        fate: CopyFate::Pending,
                    });
                    copies.push(Event {
                        source: Source::Events(*origin),
                        origin: *origin,
                        envelope: envelope.clone(),
                    });
                }
            }
            for event in copies {
                self.write(endpoint.clone(), event, Target::Retry, true);
            }
        }
        self.move_to_retry(endpoint, Vec::new());
    }

    pub(super) fn drop_deleted(&mut self, endpoint: &Arc<str>, ctx: &mut Ctx<'_>) {
        let Some(lane) = self.lanes.get_mut(endpoint) else {
            return;
        };
        let queued: Vec<Event> = lane.queue.drain(..).collect();
        let originals: Vec<Source> = queued.iter().filter_map(|e| lane.forget_copy(e)).collect();
        for source in originals {
            self.finish(source, ctx);
        }
        for e in queued {
            tracing::warn!(event_id = %e.envelope.event_id, endpoint_id = %endpoint, "endpoint was deleted; event dropped");
            metrics::counter!(names::EVENTS_SKIPPED, "reason" => "endpoint_deleted").increment(1);
            self.finish(e.source, ctx);
        }
    }

    /// Dead-letters the queued events of an endpoint the registry does not
    /// know even after catching up, in order.
    fn dead_letter_unknown(&mut self, endpoint: &Arc<str>, ctx: &mut Ctx<'_>) {
        let Some(lane) = self.lanes.get_mut(endpoint) else {
            return;
        };
        let queued: Vec<Event> = lane.queue.drain(..).collect();
        lane.in_flight += queued.len();
        let originals: Vec<Source> = queued.iter().filter_map(|e| lane.forget_copy(e)).collect();
        for source in originals {
            self.finish(source, ctx);
        }
        for e in queued {
            self.dead_letter(endpoint, e, DeadReason::UnknownEndpoint);
        }
    }
}
