//! One endpoint's lane within a partition: its events in order, what is in
//! flight, and where the rest of its backlog is.
//!
//! A lane is *live* while all of its pending events are in memory, and
//! *durable* once its backlog lives in the retry topic (after a long retry
//! or an overflow): then new events of the endpoint are appended to the
//! retry topic behind the backlog instead of being held, so order holds and
//! memory stays bounded. A lane is *behind* when it had no room for some of
//! its retry-topic records: they stay in Kafka, and the lane scans them
//! from `behind` when it has room again. An ordered lane that overflows
//! while its head is in flight writes a [`HeadCopy`] first and tracks it
//! explicitly until the copy is read back.

use std::collections::{HashMap, VecDeque};

use herald_proto::v1::{AttemptState, EventEnvelope};

use crate::attempt::{Event, Source};
use crate::sink::DeadReason;

/// A copy of an ordered lane's in-flight head, written to the retry topic
/// ahead of its followers when the lane overflowed. Once it exists, the copy
/// alone carries the event forward: the original's outcome is recorded here
/// and applied to the copy when the copy reaches the front of the lane, and
/// the original's offset is finished only after the copy has landed.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadCopy {
    /// Retry-topic offset of the copy, once its write has landed.
    pub landed_at: Option<i64>,
    /// The original's offset, finished when the copy lands.
    pub finish_on_landing: Option<Source>,
    /// What became of the original attempt.
    pub fate: CopyFate,
}

/// The outcome of a copied head's original attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum CopyFate {
    /// The original attempt is still running.
    Pending,
    /// Delivered (or its endpoint deleted): the copy is finished unsent.
    Settled,
    /// Failed and will be retried: the copy carries this attempt state.
    Retry(AttemptState),
    /// Gave up: the copy is dead-lettered with this reason and state, and
    /// the endpoint's events with an origin below the bound (those read when
    /// the original gave up) follow it.
    GaveUp(DeadReason, AttemptState, i64),
}

/// The state of one endpoint's lane.
#[derive(Debug)]
pub struct Lane {
    /// Events not started yet, in origin order.
    pub queue: VecDeque<Event>,
    /// Events started and not settled (attempting, waiting for a retry, or
    /// being written to the dead-letter topic).
    pub in_flight: usize,
    /// Of `in_flight`, attempts that began with a wait (unordered lanes do
    /// not count them against `max_in_flight`).
    pub waiting: usize,
    /// Of `in_flight`, attempts waiting longer than `retry.in_memory_max`:
    /// while any, the lane takes only what it holds (window of one).
    pub waiting_long: usize,
    /// Events being written to the retry topic.
    pub appends: usize,
    /// The newest retry-topic offset this lane appended (acknowledged).
    pub last_append: Option<i64>,
    /// The backlog lives in the retry topic: append new events there.
    pub durable: bool,
    /// First retry-topic offset of this lane's records not taken into memory.
    pub behind: Option<i64>,
    /// First live retry record of this lane ignored while a scan ran.
    pub ignored_from: Option<i64>,
    /// A scan for this lane is queued or running.
    pub scanning: bool,
    /// Highest origin offset seen for this endpoint.
    pub max_origin: i64,
    /// Ordered lanes after a dead letter: events with a lower origin follow
    /// their predecessor to the dead-letter topic.
    pub flush_below: Option<i64>,
    /// The in-flight head of an ordered lane (origin and envelope as sent;
    /// every event of a batch, in order), so a move can write copies of it
    /// ahead of its followers.
    pub head: Vec<(i64, EventEnvelope)>,
    /// A batch waiting to fill: the origin of its first event and until when.
    pub linger: Option<(i64, i64)>,
    /// Head copies written while their original was in flight, by origin.
    pub copies: HashMap<i64, HeadCopy>,
    /// The endpoint takes no requests for now (disabled, or its circuit is
    /// open): the lane holds one event, the rest waits in the retry topic.
    pub held_back: bool,
}

/// Whether `e` may go in one request with `front`: the same attempt state
/// (fresh events, or events that failed together and retry together), so a
/// batch keeps its members across its retries.
pub fn joins(front: &Event, e: &Event) -> bool {
    e.attempts() == front.attempts() && e.due_ms() == front.due_ms()
}

