//! Per-credential publish rate limits (governor's GCRA): how many events a
//! token or client certificate may publish per second, so one caller cannot
//! flood the events topic for everyone.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A caller's publish budget.
pub struct PublishLimit {
    per_second: NonZeroU32,
    burst: NonZeroU32,
    limiter: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for PublishLimit {
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
        let per_second = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(per_second);
        Some(Self {
            per_second,
            burst,
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
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
            Ok(Err(not_until)) => Err(Refusal::Wait(
                not_until.wait_time_from(DefaultClock::default().now()),
            )),
            Err(_) => Err(too_many),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_burst_and_oversize_calls() {
        assert!(PublishLimit::new(0, 10).is_none(), "0 = unlimited");
        let l = PublishLimit::new(1, 5).unwrap();
        assert_eq!(l.admit(0), Ok(()));
        assert_eq!(l.admit(3), Ok(()));
        assert_eq!(l.admit(2), Ok(()));
        assert!(matches!(l.admit(1), Err(Refusal::Wait(d)) if d > Duration::ZERO));
        assert_eq!(l.admit(6), Err(Refusal::TooMany { burst: 5 }));
        assert_eq!(l.admit(usize::MAX), Err(Refusal::TooMany { burst: 5 }));
    }
}
