//! Per-credential publish rate limits (governor's GCRA): how many events a
//! token or client certificate may publish per second, so one caller cannot
//! flood the events topic for everyone.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// A caller's publish budget, on clock `C` (the real one outside tests).
pub struct PublishLimit<C: Clock = DefaultClock> {
    per_second: NonZeroU32,
    burst: NonZeroU32,
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl<C: Clock> std::fmt::Debug for PublishLimit<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishLimit")
            .field("per_second", &self.per_second)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

/// Why a publish of `n` events was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the rate now; this much later it would pass.
    Wait(Duration),
    /// More events in one call than the burst: it can never pass whole.
    TooMany {
        /// The burst.
        burst: u32,
    },
}

impl PublishLimit {
    /// `per_second` events per second, `burst` at once (0 = `per_second`);
    /// `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        Self::with_clock(per_second, burst, DefaultClock::default())
    }
}

impl<C: Clock + Clone> PublishLimit<C> {
    /// [`PublishLimit::new`] on `clock`.
    pub fn with_clock(per_second: u32, burst: u32, clock: C) -> Option<Self> {
        let per_second = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(per_second);
        Some(Self {
            per_second,
            burst,
            limiter: RateLimiter::direct_with_clock(
                Quota::per_second(per_second).allow_burst(burst),
                clock.clone(),
            ),
            clock,
        })
    }

    /// The configured rate, events per second.
    pub fn per_second(&self) -> u32 {
        self.per_second.get()
    }

    /// Takes `n` events from the budget, or says why not (taking nothing).
    pub fn admit(&self, n: usize) -> Result<(), Refusal> {
        if n == 0 {
            return Ok(());
        }
        let too_many = Refusal::TooMany {
            burst: self.burst.get(),
        };
        let Some(n) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
            return Err(too_many);
        };
        match self.limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Refusal::Wait(not_until.wait_time_from(self.clock.now()))),
            Err(_) => Err(too_many),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use governor::clock::FakeRelativeClock;

    #[test]
    fn budget_burst_and_oversize_calls() {
        assert!(PublishLimit::new(0, 10).is_none(), "0 = unlimited");
        let clock = FakeRelativeClock::default();
        let l = PublishLimit::with_clock(1, 5, clock.clone()).unwrap();
        assert_eq!(l.admit(0), Ok(()));
        assert_eq!(l.admit(3), Ok(()));
        assert_eq!(l.admit(2), Ok(()));
        assert_eq!(l.admit(1), Err(Refusal::Wait(Duration::from_secs(1))));
        clock.advance(Duration::from_secs(1));
        assert_eq!(l.admit(1), Ok(()), "one event a second comes back");
        assert!(matches!(l.admit(1), Err(Refusal::Wait(_))));
        assert_eq!(l.admit(6), Err(Refusal::TooMany { burst: 5 }));
        assert_eq!(l.admit(usize::MAX), Err(Refusal::TooMany { burst: 5 }));
    }
}