/// When an event's age starts: its publish, or its due time if it was
/// scheduled (a month-long schedule does not count against `max_age`, and
/// latency is measured from when it was due).
pub fn age_base_ms(envelope: &EventEnvelope) -> i64 {
    envelope.created_at_ms.max(envelope.deliver_at_ms)
}

impl Default for Lane {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            in_flight: 0,
            waiting: 0,
            waiting_long: 0,
            appends: 0,
            last_append: None,
            durable: false,
            behind: None,
            ignored_from: None,
            scanning: false,
            max_origin: -1,
            flush_below: None,
            head: Vec::new(),
            linger: None,
            copies: HashMap::new(),
            held_back: false,
        }
    }
}

impl Lane {
    /// `event` leaves the lane without passing the front as a copy (dropped,
    /// dead-lettered as a follower, expired): forget its copy record, and
    /// say which original offset can be finished now that nothing carries
    /// the copy forward.
    pub fn forget_copy(&mut self, event: &Event) -> Option<Source> {
        let Source::Retry(offset) = event.source else {
            return None;
        };
        match self.copies.get(&event.origin) {
            Some(c) if c.landed_at == Some(offset) => self
                .copies
                .remove(&event.origin)
                .and_then(|c| c.finish_on_landing),
            _ => None,
        }
    }

    /// A new, empty, live lane.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events this lane holds in memory (queued, in flight, being appended).
    pub fn held(&self) -> usize {
        self.queue.len() + self.in_flight + self.appends
    }

    /// How many events this lane may hold: one while its head waits out a
    /// long retry or the endpoint takes no requests (the backlog stays in
    /// Kafka), else `max_lane`.
    pub fn window(&self, max_lane: usize) -> usize {
        if self.waiting_long > 0 || self.held_back {
            1
        } else {
            max_lane
        }
    }

    /// Whether another event may start, given the endpoint's limit.
    pub fn can_start(&self, limit: usize, ordered: bool) -> bool {
        let busy = if ordered {
            self.in_flight
        } else {
            self.in_flight - self.waiting
        };
        busy < limit && !self.queue.is_empty()
    }

    /// Nothing held and nothing left in the retry topic for this lane, as
    /// far as a reader at `retry_seen_until` can tell: the lane can go.
    pub fn is_done(&self, retry_seen_until: i64) -> bool {
        let read_back = self.last_append.is_none_or(|a| a < retry_seen_until);
        self.held() == 0
            && self.behind.is_none()
            && !self.scanning
            && read_back
            && self.copies.is_empty()
    }

    /// Whether `event` is a head copy this lane tracks (it must pass the
    /// front on its own, so it never joins a batch).
    fn is_tracked_copy(&self, event: &Event) -> bool {
        matches!(event.source, Source::Retry(_)) && self.copies.contains_key(&event.origin)
    }

    /// How many queued events, from the front, could go in one request with
    /// the front: at most `max`, with the front's attempt state, no tracked
    /// copy among them, payloads within `max_bytes` (the front always goes).
    pub fn batchable(&self, max: usize, max_bytes: usize) -> usize {
        let Some(front) = self.queue.front() else {
            return 0;
        };
        let mut bytes = front.envelope.payload.len();
        let mut n = 1;
        for e in self.queue.iter().skip(1) {
            bytes += e.envelope.payload.len();
            if n >= max || !joins(front, e) || self.is_tracked_copy(e) || bytes > max_bytes {
                break;
            }
            n += 1;
        }
        n
    }

    /// Until when the front waits for its batch to fill (None: go now). A
    /// batch goes when full, when its first event was published `linger`
    /// ago, or at once for a retry; the wait is counted on this node's
    /// clock from the first time it is asked, at most `linger`, so a skewed
    /// publisher clock never holds it longer.
    pub fn linger_until(
        &mut self,
        max: usize,
        linger_ms: i64,
        max_bytes: usize,
        now_ms: i64,
    ) -> Option<i64> {
        let front = self.queue.front()?;
        if linger_ms <= 0 || front.attempts() > 0 || self.batchable(max, max_bytes) >= max {
            self.linger = None;
            return None;
        }
        let until = match self.linger {
            Some((origin, until)) if origin == front.origin => until,
            _ => {
                let published = age_base_ms(&front.envelope);
                let until = published
                    .saturating_add(linger_ms)
                    .clamp(now_ms, now_ms + linger_ms);
                self.linger = Some((front.origin, until));
                until
            }
        };
        if now_ms < until {
            Some(until)
        } else {
            self.linger = None;
            None
        }
    }

