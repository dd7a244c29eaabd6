//! Idempotent publishing across ingest nodes and restarts.
//!
//! A publish with an idempotency key claims the key in the idempotency topic
//! (`kafka.idempotency_topic`, one partition) before it writes any event,
//! and records the answer there once Kafka acknowledged the events. Every
//! ingest node reads the topic (what its retention keeps) into a [`ledger::Ledger`], so a retry on
//! any node, or after a restart, gets the original answer (`duplicate =
//! true`) for `kafka.idempotency_window`; the same key with another request
//! is refused (`FAILED_PRECONDITION`). Two nodes claiming one key at once
//! both read the topic back up to their own claim: the first claim in the
//! topic wins, the other waits for its answer.
//!
//! - [`ledger`]: the pure rules (which claim wins, when a key is free).
//! - [`claims`]: the topic's reader, and the wait for an answer.
//! - [`writer`]: batches the records that are ready into one Kafka record.
//! - [`records`]: the topic's record format (a lone record or a batch).
//! - [`scope`]: the key and request hashes.
//!
//! Bounds (docs/api.md#idempotency): a node remembers at most
//! `grpc.idempotency_cache_size` keys; a key forgotten or older than the
//! window is claimed afresh, and its events are written again with the
//! same derived ids (receivers see the same `webhook-id`). A node that dies
//! after its events were acknowledged but before its answer was, leaves a
//! claim that another node takes over once its lease has passed, writing
//! the events again under the same ids.

pub mod claims;
pub mod ledger;
pub mod records;
pub mod scope;
pub mod writer;

#[cfg(test)]
mod ledger_tests;

pub use claims::Claims;
