//! Per-endpoint request pacing: the endpoint's rate limit (GCRA, governor),
//! slowed down adaptively when the endpoint answers 429/503, and a
//! `not_before` time from its `Retry-After`.
//!
//! One endpoint is owned by one dispatcher at a time (keyed partitions), so
//! a limiter here holds for the whole cluster. A new owner starts with an
//! empty bucket (no burst), so a rebalance never lets a double burst through.
//! Waiting here is not an attempt and only delays this endpoint.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use herald_core::endpoint::RateLimit;
use herald_core::time::now_ms;
use herald_telemetry::names;

/// How many halvings a throttled endpoint's rate can take (1/64 of it).
const MAX_LEVEL: u32 = 6;

/// The pacing of one endpoint. Shared by its lane and its attempts.
pub struct Pacer {
    /// The configured limit, if any.
    base: Option<RateLimit>,
    /// Current slow-down: the rate is `base / 2^level`.
    level: AtomicU32,
    /// Successes since the last level change.
    successes: AtomicU32,
    /// No request before this time (unix ms), from `Retry-After`.
    not_before_ms: AtomicI64,
    limiter: Mutex<Option<DefaultDirectRateLimiter>>,
}

/// The GCRA quota of `base` slowed down `level` times. Total for every
/// value a user can configure: rates beyond a billion per second come out
/// as one request per nanosecond, and a burst is at least one.
fn quota(base: RateLimit, level: u32) -> Quota {
    let level = level.min(MAX_LEVEL);
    let per_second = f64::from(base.per_second.max(1)) / f64::from(1u32 << level);
    let burst = NonZeroU32::new((base.burst >> level).max(1)).unwrap_or(NonZeroU32::MIN);
    let nanos = (1e9 / per_second).round().max(1.0) as u64;
    match Quota::with_period(Duration::from_nanos(nanos)) {
        Some(q) => q.allow_burst(burst),
        None => Quota::per_second(NonZeroU32::MAX).allow_burst(burst),
    }
}

impl Pacer {
    /// A pacer for `base` (None = unlimited) that starts with no burst.
    pub fn new(base: Option<RateLimit>) -> Self {
        let limiter = base.map(|b| {
            let l = RateLimiter::direct(quota(b, 0));
            // Start conservatively: the bucket is empty, not full.
            if let Some(n) = NonZeroU32::new(b.burst.max(1)) {
                let _ = l.check_n(n);
            }
            l
        });
        Self {
            base,
            level: AtomicU32::new(0),
            successes: AtomicU32::new(0),
            not_before_ms: AtomicI64::new(0),
            limiter: Mutex::new(limiter),
        }
    }

    /// The limit this pacer was built for.
    pub fn base(&self) -> Option<RateLimit> {
        self.base
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        let mut waited = false;
        loop {
            let now = now_ms();
            let nb = self.not_before_ms.load(Ordering::Acquire);
            let wait = if nb > now {
                Some(Duration::from_millis((nb - now) as u64))
            } else {
                let guard = self.limiter.lock().expect("pacer lock");
                match guard.as_ref().map(|l| l.check()) {
                    None | Some(Ok(())) => None,
                    Some(Err(not_until)) => {
                        Some(not_until.wait_time_from(DefaultClock::default().now()))
                    }
                }
            };
            match wait {
                None => return,
                Some(d) => {
                    if !waited {
                        metrics::counter!(names::RATE_LIMITED_WAITS).increment(1);
                        waited = true;
                    }
                    tokio::time::sleep(d).await;
                }
            }
        }
    }

    /// The endpoint said 429/503: hold off until `retry_after` and halve the rate.
    pub fn throttled(&self, retry_after: Option<Duration>) {
        if let Some(ra) = retry_after {
            // Rounded up, so the hold never ends early.
            let until = now_ms() + ra.as_millis().min(u128::from(u32::MAX)) as i64 + 1;
            self.not_before_ms.fetch_max(until, Ordering::AcqRel);
        }
        let Some(base) = self.base else { return };
        let level = self.level.load(Ordering::Acquire);
        if level < MAX_LEVEL {
            self.set_level(base, level + 1);
        }
    }

