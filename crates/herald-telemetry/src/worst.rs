//! The N endpoints with the oldest undelivered events, as a bounded set of
//! per-endpoint series: `herald_endpoint_oldest_event_age_seconds`.
//!
//! Dispatcher workers report their own partition's worst lanes; `/metrics`
//! renders the node-wide top N at scrape time, so an endpoint that recovers
//! simply stops appearing (no stale series, at most N of them).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use crate::names::ENDPOINT_OLDEST_EVENT_AGE;

/// Per partition: (endpoint id, oldest event's publish time in unix ms).
type Board = HashMap<i32, Vec<(String, i64)>>;

/// Shared board of the worst endpoints per partition. Cheap to clone.
#[derive(Clone, Default)]
pub struct Worst {
    n: usize,
    by_partition: Arc<Mutex<Board>>,
}

impl Worst {
    /// A board that renders at most `n` endpoints (0 renders none).
    pub fn new(n: usize) -> Self {
        Self {
            n,
            by_partition: Arc::default(),
        }
    }

    /// How many endpoints a partition should report.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Replaces `partition`'s report: (endpoint id, oldest event's publish
    /// time in unix ms), any order.
    pub fn report(&self, partition: i32, worst: Vec<(String, i64)>) {
        let mut map = self.by_partition.lock().expect("worst lock");
        if worst.is_empty() {
            map.remove(&partition);
        } else {
            map.insert(partition, worst);
        }
    }

    /// The node-wide top N at `now_ms`, oldest first: (endpoint, age seconds).
    pub fn top(&self, now_ms: i64) -> Vec<(String, f64)> {
        let map = self.by_partition.lock().expect("worst lock");
        let mut all: Vec<&(String, i64)> = map.values().flatten().collect();
        all.sort_by_key(|(id, created)| (*created, id.clone()));
        all.into_iter()
            .take(self.n)
            .map(|(id, created)| (id.clone(), (now_ms - created).max(0) as f64 / 1000.0))
            .collect()
    }

    /// Prometheus text for the top N (empty when there is nothing to show).
    pub fn render(&self, now_ms: i64) -> String {
        let top = self.top(now_ms);
        if top.is_empty() {
            return String::new();
        }
        let mut out = format!(
            "# HELP {ENDPOINT_OLDEST_EVENT_AGE} Age of the oldest undelivered event of the {} endpoints with the oldest ones\n# TYPE {ENDPOINT_OLDEST_EVENT_AGE} gauge\n",
            self.n
        );
        for (id, age) in top {
            let id = id.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "{ENDPOINT_OLDEST_EVENT_AGE}{{endpoint_id=\"{id}\"}} {age}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_node_wide_top_n() {
        let w = Worst::new(2);
        w.report(0, vec![("a".into(), 1_000), ("b".into(), 5_000)]);
        w.report(1, vec![("c".into(), 2_000)]);
        assert_eq!(
            w.top(11_000),
            vec![("a".to_string(), 10.0), ("c".to_string(), 9.0)]
        );
        let text = w.render(11_000);
        assert!(
            text.contains("herald_endpoint_oldest_event_age_seconds{endpoint_id=\"a\"} 10"),
            "{text}"
        );
        assert!(!text.contains("\"b\""), "{text}");
        w.report(0, vec![]);
        w.report(1, vec![]);
        assert_eq!(w.render(11_000), "");
    }
}
