//! The retry policy: after a failed attempt, wait how long — or give up.
//!
//! Pure: callers pass the clock and the random number. The schedule lists
//! the delay before each retry (the first entry follows the first attempt);
//! when it runs out, or the next attempt would start after the event's
//! maximum age, the event is exhausted and goes to the dead-letter topic.

use std::time::Duration;

use crate::retry::Verdict;

/// The default delays after the first attempt: 5 s, 5 m, 30 m, 2 h, 5 h,
/// 10 h, 14 h, 20 h, 24 h (about 80 hours in all).
pub fn default_schedule() -> Vec<Duration> {
    [5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 86_400]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}

/// How an event's retries go.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before retry n (index n-1).
    pub schedule: Vec<Duration>,
    /// Relative jitter applied to each delay, `0.0..=1.0`.
    pub jitter: f64,
    /// An event is not attempted after it is this old (since publish).
    pub max_age: Duration,
    /// Longest wait a receiver's `Retry-After` can impose.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            schedule: default_schedule(),
            jitter: 0.2,
            max_age: Duration::from_secs(4 * 86_400),
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

/// Why an event's retries ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhaustion {
    /// The answer is final (e.g. 410, or 4xx when configured final).
    FinalAnswer,
    /// Every delay in the schedule was used.
    Attempts,
    /// The next attempt would start after the event's maximum age.
    Age,
}

impl Exhaustion {
    /// A fixed name for headers, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Exhaustion::FinalAnswer => "final_answer",
            Exhaustion::Attempts => "attempts_exhausted",
            Exhaustion::Age => "max_age_exceeded",
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Try again after this long.
    RetryIn(Duration),
    /// Stop; dead-letter the event.
    GiveUp(Exhaustion),
}

/// The facts about one failed attempt that the policy needs.
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    /// Retryable or final, from [`crate::retry::decide`].
    pub verdict: Verdict,
    /// Attempts made so far, including this one (>= 1).
    pub attempts: u32,
    /// When the event was published, unix ms.
    pub created_ms: i64,
    /// Now, unix ms.
    pub now_ms: i64,
    /// The receiver's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
}

impl RetryPolicy {
    /// The step after `failure`, with `unit` a uniform random number in `[0, 1)`.
    pub fn after_failure(&self, failure: Failure, unit: f64) -> Step {
        if failure.verdict == Verdict::Final {
            return Step::GiveUp(Exhaustion::FinalAnswer);
        }
        let index = failure.attempts.saturating_sub(1) as usize;
        let Some(&base) = self.schedule.get(index) else {
            return Step::GiveUp(Exhaustion::Attempts);
        };
        let j = self.jitter.clamp(0.0, 1.0);
        let mut delay = base.mul_f64(1.0 - j + 2.0 * j * unit.clamp(0.0, 1.0));
        if let Some(ra) = failure.retry_after {
            delay = delay.max(ra.min(self.max_retry_after));
        }
        let due = failure.now_ms.saturating_add(delay.as_millis() as i64);
        let deadline = failure
            .created_ms
            .saturating_add(self.max_age.as_millis() as i64);
        if due > deadline {
            return Step::GiveUp(Exhaustion::Age);
        }
        Step::RetryIn(delay)
    }

    /// Whether an event created at `created_ms` is past its maximum age at `now_ms`.
    pub fn expired(&self, created_ms: i64, now_ms: i64) -> bool {
        now_ms.saturating_sub(created_ms) > self.max_age.as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fail(attempts: u32) -> Failure {
        Failure {
            verdict: Verdict::Retry,
            attempts,
            created_ms: 0,
            now_ms: 0,
            retry_after: None,
        }
    }

    #[test]
    fn follows_the_schedule_then_gives_up() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..Default::default()
        };
        assert_eq!(
            p.after_failure(fail(1), 0.5),
            Step::RetryIn(Duration::from_secs(5))
        );
        assert_eq!(
            p.after_failure(fail(2), 0.5),
            Step::RetryIn(Duration::from_secs(300))
        );
        assert_eq!(
            p.after_failure(fail(9), 0.5),
            Step::RetryIn(Duration::from_secs(86_400))
        );
        assert_eq!(
            p.after_failure(fail(10), 0.5),
            Step::GiveUp(Exhaustion::Attempts)
        );
    }

    #[test]
    fn final_answers_stop_at_once() {
        let p = RetryPolicy::default();
        let f = Failure {
            verdict: Verdict::Final,
            ..fail(1)
        };
        assert_eq!(
            p.after_failure(f, 0.5),
            Step::GiveUp(Exhaustion::FinalAnswer)
        );
    }

    #[test]
    fn max_age_caps_retries() {
        let p = RetryPolicy {
            jitter: 0.0,
            max_age: Duration::from_secs(60),
            ..Default::default()
        };
        assert_eq!(
            p.after_failure(fail(1), 0.5),
            Step::RetryIn(Duration::from_secs(5))
        );
        // 5 minutes would pass the 60 s age.
        assert_eq!(p.after_failure(fail(2), 0.5), Step::GiveUp(Exhaustion::Age));
        assert!(p.expired(0, 60_001));
        assert!(!p.expired(0, 60_000));
    }

    #[test]
    fn retry_after_lengthens_within_bounds() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..Default::default()
        };
        let f = Failure {
            retry_after: Some(Duration::from_secs(30)),
            ..fail(1)
        };
        assert_eq!(
            p.after_failure(f, 0.5),
            Step::RetryIn(Duration::from_secs(30))
        );
        let f = Failure {
            retry_after: Some(Duration::from_secs(10 * 3600)),
            ..fail(1)
        };
        assert_eq!(
            p.after_failure(f, 0.5),
            Step::RetryIn(Duration::from_secs(3600))
        );
        // A short Retry-After never shortens the schedule.
        let f = Failure {
            retry_after: Some(Duration::from_secs(1)),
            ..fail(2)
        };
        assert_eq!(
            p.after_failure(f, 0.5),
            Step::RetryIn(Duration::from_secs(300))
        );
    }

    proptest! {
        #[test]
        fn jitter_stays_in_bounds(attempts in 1u32..10, unit in 0.0f64..1.0, jitter in 0.0f64..1.0) {
            let p = RetryPolicy { jitter, max_age: Duration::from_secs(365 * 86_400), ..Default::default() };
            let base = p.schedule[(attempts - 1) as usize];
            match p.after_failure(fail(attempts), unit) {
                Step::RetryIn(d) => {
                    prop_assert!(d.as_secs_f64() >= base.as_secs_f64() * (1.0 - jitter) - 1e-6);
                    prop_assert!(d.as_secs_f64() <= base.as_secs_f64() * (1.0 + jitter) + 1e-6);
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }

        #[test]
        fn never_schedules_past_max_age(attempts in 1u32..12, age_s in 0i64..400_000, max_age_s in 1u64..400_000, unit in 0.0f64..1.0) {
            let p = RetryPolicy { max_age: Duration::from_secs(max_age_s), ..Default::default() };
            let f = Failure { now_ms: age_s * 1000, ..fail(attempts) };
            if let Step::RetryIn(d) = p.after_failure(f, unit) {
                prop_assert!(age_s * 1000 + d.as_millis() as i64 <= (max_age_s * 1000) as i64);
            }
        }
    }
}
