//! End to end through real components: gRPC publish → Kafka (librdkafka's
//! in-process mock cluster, real protocol over TCP) → dispatcher → signed HTTP
//! POSTs to a real recording receiver on port 0.
//!
//! Each test starts its own broker and node and shuts the node down cleanly at
//! the end. Waits are event-driven (the receiver notifies on every request);
//! the 120 s guard only turns a hang into a failure.
//!
//! - `delivery`: 2,000 events over 20 endpoints, single and batched
//!   publishes, every one delivered signed and in order.
//! - `idle`: an idle dispatcher pauses fetching and still delivers every
//!   event published while it sleeps, also across a rebalance.
//! - `api`: named status codes for bad input, endpoint CRUD, idempotent
//!   publishes.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod delivery;
mod idle;
