//! How long to wait before the next attempt: exponential backoff with
//! jitter, stretched to honour a receiver's `Retry-After` within bounds.
//!
//! Pure maths: callers pass the random number, so tests can pin it.

use std::time::Duration;

/// Exponential backoff: `initial * 2^(n-1)`, capped at `max`, then scaled by a
/// jitter factor in `[1 - jitter, 1 + jitter]` and capped at `max` again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failed attempt.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Relative jitter, `0.0..=1.0`.
    pub jitter: f64,
}

impl Backoff {
    /// Delay before attempt `failed + 1`, given `failed >= 1` failed attempts
    /// and `unit`, a uniform random number in `[0, 1)`.
    pub fn delay(&self, failed: u32, unit: f64) -> Duration {
        let exp = failed.saturating_sub(1).min(30);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0);
        base.mul_f64(factor).min(self.max)
    }
}

/// The wait before a retry: the backoff delay, or the receiver's
/// `Retry-After` when longer, but never more than `cap`.
pub fn honour_retry_after(delay: Duration, retry_after: Option<Duration>, cap: Duration) -> Duration {
    match retry_after {
        Some(ra) => delay.max(ra.min(cap)),
        None => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b() -> Backoff {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(10), jitter: 0.2 }
    }

    #[test]
    fn doubles_without_jitter() {
        let b = Backoff { jitter: 0.0, ..b() };
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(100));
        assert_eq!(b.delay(2, 0.5), Duration::from_millis(200));
        assert_eq!(b.delay(4, 0.5), Duration::from_millis(800));
        assert_eq!(b.delay(30, 0.5), Duration::from_secs(10));
        assert_eq!(b.delay(u32::MAX, 0.5), Duration::from_secs(10));
    }

    #[test]
    fn retry_after_stretches_within_cap() {
        let d = Duration::from_secs(1);
        assert_eq!(honour_retry_after(d, None, Duration::from_secs(60)), d);
        assert_eq!(
            honour_retry_after(d, Some(Duration::from_secs(5)), Duration::from_secs(60)),
            Duration::from_secs(5)
        );
        assert_eq!(
            honour_retry_after(d, Some(Duration::from_secs(3600)), Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(honour_retry_after(d, Some(Duration::ZERO), Duration::from_secs(60)), d);
    }

    proptest! {
        #[test]
        fn delay_stays_in_jitter_bounds(failed in 1u32..64, unit in 0.0f64..1.0) {
            let b = b();
            let d = b.delay(failed, unit);
            let exp = (failed - 1).min(30);
            let base = b.initial.saturating_mul(1 << exp).min(b.max);
            prop_assert!(d <= b.max);
            prop_assert!(d >= base.mul_f64(0.8) - Duration::from_nanos(1));
            prop_assert!(d <= base.mul_f64(1.2) + Duration::from_nanos(1));
        }

        #[test]
        fn delay_never_shrinks_much_as_attempts_grow(failed in 1u32..40) {
            // Worst jitter on the later attempt still waits at least as long
            // as 2/3 of the best jitter on the earlier one.
            let b = b();
            prop_assert!(b.delay(failed + 1, 0.0).as_secs_f64() >= b.delay(failed, 0.999).as_secs_f64() * 0.66);
        }
    }
}
