//! Settings of the delivery client: timeouts, response body cap, identity, pool, protocols,
//! the egress policy and the optional egress proxy.
//!
//! Owns only the values and their defaults; validation happens in [`crate::Deliverer::new`].

use std::time::Duration;

use http::Uri;

use crate::egress::EgressPolicy;

/// How the [`crate::Deliverer`] talks to endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Bound on establishing the TCP connection (per address tried). Default 5 s.
    pub connect_timeout: Duration,
    /// Bound on the whole attempt: connect, TLS, sending, response headers and the capped
    /// body read. Default 15 s.
    pub request_timeout: Duration,
    /// Response body bytes kept in [`crate::AttemptResult::body_snippet`]; reading stops
    /// there, so a huge or endless body costs at most this much. Default 4096.
    pub max_response_body: usize,
    /// `user-agent` header sent with every attempt. Default `Herald/<crate version>`.
    pub user_agent: String,
    /// Idle keep-alive HTTP/1 connections kept per origin (scheme, host and port). One
    /// idle for 90 s is not used again, and a sweep every 45 s closes it. Default 1024: enough for many ordered lanes sharing one receiver
    /// host without reconnect churn.
    pub pool_idle_per_host: usize,
    /// Offer HTTP/2 via ALPN on HTTPS (`h2`, then `http/1.1`). Plain `http://` always uses
    /// HTTP/1.1. Default true.
    pub http2: bool,
    /// Which addresses deliveries may connect to. Default: no allow-list, so loopback,
    /// private, link-local, unique-local, multicast, metadata and other non-public
    /// addresses are refused ([`crate::AttemptError::Refused`]).
    pub egress: EgressPolicy,
    /// An HTTP proxy (`http://[user:password@]host:port`) that every delivery goes through
    /// with `CONNECT`, for deployments with static egress addresses. The egress policy
    /// still applies to the target; the proxy's own address is trusted. Default none.
    pub proxy: Option<Uri>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_response_body: 4096,
            user_agent: format!("Herald/{}", env!("CARGO_PKG_VERSION")),
            pool_idle_per_host: 1024,
            http2: true,
            egress: EgressPolicy::default(),
            proxy: None,
        }
    }
}
