//! The dispatcher: consumes the events topic in a consumer group and delivers
//! each event to its endpoint, keeping per-endpoint order.
//!
//! # Layout
//! - [`offsets`]: per-partition offset tracker and commit metadata (pure).
//! - [`lane`]: one endpoint's lane: order, in-flight count, where its backlog is (pure).
//! - [`rate`]: per-endpoint pacing (rate limit, adaptive slow-down, Retry-After).
//! - [`host_ceiling`]: the node-wide ceiling on requests per destination host.
//! - [`scanner`]: re-reading one endpoint's records from a retry partition.
//! - [`endpoint`]: an endpoint prepared for delivery (parsed URL, signer, headers, policy).
//! - [`attempt`]: one delivery attempt and its classification.
//! - [`attempt_log`]: every attempt written to the attempts topic.
//! - [`sink`]: writes to the retry and dead-letter topics.
//! - [`machine`]: the partition core, a state machine with no I/O: custody
//!   of every event, lanes, writes, scans, health decisions.
//! - [`worker`]: the task that owns one assigned partition (both topics): a
//!   thin shell that feeds the core and carries out its actions.
//! - [`group`]: consumer-group membership: rebalances, suspending and
//!   resuming workers, commit callbacks.
//! - [`settle`]: leaving and rejoining a consumer group that never settles.
//! - [`consumer`]: the dispatcher's run loop, the record router and commits.
//! - [`scheduler`]: moves scheduled events from the scheduled topic's tiers
//!   into the events topic when they are due.
#![forbid(unsafe_code)]

pub mod attempt;
pub mod attempt_log;
pub mod batch;
pub mod consumer;
pub mod endpoint;
pub mod group;
pub mod host_ceiling;
pub mod lane;
pub mod machine;
pub mod offsets;
pub mod rate;
pub mod scanner;
pub mod scheduler;
pub mod settle;
pub mod sink;
pub mod worker;

pub use consumer::{run_dispatcher, DispatchSettings};
