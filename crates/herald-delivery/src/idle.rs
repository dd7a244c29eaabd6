//! [`IdleList`]: the idle keep-alive connections of one origin, as pure bookkeeping.
//!
//! Owns which idle connection is handed out next (the most recently used: the one least
//! likely to have been closed by the other side), how many are kept, and when one has
//! been idle too long. It never touches a socket; the pool decides whether a connection
//! it gets back is still usable.

use std::time::Duration;

use tokio::time::Instant;

/// Idle connections of one origin, newest last.
#[derive(Debug)]
pub(crate) struct IdleList<T> {
    entries: Vec<(T, Instant)>,
}

impl<T> Default for IdleList<T> {
    fn default() -> Self {
        IdleList {
            entries: Vec::new(),
        }
    }
}

impl<T> IdleList<T> {
    /// Keeps `conn`, idle since `now`, unless `cap` are kept already; then `conn` is given
    /// back for the caller to close.
    pub(crate) fn push(&mut self, conn: T, now: Instant, cap: usize) -> Result<(), T> {
        if self.entries.len() >= cap {
            return Err(conn);
        }
        self.entries.push((conn, now));
        Ok(())
    }

    /// The most recently idled connection that has been idle for less than `timeout`.
    /// Older ones are dropped (every entry below an expired one is older still).
    pub(crate) fn pop(&mut self, now: Instant, timeout: Duration) -> Option<T> {
        let (conn, since) = self.entries.pop()?;
        if now.saturating_duration_since(since) < timeout {
            return Some(conn);
        }
        self.entries.clear();
        None
    }

    /// Drops every connection idle for `timeout` or longer; returns how many went.
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) -> usize {
        // Entries are in idle order, oldest first.
        let keep_from = self
            .entries
            .iter()
            .position(|(_, since)| now.saturating_duration_since(*since) < timeout)
            .unwrap_or(self.entries.len());
        self.entries.drain(..keep_from).count()
    }

    /// Connections kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TIMEOUT: Duration = Duration::from_secs(90);

    #[test]
    fn newest_first_and_capped() {
        let t0 = Instant::now();
        let mut list = IdleList::default();
        assert_eq!(list.push(1, t0, 2), Ok(()));
        assert_eq!(list.push(2, t0 + Duration::from_secs(1), 2), Ok(()));
        assert_eq!(list.push(3, t0, 2), Err(3));
        assert_eq!(list.pop(t0 + Duration::from_secs(2), TIMEOUT), Some(2));
        assert_eq!(list.pop(t0 + Duration::from_secs(2), TIMEOUT), Some(1));
        assert_eq!(list.pop(t0, TIMEOUT), None);
    }

    #[test]
    fn expired_connections_are_never_handed_out() {
        let t0 = Instant::now();
        let mut list = IdleList::default();
        list.push("old", t0, 8).unwrap();
        list.push("new", t0 + Duration::from_secs(60), 8).unwrap();
        // At 100 s: "new" has been idle 40 s, "old" 100 s.
        let now = t0 + Duration::from_secs(100);
        assert_eq!(list.expire(now, TIMEOUT), 1);
        assert_eq!(list.len(), 1);
        assert_eq!(list.pop(now, TIMEOUT), Some("new"));

        list.push("a", t0, 8).unwrap();
        list.push("b", t0, 8).unwrap();
        assert_eq!(list.pop(t0 + TIMEOUT, TIMEOUT), None);
        assert!(
            list.is_empty(),
            "everything older than the expired one goes too"
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push,
        Pop,
        Expire,
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Push),
            3 => Just(Op::Pop),
            1 => Just(Op::Expire),
            2 => (0u64..60).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// Against a model that remembers every connection's idle time: a handed-out
        /// connection is always the newest unexpired one, none is ever handed out twice,
        /// and the list never holds more than the cap.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec(op(), 1..200), cap in 1usize..6) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut list = IdleList::default();
            let mut model: Vec<(u32, Instant)> = Vec::new();
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Push => {
                        next += 1;
                        let kept = list.push(next, now, cap).is_ok();
                        prop_assert_eq!(kept, model.len() < cap);
                        if kept {
                            model.push((next, now));
                        }
                    }
                    Op::Pop => {
                        let got = list.pop(now, TIMEOUT);
                        let want = match model.pop() {
                            Some((id, since)) if now - since < TIMEOUT => Some(id),
                            Some(_) => {
                                model.clear();
                                None
                            }
                            None => None,
                        };
                        prop_assert_eq!(got, want);
                    }
                    Op::Expire => {
                        let before = model.len();
                        model.retain(|(_, since)| now - *since < TIMEOUT);
                        prop_assert_eq!(list.expire(now, TIMEOUT), before - model.len());
                    }
                    Op::Wait(secs) => now += Duration::from_secs(secs),
                }
                prop_assert_eq!(list.len(), model.len());
                prop_assert!(list.len() <= cap);
            }
        }
    }
}
