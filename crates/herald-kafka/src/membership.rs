//! A group member's identity as the coordinator last gave it (member id and
//! generation), and the one decision built on it: may a partition that was
//! revoked and then assigned back be resumed with the state kept in memory?
//!
//! Under the eager protocol a member that keeps its member id and is given
//! a partition in generation `g + 1` after owning it in generation `g` knows
//! that nobody else owned it in between: partitions are owned per
//! generation, and no generation lies between `g` and `g + 1`. Any other
//! pair (a new member id after the coordinator forgot the member, a skipped
//! generation because the member was out of the group while others
//! rebalanced, a broker that lost its group state) may hide another owner,
//! who delivered, wrote retries and committed past what the memory holds.
//! Then the memory is stale and must be dropped: starting again from the
//! committed offsets costs re-sends, never order.
//!
//! rust-rdkafka exposes neither the generation nor the member id, so
//! [`Membership::of`] reads them through librdkafka's C API; it is the only
//! `unsafe` code in Herald.

use std::ffi::CStr;

use rdkafka::bindings as ffi;
use rdkafka::consumer::{Consumer, ConsumerContext};

/// Who this consumer is in its group, per the last join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The member id the coordinator assigned.
    pub member_id: String,
    /// The generation of the group this member joined last (`-1` while
    /// librdkafka knows the member left the group).
    pub generation: i32,
}

impl Membership {
    /// Reads the consumer's current member id and generation. `None` when it
    /// is not in a group (no `group.id`, or not joined yet).
    ///
    /// Blocks until librdkafka's main thread answers: call it from the
    /// rebalance callbacks or a polling thread, never from librdkafka's own
    /// threads.
    pub fn of<C: ConsumerContext, K: Consumer<C>>(consumer: &K) -> Option<Membership> {
        read(consumer.client().native_ptr())
    }

    /// Whether a partition owned under `self` and assigned again under
    /// `next` can have had no other owner in between: the same member, and
    /// the very next generation.
    pub fn directly_followed_by(&self, next: &Membership) -> bool {
        self.generation >= 0
            && !self.member_id.is_empty()
            && self.member_id == next.member_id
            && self.generation.checked_add(1) == Some(next.generation)
    }
}

/// Whether the partitions owned under `owned` may resume in place when they
/// are assigned under `now`. Unknown identities never resume.
pub fn may_resume(owned: Option<&Membership>, now: Option<&Membership>) -> bool {
    match (owned, now) {
        (Some(owned), Some(now)) => owned.directly_followed_by(now),
        _ => false,
    }
}

#[allow(unsafe_code)]
fn read(rk: *mut ffi::rd_kafka_t) -> Option<Membership> {
    if rk.is_null() {
        return None;
    }
    // SAFETY: `rk` is the live client handle of a consumer borrowed for the
    // duration of this call. `rd_kafka_consumer_group_metadata` returns a
    // new object owned by the caller (or NULL when the handle has no group
    // or no member id yet); the member id string it hands out lives as long
    // as that object, so it is copied before the object is destroyed, once.
    unsafe {
        let md = ffi::rd_kafka_consumer_group_metadata(rk);
        if md.is_null() {
            return None;
        }
        let generation = ffi::rd_kafka_consumer_group_metadata_generation_id(md);
        let member = ffi::rd_kafka_consumer_group_metadata_member_id(md);
        let member_id = if member.is_null() {
            String::new()
        } else {
            CStr::from_ptr(member).to_string_lossy().into_owned()
        };
        ffi::rd_kafka_consumer_group_metadata_destroy(md);
        Some(Membership {
            member_id,
            generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(member: &str, generation: i32) -> Membership {
        Membership {
            member_id: member.into(),
            generation,
        }
    }

    #[test]
    fn only_the_same_member_in_the_next_generation_resumes() {
        assert!(may_resume(Some(&m("a", 4)), Some(&m("a", 5))));
        // Skipped a generation: someone else may have owned the partition.
        assert!(!may_resume(Some(&m("a", 4)), Some(&m("a", 6))));
        // Same generation, or older (a broker that lost its group state).
        assert!(!may_resume(Some(&m("a", 4)), Some(&m("a", 4))));
        assert!(!may_resume(Some(&m("a", 4)), Some(&m("a", 1))));
        // Forgotten by the coordinator: a new member id.
        assert!(!may_resume(Some(&m("a", 4)), Some(&m("b", 5))));
        // Unknown or left.
        assert!(!may_resume(None, Some(&m("a", 5))));
        assert!(!may_resume(Some(&m("a", 4)), None));
        assert!(!may_resume(Some(&m("a", -1)), Some(&m("a", 0))));
        assert!(!may_resume(Some(&m("", 4)), Some(&m("", 5))));
        assert!(!may_resume(
            Some(&m("a", i32::MAX)),
            Some(&m("a", i32::MIN))
        ));
    }
}
