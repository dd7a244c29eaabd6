//! Helpers for scripted scenarios: publish to one endpoint, answer one
//! event's attempt, land or lose the producer's writes, crash with late
//! (zombie) writes.

use super::{Chooser, Mode, World};
use crate::machine::{CatchUp, Input, Partition};

impl<C: Chooser> World<C> {
    /// Disables an endpoint that has failed for longer than `ms` (the
    /// node's `endpoint_health.disable_after`; 0, the default here, never
    /// does). Call it before the first step: it builds the core again.
    pub fn with_disable_after(mut self, ms: i64) -> Self {
        self.cfg.disable_after_ms = ms;
        self.core = Partition::new(self.cfg.clone(), CatchUp::None);
        self
    }

    /// Publishes one event to endpoint `ep-<i>`; returns its id.
    pub fn publish_to(&mut self, i: usize) -> String {
        self.publish_named(format!("ep-{i}"))
    }

    /// Hands the core every record it may read now.
    pub fn feed_all(&mut self) {
        while self.feed(0) || self.feed(1) {}
    }

    /// Answers the attempt of event `id` with 200 (`ok`) or 503.
    pub fn answer_event(&mut self, id: &str, ok: bool) {
        self.answer_as(id, if ok { Mode::Healthy } else { Mode::Down });
    }

    /// Answers the attempt of event `id` with 410 Gone (final).
    pub fn answer_gone(&mut self, id: &str) {
        self.answer_as(id, Mode::Refusing);
    }

    /// Answers the attempt of event `id` as an endpoint in `mode` would.
    fn answer_as(&mut self, id: &str, mode: Mode) {
        let k = self
            .attempts
            .iter()
            .position(|a| a.event.envelope.event_id == id)
            .unwrap_or_else(|| panic!("no attempt of {id} in flight"));
        let name = self.published[id].0.clone();
        let before = std::mem::replace(&mut self.eps.get_mut(&name).expect("endpoint").mode, mode);
        self.answer(k);
        self.eps.get_mut(&name).expect("endpoint").mode = before;
    }

    /// The attempt of event `id` comes back unsent because its endpoint
    /// changed while it waited.
    pub fn answer_stale(&mut self, id: &str) {
        let k = self
            .attempts
            .iter()
            .position(|a| a.event.envelope.event_id == id)
            .unwrap_or_else(|| panic!("no attempt of {id} in flight"));
        let a = self.attempts.swap_remove(k);
        self.input(Input::Attempted {
            endpoint: a.endpoint,
            event: a.event,
            batch: a.batch,
            outcome: crate::attempt::Outcome::Stale,
            wait: a.wait,
        });
    }

    /// Lands the producer's oldest `n` writes.
    pub fn land_writes(&mut self, n: usize) {
        for _ in 0..n {
            self.land();
        }
    }

    /// Writes waiting in the producer.
    pub fn pending_writes(&self) -> usize {
        self.writes.len()
    }

    /// Commits the trackers' commit points.
    pub fn commit_now(&mut self) {
        self.commit();
    }

    /// Crashes: none of the producer's pending writes ever lands.
    pub fn crash_losing_writes(&mut self) {
        self.crashes += 1;
        self.writes.clear();
        self.restart();
    }

    /// Crashes: the producer's pending writes land later, after the new
    /// incarnation caught up (a zombie's writes).
    pub fn crash_with_late_writes(&mut self) {
        self.crashes += 1;
        for (_, target, env) in std::mem::take(&mut self.writes) {
            self.late.push_back((target, env));
        }
        self.restart();
    }

    /// Lands every zombie write now.
    pub fn land_late(&mut self) {
        while let Some((target, env)) = self.late.pop_front() {
            self.append(target, env);
        }
    }

