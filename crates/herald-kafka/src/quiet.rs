//! When an idle consumer stops fetching: [`Quiet`], a pure state machine
//! fed record arrivals and clock ticks that says when to pause every
//! assigned partition and when to fetch again (the consumers drive it
//! through [`crate::idle`]).
//!
//! A broker that holds a fetch until data arrives (Kafka) makes an idle
//! consumer cheap: one request per `fetch.wait.max.ms`, answered early when
//! a record comes. The embedded broker of `herald dev` answers a waiting
//! fetch only when the wait ends, so its consumers wait briefly (5–10 ms)
//! for latency, and an idle node would fetch hundreds of times a second.
//! With `kafka.idle_pause_after_ms`, after that long without a record a
//! consumer (the dispatcher, the registry and idempotency readers) pauses
//! every partition and fetches only in short probes, every
//! `kafka.idle_probe_interval_ms`, each long enough for a fetch round trip.
//! The first record a probe (or a new assignment) brings wakes it fully.
//! librdkafka applies a resume without waking the broker thread that
//! fetches, so [`crate::idle::set_fetching`] wakes it with one small
//! request; a probe then fetches at once. Pausing suits one-process setups,
//! where [`crate::idle::nudge`] wakes consumers for the process's own
//! writes, and records from other processes wait for the next probe.
//!
//! Nothing is skipped while paused: pausing drops what was fetched but not
//! yet read, and librdkafka fetches again from the position the application
//! read up to.

use std::time::{Duration, Instant};

use herald_core::config::KafkaConfig;

/// What the router must do with the assigned partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetching {
    /// Pause every assigned partition.
    Pause,
    /// Resume every assigned partition (except events partitions a worker
    /// keeps paused).
    Resume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Fetching normally.
    Awake,
    /// Paused; the next probe starts at `next_probe`.
    Asleep { next_probe: Instant },
    /// Fetching for one probe, until `until`.
    Probing { until: Instant },
}

/// The quiet-time state machine of one consumer.
#[derive(Debug, Clone)]
pub struct Quiet {
    after: Duration,
    every: Duration,
    probe_for: Duration,
    last_record: Instant,
    state: State,
}

impl Quiet {
    /// Pauses after `after` without a record, then probes every `every`
    /// for `probe_for`; `None` when `after` is zero (never pause).
    ///
    /// A probe should last two fetch waits and a little more: one empty
    /// round trip, then the one that brings a record (see [`probe_length`]).
    pub fn new(
        after: Duration,
        every: Duration,
        probe_for: Duration,
        now: Instant,
    ) -> Option<Self> {
        (!after.is_zero()).then_some(Self {
            after,
            every,
            probe_for,
            last_record: now,
            state: State::Awake,
        })
    }

    /// As `kafka.idle_pause_after_ms` and `kafka.idle_probe_interval_ms`
    /// say, for a consumer whose fetches wait up to `fetch_wait`.
    pub fn configured(cfg: &KafkaConfig, fetch_wait: Duration, now: Instant) -> Option<Self> {
        Self::new(
            Duration::from_millis(cfg.idle_pause_after_ms),
            Duration::from_millis(cfg.idle_probe_interval_ms),
            probe_length(fetch_wait),
            now,
        )
    }

    /// Whether it fetches normally (neither paused nor probing).
    pub fn awake(&self) -> bool {
        matches!(self.state, State::Awake)
    }

    /// Whether fetching is paused (between probes).
    pub fn paused(&self) -> bool {
        matches!(self.state, State::Asleep { .. })
    }

    /// A record arrived: fetch normally again.
    pub fn record(&mut self, now: Instant) -> Option<Fetching> {
        self.last_record = now;
        let was = self.state;
        self.state = State::Awake;
        // During a probe the partitions already fetch.
        matches!(was, State::Asleep { .. }).then_some(Fetching::Resume)
    }

    /// The assignment changed (a rebalance resumes the partitions it
    /// assigns): start counting the quiet time again, fetching.
    pub fn assigned(&mut self, now: Instant) {
        self.last_record = now;
        self.state = State::Awake;
    }

    /// When [`Quiet::tick`] has something to do next.
    pub fn deadline(&self) -> Instant {
        match self.state {
            State::Awake => self.last_record + self.after,
            State::Asleep { next_probe } => next_probe,
            State::Probing { until } => until,
        }
    }

