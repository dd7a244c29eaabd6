//! The endpoint registry: a compacted Kafka topic (key = endpoint id, value =
//! `EndpointRecord`, tombstone = deleted) that every node reads from the
//! start and keeps in memory. No other database exists.
//!
//! # Layout
//! - [`store`]: the in-memory view ([`Registry`]) with read-your-writes waits.
//! - [`event_types`]: the event type catalogue's records (same topic).
//! - [`materialise`]: the consumer that applies the topic to the view.
//! - [`ops`]: operational events about endpoints (ops topic, operator webhook).
//! - [`writer`]: writes (put/delete) that return once this node sees them.
//! - [`sealing`]: secrets at rest (AES-256-GCM under a master key ring).
//! - [`keys`]: loading master keys from files or the environment.
#![forbid(unsafe_code)]

pub mod event_types;
pub mod keys;
pub mod materialise;
pub mod ops;
pub mod sealing;
pub mod store;
pub mod writer;

pub use event_types::StoredEventType;
pub use materialise::run_materialiser;
pub use ops::Ops;
pub use sealing::KeyRing;
pub use store::{Lookup, Registry};
pub use writer::{RegistryWriter, WriteError};
