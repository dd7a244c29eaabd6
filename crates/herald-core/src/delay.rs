//! Scheduled delivery's waiting room: the tiers of the scheduled topic.
//!
//! An event scheduled for later waits in the scheduled topic, not in a
//! dispatcher's memory. Partition `k` of that topic is **tier** `k`: every
//! record in it waits exactly `2^k` seconds from when it was written (in
//! tier 0, a record due in less than a second waits until its due time), so
//! each tier partition is ripe in the order it was written (tier 0 give or
//! take a second), and its reader only ever holds back its
//! head. A ripe record is written again to the largest tier whose wait fits
//! in what remains, or, once its due time has come, to the events topic,
//! where it takes its place in its endpoint's order. An event due in `R`
//! seconds makes at most one hop per tier below `log2(R)` (plus one per
//! 2^22 s above that), and is never released before its due time.
//!
//! Pure: callers pass the clock.

/// Partitions of the scheduled topic: tiers `0..TIERS`, the longest
/// waiting `2^(TIERS-1)` seconds (about 48.5 days).
pub const TIERS: i32 = 23;

/// The wait of tier `k`, ms.
pub fn tier_wait_ms(tier: i32) -> i64 {
    1000_i64 << tier.clamp(0, TIERS - 1)
}

/// When a publish with `deliver_at_ms` and `delay_ms` is due, at `now_ms`
/// (0 = not scheduled, deliver at once); `max_ms` bounds how far ahead.
pub fn due_ms(
    deliver_at_ms: i64,
    delay_ms: u64,
    now_ms: i64,
    max_ms: i64,
) -> Result<i64, crate::validate::FieldError> {
    use crate::validate::FieldError;
    match (deliver_at_ms, delay_ms) {
        (0, 0) => Ok(0),
        (at, d) if at != 0 && d != 0 => Err(FieldError::new(
            "deliver_at_ms",
            "cannot be set together with delay_ms; give one of them",
        )),
        (at, _) if at < 0 => Err(FieldError::new(
            "deliver_at_ms",
            "is unix milliseconds, not negative",
        )),
        (0, d) if d > max_ms as u64 => Err(FieldError::new(
            "delay_ms",
            format!("is {d} ms, longer than grpc.max_schedule_delay ({max_ms} ms)"),
        )),
        (0, d) => Ok(now_ms + d as i64),
        (at, _) if at > now_ms.saturating_add(max_ms) => Err(FieldError::new(
            "deliver_at_ms",
            format!(
                "is {} ms from now, further than grpc.max_schedule_delay ({max_ms} ms)",
                at - now_ms
            ),
        )),
        // A time already past: deliver at once.
        (at, _) if at <= now_ms => Ok(0),
        (at, _) => Ok(at),
    }
}

/// What to do with a scheduled event at `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Its time has come: write it to the events topic.
    Deliver,
    /// Write it to tier `tier`, to be looked at again at `ready_ms`.
    Wait {
        /// The scheduled topic's partition.
        tier: i32,
        /// When the tier's reader may take it (the record's header).
        ready_ms: i64,
    },
}

/// The next step for an event due at `due_ms`, at `now_ms`.
pub fn step(now_ms: i64, due_ms: i64) -> Step {
    let remaining = due_ms.saturating_sub(now_ms);
    if remaining <= 0 {
        return Step::Deliver;
    }
    if remaining < 1000 {
        // Under a second: tier 0 holds it until it is due (so tier 0's
        // records are ready in written order give or take a second).
        return Step::Wait {
            tier: 0,
            ready_ms: due_ms,
        };
    }
    // The largest tier whose whole wait fits in what remains.
    let seconds = (remaining / 1000) as u64;
    let tier = (63 - seconds.leading_zeros() as i32).min(TIERS - 1);
    Step::Wait {
        tier,
        ready_ms: now_ms + tier_wait_ms(tier),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn due_times_are_checked() {
        let max = 30 * 86_400_000;
        assert_eq!(due_ms(0, 0, 1000, max).unwrap(), 0);
        assert_eq!(due_ms(0, 500, 1000, max).unwrap(), 1500);
        assert_eq!(due_ms(5000, 0, 1000, max).unwrap(), 5000);
        assert_eq!(due_ms(500, 0, 1000, max).unwrap(), 0, "past: at once");
        let both = due_ms(5000, 5, 1000, max).unwrap_err();
        assert_eq!(both.field, "deliver_at_ms");
        let far = due_ms(0, max as u64 + 1, 1000, max).unwrap_err();
        assert!(
            far.to_string().contains("delay_ms") && far.to_string().contains("max_schedule_delay"),
            "{far}"
        );
        let far = due_ms(1000 + max + 1, 0, 1000, max).unwrap_err();
        assert!(far.to_string().contains("deliver_at_ms"), "{far}");
        assert!(due_ms(-1, 0, 1000, max).is_err());
        assert!(due_ms(0, u64::MAX, 1000, max).is_err());
    }

    #[test]
    fn tiers_fit_what_remains() {
        assert_eq!(
            step(0, 999),
            Step::Wait {
                tier: 0,
                ready_ms: 999
            }
        );
        assert_eq!(step(10, 10), Step::Deliver);
        assert_eq!(step(10, 5), Step::Deliver);
        assert_eq!(
            step(0, 1500),
            Step::Wait {
                tier: 0,
                ready_ms: 1000
            }
        );
        assert_eq!(
            step(0, 2000),
            Step::Wait {
                tier: 1,
                ready_ms: 2000
            }
        );
        assert_eq!(
            step(0, 3999),
            Step::Wait {
                tier: 1,
                ready_ms: 2000
            }
        );
        assert_eq!(
            step(0, 4000),
            Step::Wait {
                tier: 2,
                ready_ms: 4000
            }
        );
        let month = 30 * 86_400_000;
        assert_eq!(
            step(0, month),
            Step::Wait {
                tier: 21,
                ready_ms: tier_wait_ms(21)
            }
        );
        let year = 365 * 86_400_000;
        assert_eq!(
            step(0, year),
            Step::Wait {
                tier: TIERS - 1,
                ready_ms: tier_wait_ms(TIERS - 1)
            }
        );
    }

    proptest! {
        /// Hop by hop, each read `lateness` ms after its record is ready:
        /// never released early, at most one hop per tier (for delays
        /// within the top tier), and released at most the summed lateness
        /// after its due time.
        #[test]
        fn an_event_is_released_at_its_time_never_before(
            start in 0i64..1_000_000_000,
            delay in 0i64..(45 * 86_400_000),
            lateness in prop::collection::vec(0i64..5_000, 64),
        ) {
            let due = start + delay;
            let mut now = start;
            let mut hops = 0;
            let mut late = 0;
            loop {
                match step(now, due) {
                    Step::Deliver => break,
                    Step::Wait { tier, ready_ms } => {
                        prop_assert!((0..TIERS).contains(&tier));
                        prop_assert!(ready_ms <= due, "a hop past the due time");
                        prop_assert!(ready_ms > now);
                        let l = lateness[hops % lateness.len()];
                        late += l;
                        now = ready_ms + l;
                        hops += 1;
                        prop_assert!(hops <= TIERS as usize + 1, "too many hops");
                    }
                }
            }
            prop_assert!(now >= due, "released before its time");
            prop_assert!(now <= due + late, "released later than its readers were late");
        }
    }
}
