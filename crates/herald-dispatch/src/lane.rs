//! One endpoint's lane within a partition: its events in order, what is in
//! flight, and where the rest of its backlog is.
//!
//! A lane is *live* while all of its pending events are in memory, and
//! *durable* once its backlog lives in the retry topic (after a long retry
//! or an overflow): then new events of the endpoint are appended to the
//! retry topic behind the backlog instead of being held, so order holds and
//! memory stays bounded. A lane is *behind* when it had no room for some of
//! its retry-topic records; it re-reads them (from `behind`) when it has.

use std::collections::VecDeque;

use crate::attempt::Event;

/// The state of one endpoint's lane.
#[derive(Debug, Default)]
pub struct Lane {
    /// Events not started yet, in origin order.
    pub queue: VecDeque<Event>,
    /// Events started and not settled (attempting, waiting for a retry, or
    /// being written to the dead-letter topic).
    pub in_flight: usize,
    /// Of `in_flight`, events sleeping before a retry (unordered lanes do
    /// not count them against `max_in_flight`).
    pub waiting: usize,
    /// Events being appended to the retry topic.
    pub appends: usize,
    /// The newest retry-topic offset this lane appended (acknowledged).
    pub last_append: Option<i64>,
    /// The backlog lives in the retry topic: append new events there.
    pub durable: bool,
    /// First retry-topic offset of this lane's records not taken into memory.
    pub behind: Option<i64>,
    /// The lane filled up during the current replay.
    pub full_in_replay: bool,
    /// Highest origin offset seen for this endpoint (moved or read back).
    pub max_origin: i64,
    /// Ordered lanes after a dead letter: events with a lower origin follow
    /// their predecessor to the dead-letter topic.
    pub flush_below: Option<i64>,
    /// An overflow happened while the head was in flight: move the lane to
    /// the retry topic as soon as the head settles.
    pub move_pending: bool,
}

impl Lane {
    /// A new, empty, live lane.
    pub fn new() -> Self {
        Self {
            max_origin: -1,
            ..Default::default()
        }
    }

    /// Events this lane holds in memory (queued, in flight, being appended).
    pub fn held(&self) -> usize {
        self.queue.len() + self.in_flight + self.appends
    }

    /// Whether another event may start, given the endpoint's limit.
    pub fn can_start(&self, limit: usize, ordered: bool) -> bool {
        let busy = if ordered {
            self.in_flight
        } else {
            self.in_flight - self.waiting
        };
        !self.move_pending && busy < limit && !self.queue.is_empty()
    }

    /// Nothing held and nothing left in the retry topic for this lane, as
    /// far as a reader at `retry_seen_until` can tell: the lane can go.
    pub fn is_done(&self, retry_seen_until: Option<i64>) -> bool {
        let read_back = match (self.last_append, retry_seen_until) {
            (None, _) => true,
            (Some(a), Some(seen)) => a < seen,
            (Some(_), None) => false,
        };
        self.held() == 0 && self.behind.is_none() && read_back
    }

    /// Whether `origin` is a copy of an event this durable lane already has
    /// in the retry topic.
    pub fn is_duplicate(&self, origin: i64) -> bool {
        self.durable && origin <= self.max_origin
    }

    /// Records that an event with this origin was seen.
    pub fn saw(&mut self, origin: i64) {
        self.max_origin = self.max_origin.max(origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::Source;
    use herald_proto::v1::EventEnvelope;

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
        l.move_pending = true;
        assert!(!l.can_start(5, false));
    }

    #[test]
    fn done_only_when_read_back() {
        let mut l = Lane::new();
        assert!(l.is_done(None));
        l.last_append = Some(10);
        assert!(!l.is_done(None));
        assert!(!l.is_done(Some(10)));
        assert!(l.is_done(Some(11)));
        l.behind = Some(3);
        assert!(!l.is_done(Some(11)));
    }

    #[test]
    fn duplicates_only_in_durable_lanes() {
        let mut l = Lane::new();
        l.saw(5);
        assert!(!l.is_duplicate(3));
        l.durable = true;
        assert!(l.is_duplicate(5));
        assert!(!l.is_duplicate(6));
    }
}
