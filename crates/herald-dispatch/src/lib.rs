//! The dispatcher: consumes the events topic in a consumer group and delivers
//! each event to its endpoint, keeping per-endpoint order.
//!
//! # Layout
//! - [`offsets`]: per-partition offset tracker and commit metadata (pure).
//! - [`lanes`]: per-endpoint FIFO lanes and their in-flight limits (pure).
//! - [`endpoint`]: an endpoint prepared for delivery (parsed URL, signer, headers).
//! - [`attempt`]: one delivery attempt and its classification.
//! - [`worker`]: the task that owns one assigned partition.
//! - [`consumer`]: the consumer group, rebalances and the record router.
#![forbid(unsafe_code)]

pub mod attempt;
pub mod consumer;
pub mod endpoint;
pub mod lanes;
pub mod offsets;
pub mod worker;

pub use consumer::{run_dispatcher, DispatchSettings};
