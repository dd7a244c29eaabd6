//! A bounded cache of recent `(endpoint, idempotency key)` → publish result.
//!
//! A publish carrying a key always gets the same event id (derived from the
//! key), so even a duplicate that misses this cache (another node, evicted)
//! reaches receivers with the same `webhook-id`. The cache only saves the
//! second Kafka write in the common case of a client retrying on one node.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use herald_proto::v1::PublishResponse;

/// Remembers the most recent `capacity` keyed publishes (oldest evicted first).
pub struct IdempotencyCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<(String, String), PublishResponse>,
    order: VecDeque<(String, String)>,
}

impl IdempotencyCache {
    /// A cache holding at most `capacity` entries (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The earlier result for this key, if remembered.
    pub fn get(&self, endpoint: &str, key: &str) -> Option<PublishResponse> {
        let inner = self.inner.lock().expect("idempotency lock");
        inner
            .map
            .get(&(endpoint.to_string(), key.to_string()))
            .cloned()
    }

    /// Remembers a result.
    pub fn put(&self, endpoint: &str, key: &str, resp: PublishResponse) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().expect("idempotency lock");
        let k = (endpoint.to_string(), key.to_string());
        if inner.map.insert(k.clone(), resp).is_none() {
            inner.order.push_back(k);
        }
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.map.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(offset: i64) -> PublishResponse {
        PublishResponse {
            event_id: format!("e{offset}"),
            partition: 0,
            offset,
            duplicate: false,
            ..Default::default()
        }
    }

    #[test]
    fn remembers_and_evicts_oldest() {
        let c = IdempotencyCache::new(2);
        c.put("ep", "a", resp(1));
        c.put("ep", "b", resp(2));
        assert_eq!(c.get("ep", "a").unwrap().offset, 1);
        assert!(c.get("other", "a").is_none());
        c.put("ep", "c", resp(3));
        assert!(c.get("ep", "a").is_none());
        assert_eq!(c.get("ep", "c").unwrap().offset, 3);
    }

    #[test]
    fn zero_capacity_disables() {
        let c = IdempotencyCache::new(0);
        c.put("ep", "a", resp(1));
        assert!(c.get("ep", "a").is_none());
    }
}