    /// Moves on at `now`: what to do with the partitions, if anything.
    pub fn tick(&mut self, now: Instant) -> Option<Fetching> {
        if now < self.deadline() {
            return None;
        }
        match self.state {
            State::Awake | State::Probing { .. } => {
                self.state = State::Asleep {
                    next_probe: now + self.every,
                };
                Some(Fetching::Pause)
            }
            State::Asleep { .. } => {
                self.state = State::Probing {
                    until: now + self.probe_for,
                };
                Some(Fetching::Resume)
            }
        }
    }
}

/// How long a probe lasts for a consumer whose fetches wait up to
/// `fetch_wait`: two waits and 5 ms, at least 20 ms.
pub fn probe_length(fetch_wait: Duration) -> Duration {
    (2 * fetch_wait + Duration::from_millis(5)).max(Duration::from_millis(20))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn quiet(t0: Instant) -> Quiet {
        Quiet::new(1000 * MS, 100 * MS, 15 * MS, t0).expect("enabled")
    }

    #[test]
    fn a_probe_outlasts_two_fetch_waits() {
        assert_eq!(probe_length(5 * MS), 20 * MS);
        assert_eq!(probe_length(10 * MS), 25 * MS);
        assert_eq!(probe_length(500 * MS), 1005 * MS);
    }

    #[test]
    fn zero_never_pauses() {
        assert!(Quiet::new(Duration::ZERO, 100 * MS, 15 * MS, Instant::now()).is_none());
    }

    #[test]
    fn pauses_after_the_quiet_time_then_probes_periodically() {
        let t0 = Instant::now();
        let mut q = quiet(t0);
        assert_eq!(q.tick(t0 + 999 * MS), None);
        assert_eq!(q.deadline(), t0 + 1000 * MS);
        assert_eq!(q.tick(t0 + 1000 * MS), Some(Fetching::Pause));
        assert!(q.paused());
        // A probe every 100 ms, 15 ms long.
        let mut t = t0 + 1000 * MS;
        for _ in 0..5 {
            assert_eq!(q.tick(t + 99 * MS), None);
            t += 100 * MS;
            assert_eq!(q.tick(t), Some(Fetching::Resume));
            assert!(!q.paused());
            assert_eq!(q.deadline(), t + 15 * MS);
            t += 15 * MS;
            assert_eq!(q.tick(t), Some(Fetching::Pause));
        }
    }

    #[test]
    fn a_record_wakes_it_and_restarts_the_quiet_time() {
        let t0 = Instant::now();
        let mut q = quiet(t0);
        // Records keep it awake.
        for i in 1..=20 {
            assert_eq!(q.record(t0 + i * 100 * MS), None);
            assert_eq!(q.tick(t0 + i * 100 * MS + 50 * MS), None);
        }
        let t1 = t0 + 2000 * MS;
        assert_eq!(q.tick(t1 + 1000 * MS), Some(Fetching::Pause));
        // A record while paused (fetched before the pause): resume.
        assert_eq!(q.record(t1 + 1010 * MS), Some(Fetching::Resume));
        assert_eq!(q.deadline(), t1 + 2010 * MS);
        // A record during a probe: already fetching, stays awake.
        assert_eq!(q.tick(t1 + 2010 * MS), Some(Fetching::Pause));
        assert_eq!(q.tick(t1 + 2110 * MS), Some(Fetching::Resume));
        assert_eq!(q.record(t1 + 2112 * MS), None);
        assert_eq!(q.tick(t1 + 2127 * MS), None, "no pause at the probe's end");
        assert_eq!(q.deadline(), t1 + 3112 * MS);
    }

    #[test]
    fn an_assignment_restarts_the_quiet_time_fetching() {
        let t0 = Instant::now();
        let mut q = quiet(t0);
        assert_eq!(q.tick(t0 + 1000 * MS), Some(Fetching::Pause));
        q.assigned(t0 + 1050 * MS);
        assert!(!q.paused());
        assert_eq!(q.tick(t0 + 2049 * MS), None);
        assert_eq!(q.tick(t0 + 2050 * MS), Some(Fetching::Pause));
    }
}
