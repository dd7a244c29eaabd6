//! Event and endpoint identifiers.
//!
//! Event ids are `msg_` + a UUIDv7 (time-ordered, so ids sort roughly by
//! publish time). An idempotent publish derives its id from the endpoint and
//! the idempotency key, so retrying a publish yields the same `webhook-id`
//! and receivers de-duplicate it even if it was written twice.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Longest id Herald accepts for events and endpoints.
pub const MAX_ID_LEN: usize = 128;

/// A new random, time-ordered event id.
pub fn new_event_id() -> String {
    prefixed_v7("msg_")
}

/// A new random endpoint id.
pub fn new_endpoint_id() -> String {
    prefixed_v7("ep_")
}

/// `prefix` + a new UUIDv7 in lower-case hex. Written straight into the
/// string: ingest makes one per event, and `format!` cost twice the UUID.
fn prefixed_v7(prefix: &str) -> String {
    let mut hex = [0u8; uuid::fmt::Simple::LENGTH];
    let hex = uuid::Uuid::now_v7().simple().encode_lower(&mut hex);
    let mut id = String::with_capacity(prefix.len() + hex.len());
    id.push_str(prefix);
    id.push_str(hex);
    id
}

/// The event id for a publish carrying an idempotency key: the same endpoint
/// and key always give the same id.
pub fn idempotent_event_id(endpoint_id: &str, idempotency_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(endpoint_id.as_bytes());
    h.update([0u8]);
    h.update(idempotency_key.as_bytes());
    let digest = h.finalize();
    format!("msg_{}", URL_SAFE_NO_PAD.encode(&digest[..18]))
}

/// The idempotency key as Herald remembers it: scoped to the caller (an
/// API token's name, which has no control characters), so two callers'
/// equal keys never name the same event. Without a caller (authentication
/// off) it is the key itself, as before callers existed.
pub fn scoped_idempotency_key(caller: &str, key: &str) -> String {
    if caller.is_empty() {
        key.to_string()
    } else {
        format!("{caller}\u{0}{key}")
    }
}

/// The attempts-topic partition of every attempt of `message_id` (a
/// fan-out's message id, or a direct event's id) among `partitions`: the
/// first four bytes of its SHA-256, modulo the count. The dispatcher writes
/// there and `ListAttempts` by message id reads only there.
pub fn attempt_partition(message_id: &str, partitions: usize) -> i32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(message_id.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    (n % partitions.max(1) as u32) as i32
}

/// Prefix of a batched request's `webhook-id`.
pub const BATCH_ID_PREFIX: &str = "batch_";

/// The `webhook-id` of a batched request: `batch_` + 32 hex digits of the
/// SHA-256 of its event ids, in order. The same events give the same id, so
/// a batch retried whole keeps its id and a receiver can de-duplicate it.
pub fn batch_id<'a>(event_ids: impl IntoIterator<Item = &'a str>) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let mut h = Sha256::new();
    for id in event_ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(BATCH_ID_PREFIX.len() + 32);
    out.push_str(BATCH_ID_PREFIX);
    for b in &digest[..16] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Whether `id` is a well-formed id: 1..=128 chars of `[A-Za-z0-9._-]`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_id_depends_on_its_events_in_order() {
        let a = batch_id(["e1", "e2"]);
        assert!(a.starts_with("batch_") && a.len() == 6 + 32, "{a}");
        assert_eq!(a, batch_id(["e1", "e2"]));
        assert_ne!(a, batch_id(["e2", "e1"]));
        assert_ne!(a, batch_id(["e1", "e2", "e3"]));
        assert_ne!(
            batch_id(["e1e", "2"]),
            batch_id(["e1", "e2"]),
            "ids are delimited"
        );
    }

    #[test]
    fn idempotency_keys_are_scoped_per_caller() {
        let a = idempotent_event_id("ep", &scoped_idempotency_key("billing", "k1"));
        let b = idempotent_event_id("ep", &scoped_idempotency_key("crm", "k1"));
        let anon = idempotent_event_id("ep", &scoped_idempotency_key("", "k1"));
        assert_ne!(a, b);
        assert_ne!(a, anon);
        assert_eq!(
            anon,
            idempotent_event_id("ep", "k1"),
            "unchanged without a caller"
        );
        // No caller/key split collides with another.
        assert_ne!(
            scoped_idempotency_key("a", "b\u{0}c"),
            scoped_idempotency_key("a\u{0}b", "c").replace('\u{0}', "|")
        );
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = new_event_id();
        let b = new_event_id();
        assert_ne!(a, b);
        assert!(is_valid_id(&a) && is_valid_id(&b));
        assert!(is_valid_id(&new_endpoint_id()));
        // `msg_` / `ep_` + the UUID's 32 lower-case hex digits, which parse
        // back to a version-7 UUID.
        for (id, prefix) in [(a, "msg_"), (new_endpoint_id(), "ep_")] {
            let hex = id.strip_prefix(prefix).expect("prefixed");
            assert_eq!(hex.len(), 32, "{id}");
            assert!(
                hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{id}"
            );
            let parsed = uuid::Uuid::parse_str(hex).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 7, "{id}");
        }
    }

    #[test]
    fn idempotent_ids_depend_on_endpoint_and_key() {
        let a = idempotent_event_id("ep1", "k");
        assert_eq!(a, idempotent_event_id("ep1", "k"));
        assert_ne!(a, idempotent_event_id("ep2", "k"));
        assert_ne!(a, idempotent_event_id("ep1", "k2"));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(
            idempotent_event_id("ab", "c"),
            idempotent_event_id("a", "bc")
        );
        assert!(is_valid_id(&a));
    }

    #[test]
    fn id_validation() {
        assert!(is_valid_id("ep_1.a-b"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("has space"));
        assert!(!is_valid_id("slash/"));
        assert!(!is_valid_id(&"x".repeat(129)));
    }
}
