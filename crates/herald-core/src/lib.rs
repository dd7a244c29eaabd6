//! Herald's domain: identifiers, validation of what users send, configuration,
//! and the retry policy. Pure logic only — no sockets, no Kafka, no clocks
//! beyond [`time::now_ms`].
//!
//! # Layout
//! - [`ids`]: event and endpoint identifiers (generated, idempotent, validated).
//! - [`validate`]: checks on publish requests and endpoint fields; every error
//!   names the offending field.
//! - [`endpoint`]: the endpoint model the dispatcher works with.
//! - [`config`]: typed, layered configuration (defaults → file → env → flags).
//! - [`retry`]: whether an attempt's result is success, retryable or final.
//! - [`breaker`]: the per-endpoint circuit breaker (closed, open, half-open).
//! - [`schedule`]: how long to wait before the next attempt, or when to give up.
//! - [`delay`]: the tiers scheduled events wait in until they are due.
//! - [`egress`]: which network addresses deliveries may reach (SSRF rules).
//! - [`duration`]: human-friendly durations (`5s`, `2h`) in configuration.
//! - [`text`]: bounds on text others control (receiver errors, record keys).
#![forbid(unsafe_code)]

pub mod breaker;
pub mod config;
pub mod delay;
pub mod duration;
pub mod egress;
pub mod endpoint;
pub mod ids;
pub mod retry;
pub mod schedule;
pub mod subscription;
pub mod text;
pub mod time;
pub mod validate;

pub use config::Config;
pub use endpoint::Endpoint;
pub use subscription::{Subscription, DEFAULT_APP};
