//! Herald's end-to-end tests live in this crate's `[[test]]` targets; this
//! library is empty.
//!
//! - `e2e.rs`: one node (ingest + dispatcher) in-process against librdkafka's
//!   mock cluster and a recording HTTP receiver: delivery, signatures and
//!   per-endpoint order at 2,000 events; the API's error codes; endpoint
//!   CRUD, custom headers and secret rotation; idempotent publish.
//! - `support/`: node start-up and gRPC helpers shared by the targets.
//!
//! Run with `cargo nextest run -p herald-it` (or `cargo test -p herald-it`).
