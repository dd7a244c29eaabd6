//! The dispatcher's guarantees end to end, against a Kafka-protocol broker
//! running in its own process (`herald-it-node mock-broker`):
//!
//! - per-endpoint order across failed attempts, in-memory retries, moves to
//!   the retry topic and `Retry-After` (and no loss for unordered endpoints);
//! - isolation: dead, hanging and slow endpoints never delay healthy ones on
//!   the same partitions, while buffered events stay under their caps;
//! - dead letters: exhausted and finally-refused events, and the ordered
//!   backlog behind them, land in the dead-letter topic, in order, with the
//!   documented headers.
//!
//! Each test writes its config and its children's logs to a run directory
//! under the system temp directory (printed at start, removed when the test
//! passes), runs the broker and one dispatcher as processes and ingest in the
//! test process, and uses real HTTP receivers on port 0. Waits are event-driven; [`support::GUARD`] only turns a hang
//! into a failure.
//!
//! Modules: `common` (the harness and helpers), `order`, `isolation`,
//! `dead_letters`.

#[path = "../support/mod.rs"]
mod support;

mod common;
mod dead_letters;
mod isolation;
mod order;
