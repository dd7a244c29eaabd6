//! Test helpers for Herald's integration tests: real components only.
//!
//! # Layout
//!
//! - [`receiver`]: [`TestReceiver`], a recording HTTP server hosting many
//!   webhook endpoints (one per path) with a test-chosen answer [`Policy`],
//!   and event-driven waiting ([`TestReceiver::wait_for`]).
//! - [`fixtures`]: a fast test [`herald_core::Config`] and the in-process
//!   Kafka-protocol broker ([`herald_kafka::DevBroker`]) wired into it.
//! - [`http`]: a one-shot HTTP client (for `/metrics`, `/readyz`).
//!
//! This crate does not depend on the `herald` binary crate (so that crate's
//! own tests can use it); starting a node is left to the tests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod fixtures;
pub mod http;
pub mod receiver;

pub use receiver::{first_arrivals, Policy, Recorded, Reply, TestReceiver, WaitTimeout};
