//! A per-endpoint circuit breaker: after a run of consecutive failures the
//! endpoint is *open* (no requests) for a cool-down; then one probe goes
//! through (*half-open*); its success closes the circuit, its failure opens
//! it again.
//!
//! Pure: callers pass the clock.

/// The breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit (0 disables the breaker).
    pub failures_to_open: u32,
    /// How long an open circuit stays open, ms.
    pub cool_down_ms: i64,
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Requests flow; `failures` in a row so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// No requests until `until_ms`.
    Open {
        /// End of the cool-down, unix ms.
        until_ms: i64,
    },
    /// One probe is allowed; `probing` once it was sent.
    HalfOpen {
        /// Whether the probe is in flight.
        probing: bool,
    },
}

/// Whether a request may be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Send it.
    Go,
    /// Not before this time (unix ms).
    WaitUntil(i64),
    /// A probe is in flight; wait for its result.
    WaitForProbe,
}

/// A state change worth telling operators about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The circuit opened.
    Opened,
    /// The circuit closed again.
    Closed,
}

/// One endpoint's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: State::Closed { failures: 0 },
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the circuit is open or half-open.
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    /// Asks to send one request at `now_ms`; a `Go` in half-open state makes
    /// that request the probe.
    pub fn permit(&mut self, now_ms: i64) -> Permit {
        match self.state {
            State::Closed { .. } => Permit::Go,
            State::Open { until_ms } if now_ms < until_ms => Permit::WaitUntil(until_ms),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                Permit::Go
            }
            State::HalfOpen { probing: true } => Permit::WaitForProbe,
        }
    }

    /// Records a request's result at `now_ms`.
    pub fn record(&mut self, success: bool, now_ms: i64) -> Option<Transition> {
        if self.config.failures_to_open == 0 {
            return None;
        }
        match (self.state, success) {
            (State::Closed { .. }, true) => {
                self.state = State::Closed { failures: 0 };
                None
            }
            (State::Closed { failures }, false) => {
                let failures = failures + 1;
                if failures >= self.config.failures_to_open {
                    self.state = State::Open {
                        until_ms: now_ms + self.config.cool_down_ms,
                    };
                    Some(Transition::Opened)
                } else {
                    self.state = State::Closed { failures };
                    None
                }
            }
            (_, true) => {
                self.state = State::Closed { failures: 0 };
                Some(Transition::Closed)
            }
            (_, false) => {
                // A failed probe (or a straggler while open) re-opens.
                let reopened = !matches!(self.state, State::Open { .. });
                self.state = State::Open {
                    until_ms: now_ms + self.config.cool_down_ms,
                };
                reopened.then_some(Transition::Opened)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b() -> Breaker {
        Breaker::new(BreakerConfig {
            failures_to_open: 3,
            cool_down_ms: 1000,
        })
    }

    #[test]
    fn opens_after_a_run_of_failures() {
        let mut b = b();
        assert_eq!(b.record(false, 0), None);
        assert_eq!(b.record(true, 0), None, "a success resets the run");
        assert_eq!(b.record(false, 0), None);
        assert_eq!(b.record(false, 0), None);
        assert_eq!(b.record(false, 10), Some(Transition::Opened));
        assert_eq!(b.permit(500), Permit::WaitUntil(1010));
    }

    #[test]
    fn half_open_lets_one_probe_through() {
        let mut b = b();
        for _ in 0..3 {
            b.record(false, 0);
        }
        assert_eq!(b.permit(1000), Permit::Go);
        assert_eq!(b.state(), State::HalfOpen { probing: true });
        assert_eq!(b.permit(1001), Permit::WaitForProbe);
        assert_eq!(b.record(false, 1200), Some(Transition::Opened));
        assert_eq!(b.permit(1300), Permit::WaitUntil(2200));
        assert_eq!(b.permit(2200), Permit::Go);
        assert_eq!(b.record(true, 2300), Some(Transition::Closed));
        assert_eq!(b.permit(2301), Permit::Go);
    }

    #[test]
    fn disabled_breaker_never_opens() {
        let mut b = Breaker::new(BreakerConfig {
            failures_to_open: 0,
            cool_down_ms: 1000,
        });
        for _ in 0..100 {
            assert_eq!(b.record(false, 0), None);
        }
        assert_eq!(b.permit(0), Permit::Go);
    }

    proptest! {
        /// Whatever happens, an open breaker never permits a request before
        /// its cool-down ends, and at most one probe is out at a time.
        #[test]
        fn never_sends_while_open(events in proptest::collection::vec((any::<bool>(), any::<bool>(), 0i64..500), 1..200)) {
            let mut b = b();
            let mut now = 0;
            let mut probes = 0;
            for (ask, success, step) in events {
                now += step;
                if ask {
                    let before = b.state();
                    let p = b.permit(now);
                    if let State::Open { until_ms } = before {
                        if now < until_ms { prop_assert_ne!(p, Permit::Go); }
                    }
                    if p == Permit::Go && matches!(b.state(), State::HalfOpen { .. }) {
                        probes += 1;
                        prop_assert!(probes <= 1);
                    }
                } else {
                    b.record(success, now);
                    probes = 0;
                }
            }
        }
    }
}
