//! Fan-out arithmetic: deterministic per-endpoint event ids, and splitting
//! the target endpoints of one message into chunks small enough to write
//! (one Kafka transaction or produce flush per chunk).
//!
//! It does not choose the targets (see [`crate::pattern`]) nor write them.
//!
//! # Ids
//!
//! A fanned-out message has one publisher-visible *message id* and one
//! *event id* per target endpoint (the receiver's `webhook-id`). The event id
//! is a pure function of the two ([`fanout_event_id`]), so a fan-out retried
//! with the same idempotency key — hence the same message id, see
//! [`idempotent_message_id`] — writes records with the same ids, so a
//! receiver sees each endpoint's copies under one `webhook-id` and can drop
//! them (Herald's dispatcher does not de-duplicate). That is why fan-out
//! needs no Kafka transaction spanning every chunk.
//!
//! Event ids are `evf_` + 32 hex digits (the first 128 bits of SHA-256 over
//! a domain tag and the length-prefixed message id and endpoint id, so no two
//! different pairs share an encoding). Ingest must refuse caller-chosen event
//! ids that start with [`FANOUT_ID_PREFIX`] ([`is_fanout_event_id`]), so a
//! caller's id can never collide with a derived one.
//!
//! # Chunks
//!
//! [`plan_chunks`] splits the targets, in order, into consecutive chunks of
//! at most [`ChunkLimits::max_records`] records whose estimated sizes add up
//! to at most [`ChunkLimits::max_bytes`]. The caller's estimate for a record
//! must include its key, value, headers and per-record overhead (about 70
//! bytes in Kafka's record batch format v2). Keep `max_bytes` under the
//! broker's `message.max.bytes` and the producer's `max.request.size` (both
//! about 1 MiB by default) minus the batch header: the default,
//! [`ChunkLimits::DEFAULT`], is 500 records and 900 000 bytes. A single
//! record larger than `max_bytes` cannot be written at all and is an error
//! naming its endpoint. The plan is greedy, so it has as few chunks as any
//! order-preserving split can.

use std::fmt::Write as _;
use std::ops::Range;

use sha2::{Digest, Sha256};

/// Prefix of every derived per-endpoint event id.
pub const FANOUT_ID_PREFIX: &str = "evf_";
/// Prefix of message ids derived from an idempotency key.
pub const MESSAGE_ID_PREFIX: &str = "msg_";
/// Hex digits of hash in a derived id (128 bits).
const ID_HEX_DIGITS: usize = 32;

fn hash_parts(tag: &[u8], parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(tag);
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(ID_HEX_DIGITS);
    for byte in &digest[..ID_HEX_DIGITS / 2] {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The event id of `message_id`'s record for `endpoint_id`: the same inputs
/// always give the same id, different ones (practically) never do.
pub fn fanout_event_id(message_id: &str, endpoint_id: &str) -> String {
    format!(
        "{FANOUT_ID_PREFIX}{}",
        hash_parts(b"herald.fanout.event.v1", &[message_id, endpoint_id])
    )
}

/// Whether `id` is in the derived fan-out id namespace (ingest refuses such
/// ids from callers).
pub fn is_fanout_event_id(id: &str) -> bool {
    id.starts_with(FANOUT_ID_PREFIX)
}

/// The message id of a fan-out publish carrying an idempotency key, scoped
/// to its application (and caller, if the key was scoped to one before):
/// the same application and key always give the same message id.
pub fn idempotent_message_id(app_id: &str, idempotency_key: &str) -> String {
    format!(
        "{MESSAGE_ID_PREFIX}{}",
        hash_parts(b"herald.fanout.message.v1", &[app_id, idempotency_key])
    )
}

/// Bounds on one chunk of fan-out records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Most records in a chunk (at least 1).
    pub max_records: usize,
    /// Most estimated bytes in a chunk (at least 1).
    pub max_bytes: usize,
}

impl ChunkLimits {
    /// 500 records, 900 000 bytes: under Kafka's default 1 MiB request and
    /// message limits with room for batch headers.
    pub const DEFAULT: ChunkLimits = ChunkLimits {
        max_records: 500,
        max_bytes: 900_000,
    };
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why targets could not be chunked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk limits must be positive: max_records {max_records}, max_bytes {max_bytes}")]
    InvalidLimits {
        max_records: usize,
        max_bytes: usize,
    },
    #[error(
        "the record for endpoint {endpoint_id:?} (target {index}) is estimated \
         at {bytes} bytes, more than the {max_bytes} bytes a chunk may hold; \
         shrink the payload"
    )]
    RecordTooLarge {
        index: usize,
        endpoint_id: String,
        bytes: usize,
        max_bytes: usize,
    },
}

/// One fan-out target as the planner sees it.
pub trait ChunkItem {
    /// The endpoint the record goes to (named in errors).
    fn endpoint_id(&self) -> &str;
    /// The record's estimated size in bytes, overhead included.
    fn estimated_bytes(&self) -> usize;
}

impl<S: AsRef<str>> ChunkItem for (S, usize) {
    fn endpoint_id(&self) -> &str {
        self.0.as_ref()
    }
    fn estimated_bytes(&self) -> usize {
        self.1
    }
}

/// Splits `targets` into consecutive, order-preserving chunks within
/// `limits`, as index ranges into `targets`. Every target is in exactly one
/// chunk; no chunk is empty; no input gives no chunks.
pub fn plan_chunks<T: ChunkItem>(
    targets: &[T],
    limits: ChunkLimits,
) -> Result<Vec<Range<usize>>, ChunkError> {
    if limits.max_records == 0 || limits.max_bytes == 0 {
        return Err(ChunkError::InvalidLimits {
            max_records: limits.max_records,
            max_bytes: limits.max_bytes,
        });
    }
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (index, target) in targets.iter().enumerate() {
        let size = target.estimated_bytes();
        if size > limits.max_bytes {
            return Err(ChunkError::RecordTooLarge {
                index,
                endpoint_id: target.endpoint_id().to_owned(),
                bytes: size,
                max_bytes: limits.max_bytes,
            });
        }
        let within = bytes
            .checked_add(size)
            .filter(|total| *total <= limits.max_bytes);
        match within {
            Some(total) if index - start < limits.max_records => bytes = total,
            _ => {
                chunks.push(start..index);
                start = index;
                bytes = size;
            }
        }
    }
    if start < targets.len() {
        chunks.push(start..targets.len());
    }
    Ok(chunks)
}

#[cfg(test)]
#[path = "fanout_tests.rs"]
mod tests;