    /// Requests sent for event `id` so far.
    pub fn attempts_in_flight_for(&self, id: &str) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.event.envelope.event_id == id)
            .count()
    }

    /// The event ids of the request in flight that leads with `id` (one
    /// event, or a batch in order); empty when there is none.
    pub fn request_of(&self, id: &str) -> Vec<String> {
        self.attempts
            .iter()
            .find(|a| a.event.envelope.event_id == id)
            .map(|a| {
                std::iter::once(&a.event)
                    .chain(&a.batch)
                    .map(|e| e.envelope.event_id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every third endpoint (`ep-2`, `ep-5`, …) is one this node's registry
    /// has not read yet: its events must wait for a sync, never be taken
    /// for deleted ones.
    pub fn lag_registry(&mut self) {
        for name in self.eps.keys() {
            let i: usize = name.trim_start_matches("ep-").parse().unwrap_or(0);
            if i % 3 == 2 {
                self.dir.lagging.insert(name.clone());
            }
        }
        self.dir.version += 1;
    }

    /// Disables endpoint `ep-<i>` in the registry.
    pub fn disable(&mut self, i: usize) {
        self.set_enabled(i, false);
    }

    /// Enables endpoint `ep-<i>` again in the registry (an operator's fix).
    pub fn enable(&mut self, i: usize) {
        self.set_enabled(i, true);
    }

    /// A registry change of `ep-<i>`'s `enabled`, seen by the core.
    fn set_enabled(&mut self, i: usize, enabled: bool) {
        let name = format!("ep-{i}");
        let e = self.dir.endpoints.get_mut(&name).expect("endpoint");
        e.1 = enabled;
        e.2 += 1;
        self.dir.version += 1;
        self.eps.get_mut(&name).expect("endpoint").enabled = enabled;
        self.input(Input::RegistryChanged);
    }

    /// Opens the circuit of `ep-<i>`, as failures in a row would.
    pub fn open_circuit(&mut self, i: usize) {
        let ep: std::sync::Arc<str> = format!("ep-{i}").into();
        for _ in 0..self.cfg.breaker.failures_to_open {
            self.core.breaker_record(&ep, false, self.now);
        }
        self.input(Input::Maintain);
    }

    /// Whether the circuit of `ep-<i>` is open (or half-open) in the core.
    pub fn circuit_open(&self, i: usize) -> bool {
        self.core
            .breakers
            .get(format!("ep-{i}").as_str())
            .is_some_and(|b| b.is_open())
    }

    /// Whether endpoint `ep-<i>` is enabled in the registry.
    pub fn is_enabled(&self, i: usize) -> bool {
        self.dir.endpoints[&format!("ep-{i}")].1
    }

    /// Events the lane of `ep-<i>` holds in memory.
    pub fn lane_held(&self, i: usize) -> usize {
        self.core.lane_held(&format!("ep-{i}"))
    }

    /// Where the events topic's commit would be now.
    pub fn events_committable(&self) -> Option<i64> {
        self.trackers.events.committable()
    }

    /// Dead letters written for event `id`.
    pub fn dead_letters_of(&self, id: &str) -> usize {
        self.dlq.iter().filter(|e| e.event_id == id).count()
    }

    /// Events dead-lettered so far.
    pub fn dead_count(&self) -> usize {
        self.dead.len()
    }

    /// Lets `ms` pass, then fires timers, reads records and lands writes
    /// until nothing changes.
    pub fn pass_time(&mut self, ms: i64) {
        self.now += ms;
        loop {
            let mut changed = self.fire_timers();
            while self.feed(0) || self.feed(1) {
                changed = true;
            }
            while !self.writes.is_empty() {
                self.land();
                changed = true;
            }
            while let Some(req) = self.scans.pop() {
                self.scans.push(req);
                self.scan(0);
                changed = true;
            }
            self.input(Input::Maintain);
            if !changed {
                break;
            }
        }
    }

    /// Where the retry topic's commit would be now.
    pub fn retry_committable(&self) -> Option<i64> {
        self.trackers.retry.committable()
    }

    /// Whether the retry record at `offset` was read and is not finished.
    pub fn retry_unfinished(&self, offset: i64) -> bool {
        self.trackers.retry.is_unfinished(offset)
    }

    /// The retry topic's committed offset and the length of its commit
    /// metadata (bytes).
    pub fn retry_committed(&self) -> (Option<i64>, usize) {
        (self.committed[1].0, self.committed[1].1.len())
    }

    /// Records in the retry topic.
    pub fn retry_records(&self) -> usize {
        self.retry.len()
    }

    /// The attempts already made that the attempt of event `id` in flight
    /// carries in its attempt state (`None` when none is in flight).
    pub fn attempts_made(&self, id: &str) -> Option<u32> {
        self.attempts
            .iter()
            .find(|a| a.event.envelope.event_id == id)
            .map(|a| a.event.attempts())
    }

    /// How long (ms) the attempt of event `id` in flight still waits before
    /// it is sent (`None` when none is in flight).
    pub fn wait_left(&self, id: &str) -> Option<i64> {
        self.attempts
            .iter()
            .find(|a| a.event.envelope.event_id == id)
            .map(|a| a.due - self.now)
    }

    /// Whether event `id` was delivered (a 2xx answer) at least once.
    pub fn was_delivered(&self, id: &str) -> bool {
        self.delivered.contains(id)
    }

    /// The attempt count on the dead letter of event `id`, if it has one.
    pub fn dead_letter_attempts(&self, id: &str) -> Option<u32> {
        self.dlq
            .iter()
            .find(|e| e.event_id == id)
            .map(|e| e.attempt.as_ref().map_or(0, |a| a.attempts))
    }
}
