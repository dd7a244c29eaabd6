//! Per-endpoint rate limits and endpoint health (issue 4), end to end, as one
//! test binary: every test runs a real Kafka-protocol broker in its own
//! process (`herald-it-node mock-broker`), real HTTP receivers on port 0
//! ([`herald_testkit::TestReceiver`]), and Herald either in the test process
//! (one node with ingest and dispatcher, [`support::health::Cluster`]) or, for
//! the cluster-wide rate limit and the delivery-time SSRF refusal, as
//! dispatcher processes of the shared harness
//! ([`support::cluster::ProcessCluster`] on [`support::fleet::Fleet`]).
//!
//! - `rate_limits`: limits across two dispatchers, the default limit,
//!   `Retry-After` honoured and capped.
//! - `egress`: the SSRF guard at delivery time and at create/update time.
//! - `circuit_breaker`: the breaker and operator webhooks.
//! - `disable`: `410 Gone`, manual disabling, auto-disabling, re-enabling in
//!   order.

#[path = "../support/mod.rs"]
mod support;

mod circuit_breaker;
mod disable;
mod egress;
mod rate_limits;