    /// Records that an event with this origin was seen.
    pub fn saw(&mut self, origin: i64) {
        self.max_origin = self.max_origin.max(origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(o: i64) -> Event {
        Event {
            source: Source::Events(o),
            origin: o,
            envelope: EventEnvelope::default(),
        }
    }

    #[test]
    fn ordered_lane_starts_one_at_a_time() {
        let mut l = Lane::new();
        l.queue.push_back(ev(1));
        l.queue.push_back(ev(2));
        assert!(l.can_start(1, true));
        l.queue.pop_front();
        l.in_flight = 1;
        assert!(!l.can_start(1, true));
        l.waiting = 1;
        assert!(
            !l.can_start(1, true),
            "a waiting head still blocks an ordered lane"
        );
        assert!(
            l.can_start(1, false),
            "an unordered lane does not count waiting retries"
        );
    }

    #[test]
    fn window_shrinks_while_the_head_waits_long() {
        let mut l = Lane::new();
        assert_eq!(l.window(100), 100);
        l.waiting_long = 1;
        assert_eq!(l.window(100), 1);
        l.waiting_long = 0;
        l.held_back = true;
        assert_eq!(
            l.window(100),
            1,
            "a disabled or open-circuit lane holds one"
        );
    }

    fn fresh(o: i64, created: i64) -> Event {
        let mut e = ev(o);
        e.envelope.created_at_ms = created;
        e.envelope.payload = vec![b'x'; 10].into();
        e
    }

    #[test]
    fn a_batch_takes_events_with_the_fronts_attempt_state_within_bounds() {
        let mut l = Lane::new();
        for o in 0..5 {
            l.queue.push_back(fresh(o, 0));
        }
        assert_eq!(l.batchable(3, 1 << 20), 3, "at most max");
        assert_eq!(l.batchable(10, 1 << 20), 5);
        assert_eq!(l.batchable(10, 25), 2, "payload bytes bound it");
        assert_eq!(l.batchable(10, 5), 1, "the front always goes");
        l.queue[2].envelope.attempt = Some(AttemptState {
            attempts: 1,
            ..Default::default()
        });
        assert_eq!(
            l.batchable(10, 1 << 20),
            2,
            "a retried event starts its own batch"
        );
        l.queue[1].source = Source::Retry(7);
        l.copies.insert(
            1,
            HeadCopy {
                landed_at: Some(7),
                finish_on_landing: None,
                fate: CopyFate::Pending,
            },
        );
        assert_eq!(
            l.batchable(10, 1 << 20),
            1,
            "a tracked copy goes on its own"
        );
    }

    #[test]
    fn a_batch_lingers_from_its_publish_at_most_linger_on_this_clock() {
        let mut l = Lane::new();
        l.queue.push_back(fresh(0, 1_000));
        l.queue.push_back(fresh(1, 1_000));
        assert_eq!(l.linger_until(3, 50, 1 << 20, 1_010), Some(1_050));
        assert_eq!(
            l.linger_until(3, 50, 1 << 20, 1_049),
            Some(1_050),
            "kept, not moved"
        );
        assert_eq!(l.linger_until(3, 50, 1 << 20, 1_050), None, "then it goes");
        l.queue.push_back(fresh(2, 1_000));
        assert_eq!(l.linger_until(3, 50, 1 << 20, 1_000), None, "full: at once");
        let mut skewed = Lane::new();
        skewed.queue.push_back(fresh(0, 900_000));
        assert_eq!(
            skewed.linger_until(3, 50, 1 << 20, 1_000),
            Some(1_050),
            "a publisher clock ahead never holds it past linger"
        );
        let mut retried = Lane::new();
        retried.queue.push_back(fresh(0, 1_000));
        retried.queue[0].envelope.attempt = Some(AttemptState {
            attempts: 1,
            ..Default::default()
        });
        assert_eq!(
            retried.linger_until(3, 50, 1 << 20, 1_010),
            None,
            "a retry goes at once"
        );
    }

    #[test]
    fn done_only_when_read_back() {
        let mut l = Lane::new();
        assert!(l.is_done(0));
        l.last_append = Some(10);
        assert!(!l.is_done(10));
        assert!(l.is_done(11));
        l.behind = Some(3);
        assert!(!l.is_done(11));
        l.behind = None;
        l.scanning = true;
        assert!(!l.is_done(11));
    }
}
