//! The two hashes of an idempotent publish: the key's scope (who published,
//! to what, with which key) and the request (what was asked for), so the
//! same key with another payload can be told apart from a retry.

use sha2::{Digest, Sha256};

use super::ledger::{Key, RequestHash};

/// Where a key applies: one endpoint, or one application's fan-out.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A publish to one endpoint.
    Endpoint(&'a str),
    /// A fan-out to an application's subscribed endpoints.
    App(&'a str),
}

fn update_part(h: &mut Sha256, part: &[u8]) {
    h.update((part.len() as u64).to_be_bytes());
    h.update(part);
}

/// The key's scope: `caller` (API token name, empty without
/// authentication), the target, and the idempotency key.
pub fn key(caller: &str, target: Target<'_>, idempotency_key: &str) -> Key {
    let mut h = Sha256::new();
    h.update(b"herald.idempotency.key.v1");
    update_part(&mut h, caller.as_bytes());
    match target {
        Target::Endpoint(id) => {
            update_part(&mut h, b"endpoint");
            update_part(&mut h, id.as_bytes());
        }
        Target::App(id) => {
            update_part(&mut h, b"app");
            update_part(&mut h, id.as_bytes());
        }
    }
    update_part(&mut h, idempotency_key.as_bytes());
    h.finalize().into()
}

/// What a publish asks for: its type, payload, caller-chosen event id (empty
/// when none), channels (in order) and schedule (`deliver_at_ms`,
/// `delay_ms` as sent).
pub fn request(
    event_type: &str,
    payload: &str,
    event_id: &str,
    channels: &[String],
    schedule: (i64, u64),
) -> RequestHash {
    let mut h = Sha256::new();
    h.update(b"herald.idempotency.request.v1");
    h.update(schedule.0.to_be_bytes());
    h.update(schedule.1.to_be_bytes());
    update_part(&mut h, event_type.as_bytes());
    update_part(&mut h, payload.as_bytes());
    update_part(&mut h, event_id.as_bytes());
    h.update((channels.len() as u64).to_be_bytes());
    for c in channels {
        update_part(&mut h, c.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cannot_run_into_each_other() {
        // Length prefixes: moving bytes between fields changes the hash.
        assert_ne!(
            key("ab", Target::Endpoint("c"), "k"),
            key("a", Target::Endpoint("bc"), "k")
        );
        assert_ne!(
            key("", Target::Endpoint("x"), "k"),
            key("", Target::App("x"), "k")
        );
        assert_ne!(
            request("a", "{}", "", &[], (0, 0)),
            request("a", "{}", "", &["".into()], (0, 0))
        );
        assert_ne!(
            request("a.b", "{}", "", &[], (0, 0)),
            request("a", ".b{}", "", &[], (0, 0))
        );
        assert_ne!(
            request("t", "{}", "", &[], (0, 5)),
            request("t", "{}", "", &[], (5, 0))
        );
        assert_eq!(
            request("t", "{\"a\":1}", "", &["c".into()], (0, 0)),
            request("t", "{\"a\":1}", "", &["c".into()], (0, 0))
        );
    }
}
