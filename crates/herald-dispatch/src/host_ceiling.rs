//! A node-wide ceiling on requests per second to one destination
//! (`host:port`), over every endpoint that points there: per-endpoint rate
//! limits are set by endpoint owners, so without it a thousand endpoints at
//! one third-party URL could make Herald hit that host a thousand times as
//! hard. Waiting here only delays the endpoints of that host.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use herald_core::time::now_ms;

/// How often idle hosts are forgotten, so the map does not grow forever.
const FORGET_EVERY_MS: i64 = 60_000;

/// The per-host limiter of one node, on clock `C` (the real one outside tests).
pub struct HostCeiling<C: Clock = DefaultClock> {
    limiter: RateLimiter<String, HashMapStateStore<String>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    last_forget_ms: AtomicI64,
}

impl HostCeiling {
    /// A ceiling of `per_second` requests per host; `None` when 0 (off).
    pub fn new(per_second: u32) -> Option<Self> {
        Self::with_clock(per_second, DefaultClock::default())
    }
}

impl<C: Clock + Clone> HostCeiling<C> {
    /// [`HostCeiling::new`] on `clock`.
    pub fn with_clock(per_second: u32, clock: C) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        Some(Self {
            limiter: RateLimiter::hashmap_with_clock(Quota::per_second(rate), clock.clone()),
            clock,
            last_forget_ms: AtomicI64::new(now_ms()),
        })
    }
}

impl HostCeiling {
    /// The key of `uri`: its `host:port`, lower-cased, default port filled in.
    pub fn key(uri: &http::Uri) -> String {
        let host = uri.host().unwrap_or("").to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        format!("{host}:{port}")
    }
}

impl<C: Clock + Clone> HostCeiling<C> {
    /// How long a request to `key` must wait now (zero: go), taking a slot
    /// when it may go.
    pub fn check(&self, key: &str) -> Duration {
        self.forget_idle();
        match self.limiter.check_key(&key.to_string()) {
            Ok(()) => Duration::ZERO,
            Err(not_until) => not_until
                .wait_time_from(self.clock.now())
                .max(Duration::from_millis(1)),
        }
    }

    /// Waits until a request to `key` may go.
    pub async fn acquire(&self, key: &str) {
        let mut waited = false;
        loop {
            let wait = self.check(key);
            if wait.is_zero() {
                return;
            }
            if !waited {
                metrics::counter!(herald_telemetry::names::HOST_CEILING_WAITS).increment(1);
                waited = true;
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn forget_idle(&self) {
        let now = now_ms();
        let last = self.last_forget_ms.load(Ordering::Relaxed);
        if now - last >= FORGET_EVERY_MS
            && self
                .last_forget_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_host_and_port() {
        let k = |u: &str| HostCeiling::key(&u.parse().unwrap());
        assert_eq!(k("https://API.example.com/a"), "api.example.com:443");
        assert_eq!(k("http://example.com/b"), "example.com:80");
        assert_eq!(k("http://example.com:8080/c"), "example.com:8080");
        assert_eq!(k("http://[::1]:9/"), "[::1]:9");
    }

    #[test]
    fn one_host_is_capped_others_are_not() {
        assert!(HostCeiling::new(0).is_none());
        let c = HostCeiling::new(1).unwrap();
        assert_eq!(c.check("a:80"), Duration::ZERO);
        assert!(
            c.check("a:80") > Duration::ZERO,
            "the second request to a:80 waits"
        );
        assert_eq!(
            c.check("b:80"),
            Duration::ZERO,
            "another host has its own budget"
        );
    }
}