    /// A request succeeded: after about a second's worth of successes at the
    /// current rate, double the rate again (up to the configured one).
    pub fn succeeded(&self) {
        let Some(base) = self.base else { return };
        let level = self.level.load(Ordering::Acquire);
        if level == 0 {
            return;
        }
        let needed = (base.per_second >> level).max(1);
        if self.successes.fetch_add(1, Ordering::AcqRel) + 1 >= needed {
            self.set_level(base, level - 1);
        }
    }

    fn set_level(&self, base: RateLimit, level: u32) {
        self.level.store(level, Ordering::Release);
        self.successes.store(0, Ordering::Release);
        let l = RateLimiter::direct(quota(base, level));
        // A changed rate must not hand out a fresh burst.
        let _ = l.check_n(NonZeroU32::new((base.burst >> level).max(1)).unwrap_or(NonZeroU32::MIN));
        *self.limiter.lock().expect("pacer lock") = Some(l);
    }

    /// The current slow-down level (0 = configured rate).
    pub fn level(&self) -> u32 {
        self.level.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rl(per_second: u32, burst: u32) -> Option<RateLimit> {
        Some(RateLimit { per_second, burst })
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let p = Pacer::new(None);
        for _ in 0..1000 {
            p.acquire().await;
        }
    }

    #[test]
    fn throttling_halves_and_success_recovers() {
        let p = Pacer::new(rl(8, 8));
        p.throttled(None);
        p.throttled(None);
        assert_eq!(p.level(), 2);
        // Two successes are a second's worth at 8/4 = 2 per second.
        p.succeeded();
        assert_eq!(p.level(), 2);
        p.succeeded();
        assert_eq!(p.level(), 1);
        for _ in 0..4 {
            p.succeeded();
        }
        assert_eq!(p.level(), 0);
        for _ in 0..10 {
            p.throttled(None);
        }
        assert_eq!(p.level(), MAX_LEVEL);
    }

    /// Any configured value builds a pacer without panicking (issue 12:
    /// `per_second = 4294967295` used to panic the partition's worker).
    #[test]
    fn extreme_limits_do_not_panic() {
        for (per_second, burst) in [
            (u32::MAX, u32::MAX),
            (u32::MAX, 0),
            (0, 0),
            (1, u32::MAX),
            (3, 1),
        ] {
            let p = Pacer::new(rl(per_second, burst));
            for _ in 0..=MAX_LEVEL + 1 {
                p.throttled(None);
            }
            for _ in 0..10 {
                p.succeeded();
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn huge_rate_does_not_wait() {
        let p = Pacer::new(rl(u32::MAX, u32::MAX));
        for _ in 0..100 {
            p.acquire().await;
        }
    }

    /// Known limit "pacer, breaker and 'already disabling' state are per
    /// partition worker and in memory; a new owner starts with an empty
    /// bucket": a new pacer (one per endpoint in each partition worker)
    /// starts at the configured rate (level 0), with no `Retry-After` hold
    /// and no burst to hand out, where a fresh limiter with the same quota
    /// lets the whole burst through at once. (The bucket refills at 1 per
    /// second, so the count below stays far under the burst of 1,000 unless
    /// the test stalls for minutes.)
    #[test]
    fn a_new_pacer_starts_with_an_empty_bucket() {
        let limit = RateLimit {
            per_second: 1,
            burst: 1000,
        };
        let p = Pacer::new(Some(limit));
        assert_eq!(p.level(), 0, "the configured rate");
        assert_eq!(p.not_before_ms.load(Ordering::Acquire), 0, "no hold");
        let allowed = {
            let guard = p.limiter.lock().expect("pacer lock");
            let limiter = guard.as_ref().expect("a limited pacer has a limiter");
            (0..limit.burst).filter(|_| limiter.check().is_ok()).count()
        };
        assert!(
            allowed < limit.burst as usize / 2,
            "a new pacer handed out {allowed} of its burst at once"
        );
        let fresh = RateLimiter::direct(quota(limit, 0));
        let full = (0..limit.burst).filter(|_| fresh.check().is_ok()).count();
        assert_eq!(
            full, limit.burst as usize,
            "a full bucket lets the burst through"
        );
    }

    #[test]
    fn retry_after_sets_not_before() {
        let p = Pacer::new(None);
        p.throttled(Some(Duration::from_secs(2)));
        let nb = p.not_before_ms.load(Ordering::Acquire);
        assert!(nb >= now_ms() + 1000);
    }
}
