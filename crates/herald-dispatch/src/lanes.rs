//! Per-endpoint FIFO lanes of one partition, and which events may start.
//!
//! Pure bookkeeping: a lane is the queue of an endpoint's events not yet
//! started, plus how many are in flight. An event stays "in flight" through
//! all of its retries, so an ordered lane (limit 1) never starts event n+1
//! before event n is settled. Lanes with nothing queued or in flight are
//! dropped, so memory follows the live endpoints, not all endpoints ever seen.

use std::collections::{HashMap, VecDeque};

/// All lanes of one partition, holding items of type `T`.
#[derive(Debug)]
pub struct Lanes<T> {
    lanes: HashMap<String, Lane<T>>,
    /// Items queued or in flight, across lanes.
    buffered: usize,
}

#[derive(Debug)]
struct Lane<T> {
    queue: VecDeque<T>,
    in_flight: usize,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Self { lanes: HashMap::new(), buffered: 0 }
    }
}

impl<T> Lanes<T> {
    /// No lanes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `item` to `endpoint`'s lane.
    pub fn push(&mut self, endpoint: &str, item: T) {
        match self.lanes.get_mut(endpoint) {
            Some(lane) => lane.queue.push_back(item),
            None => {
                let mut queue = VecDeque::with_capacity(4);
                queue.push_back(item);
                self.lanes.insert(endpoint.to_string(), Lane { queue, in_flight: 0 });
            }
        }
        self.buffered += 1;
    }

    /// Takes the next item of `endpoint`'s lane if fewer than `limit` are in
    /// flight, and counts it as in flight.
    pub fn next_ready(&mut self, endpoint: &str, limit: usize) -> Option<T> {
        let lane = self.lanes.get_mut(endpoint)?;
        if lane.in_flight >= limit {
            return None;
        }
        let item = lane.queue.pop_front()?;
        lane.in_flight += 1;
        Some(item)
    }

    /// One of `endpoint`'s in-flight items is settled.
    pub fn settled(&mut self, endpoint: &str) {
        if let Some(lane) = self.lanes.get_mut(endpoint) {
            lane.in_flight = lane.in_flight.saturating_sub(1);
            self.buffered = self.buffered.saturating_sub(1);
            if lane.in_flight == 0 && lane.queue.is_empty() {
                self.lanes.remove(endpoint);
            }
        }
    }

    /// Items queued or in flight, across lanes.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Lanes with something queued or in flight.
    pub fn open(&self) -> usize {
        self.lanes.len()
    }

    /// In-flight count of `endpoint`'s lane.
    pub fn in_flight(&self, endpoint: &str) -> usize {
        self.lanes.get(endpoint).map_or(0, |l| l.in_flight)
    }

    /// Endpoints whose lanes have queued items.
    pub fn with_queued(&self) -> impl Iterator<Item = &str> {
        self.lanes.iter().filter(|(_, l)| !l.queue.is_empty()).map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordered_lane_starts_one_at_a_time() {
        let mut l = Lanes::new();
        for i in 0..3 {
            l.push("a", i);
        }
        l.push("b", 10);
        assert_eq!(l.next_ready("a", 1), Some(0));
        assert_eq!(l.next_ready("a", 1), None);
        assert_eq!(l.next_ready("b", 1), Some(10));
        l.settled("a");
        assert_eq!(l.next_ready("a", 1), Some(1));
        assert_eq!(l.buffered(), 3);
        l.settled("b");
        assert_eq!(l.open(), 1);
    }

    #[test]
    fn unordered_lane_respects_limit() {
        let mut l = Lanes::new();
        for i in 0..5 {
            l.push("a", i);
        }
        let started: Vec<_> = std::iter::from_fn(|| l.next_ready("a", 3)).collect();
        assert_eq!(started, vec![0, 1, 2]);
        assert_eq!(l.in_flight("a"), 3);
    }

    proptest! {
        /// Whatever the interleaving, an ordered lane starts items in push
        /// order, never more than one at a time, and every item starts once.
        #[test]
        fn ordered_lanes_keep_order(ops in proptest::collection::vec((0u8..3, 0u8..3), 1..200)) {
            let mut l = Lanes::new();
            let mut next_id = [0u32; 3];
            let mut started: [Vec<u32>; 3] = Default::default();
            let mut in_flight = [false; 3];
            let names = ["a", "b", "c"];
            for (op, lane) in ops {
                let i = lane as usize;
                match op {
                    0 => { l.push(names[i], next_id[i]); next_id[i] += 1; }
                    1 => if let Some(x) = l.next_ready(names[i], 1) {
                        prop_assert!(!in_flight[i]);
                        in_flight[i] = true;
                        started[i].push(x);
                    },
                    _ => if in_flight[i] { l.settled(names[i]); in_flight[i] = false; },
                }
            }
            for s in &started {
                prop_assert!(s.windows(2).all(|w| w[1] == w[0] + 1));
                prop_assert!(s.first().is_none_or(|&f| f == 0));
            }
        }
    }
}
