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
//! - [`faulty`]: endpoints that fail below HTTP: [`DeadEndpoint`] (connection
//!   refused) and [`StallingReceiver`] (answers late, or never).
//!
//! This crate does not depend on the `herald` binary crate (so that crate's
//! own tests can use it); starting a node is left to the tests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod faulty;
pub mod fixtures;
pub mod http;
pub mod receiver;

pub use faulty::{DeadEndpoint, Stall, StallingReceiver};
pub use receiver::{first_arrivals, Policy, Recorded, Reply, TestReceiver, WaitTimeout};
