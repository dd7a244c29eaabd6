//! Tests of the offset tracker and its commit metadata: unit cases and
//! property tests (no commit past an unfinished offset, skip sets that
//! hold only finished offsets, hand-overs that carry them forward).

use super::*;
use proptest::prelude::*;

#[test]
fn commits_lowest_unfinished() {
    let mut t = OffsetTracker::new(Some(10));
    assert_eq!(t.committable(), Some(10));
    for o in 10..15 {
        t.received(o);
    }
    t.finished(11);
    t.finished(13);
    assert_eq!(t.committable(), Some(10));
    t.finished(10);
    assert_eq!(t.committable(), Some(12));
    t.finished(12);
    t.finished(14);
    assert_eq!(t.committable(), Some(15));
}

#[test]
fn unknown_start_has_nothing_to_commit() {
    let mut t = OffsetTracker::new(None);
    assert_eq!(t.committable(), None);
    t.received(7);
    assert_eq!(t.committable(), Some(7));
    t.finished(7);
    assert_eq!(t.committable(), Some(8));
}

#[test]
fn metadata_round_trip() {
    let mut t = OffsetTracker::new(Some(100));
    for o in 100..110 {
        t.received(o);
    }
    for o in [101, 102, 105, 109] {
        t.finished(o);
    }
    let cp = t.commit_point(4096).unwrap();
    assert_eq!(cp.offset, 100);
    let s = SkipSet::decode(cp.offset, &cp.metadata);
    let skipped: Vec<i64> = (95..115).filter(|&o| s.should_skip(o)).collect();
    assert_eq!(skipped, vec![101, 102, 105, 109]);
}

#[test]
fn garbage_metadata_skips_nothing() {
    for m in ["", "h1:", "h1:!!!", "nonsense", "h1:AAAA", "h1:_w"] {
        let s = SkipSet::decode(5, m);
        assert!((0..20).all(|o| !s.should_skip(o)), "{m}");
    }
}

#[test]
fn inherited_skips_survive_a_second_hand_over() {
    // Owner A finished 11, 12 and 14 above its committed offset 10.
    let mut a = OffsetTracker::new(Some(10));
    for o in 10..16 {
        a.received(o);
    }
    for o in [11, 12, 14] {
        a.finished(o);
    }
    let cp = a.commit_point(4096).unwrap();
    assert_eq!(cp.offset, 10);
    // Owner B reads only offset 10 before it commits and hands over.
    let mut b = OffsetTracker::resume(Some(cp.offset), SkipSet::decode(cp.offset, &cp.metadata));
    b.received(10);
    b.finished(10);
    let cp = b.commit_point(4096).unwrap();
    assert_eq!(cp.offset, 13, "11 and 12 are finished per A");
    let c = SkipSet::decode(cp.offset, &cp.metadata);
    let skipped: Vec<i64> = (10..20).filter(|&o| c.should_skip(o)).collect();
    assert_eq!(skipped, vec![14], "A's finished 14 is carried forward");
}

#[test]
fn already_received_after_resume_in_place() {
    let mut t = OffsetTracker::new(Some(5));
    assert!(!t.already_received(5));
    t.received(5);
    t.received(6);
    assert!(t.already_received(5) && t.already_received(6));
    assert!(!t.already_received(7));
}

/// A head copy whose original was delivered is finished before it is
/// read: the metadata says so (even at the commit offset itself), and
/// reading it later records it finished.
#[test]
fn finished_ahead_is_committed_as_finished() {
    let mut t = OffsetTracker::new(Some(5));
    t.finished_ahead(5);
    let cp = t.commit_point(4000).unwrap();
    assert_eq!(cp.offset, 5);
    let skip = SkipSet::decode(cp.offset, &cp.metadata);
    assert!(skip.should_skip(5));
    assert!(!skip.should_skip(6));

    let mut t = OffsetTracker::new(Some(5));
    t.received(5);
    t.finished_ahead(7);
    t.finished_ahead(9);
    let cp = t.commit_point(4000).unwrap();
    assert_eq!(cp.offset, 5);
    let skip = SkipSet::decode(cp.offset, &cp.metadata);
    let skipped: Vec<i64> = (5..12).filter(|&o| skip.should_skip(o)).collect();
    assert_eq!(skipped, vec![7, 9]);
    // Read in order: 7 arrives finished.
    t.received(6);
    t.received(7);
    t.finished(5);
    t.finished(6);
    assert_eq!(t.committable(), Some(8));
    assert!(!t.is_unfinished(7));
    // Already read: finishing ahead finishes it.
    t.received(8);
    t.finished_ahead(8);
    assert_eq!(t.committable(), Some(9));
    // A tracker with no start learns it from the partition.
    let mut t = OffsetTracker::new(None);
    t.finished_ahead(3);
    assert_eq!(t.commit_point(4000), None);
    t.start_at(2);
    let cp = t.commit_point(4000).unwrap();
    let skip = SkipSet::decode(cp.offset, &cp.metadata);
    assert_eq!(
        (cp.offset, skip.should_skip(2), skip.should_skip(3)),
        (2, false, true)
    );
}

#[test]
fn varint_lengths() {
    for v in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX] {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        assert_eq!(varint_len(v), out.len(), "{v}");
    }
}

proptest! {
    /// Never commits past an unfinished offset, and the metadata lets a
    /// new owner skip only finished (or non-existent) offsets.
    #[test]
    fn tracker_is_safe(
        start in 0i64..1000,
        gaps in proptest::collection::vec(1i64..4, 1..300),
        finish_mask in proptest::collection::vec(any::<bool>(), 300),
        max_bytes in 8usize..200,
    ) {
        let mut t = OffsetTracker::new(Some(start));
        let mut offsets = Vec::new();
        let mut o = start;
        for g in &gaps {
            o += g;
            t.received(o);
            offsets.push(o);
        }
        let mut unfinished = BTreeSet::new();
        for (i, &off) in offsets.iter().enumerate() {
            if finish_mask[i] { t.finished(off); } else { unfinished.insert(off); }
        }
        let cp = t.commit_point(max_bytes).unwrap();
        prop_assert!(cp.metadata.len() <= max_bytes);
        if let Some(&lowest) = unfinished.first() {
            prop_assert_eq!(cp.offset, lowest);
        } else {
            prop_assert_eq!(cp.offset, o + 1);
        }
        let s = SkipSet::decode(cp.offset, &cp.metadata);
        for off in start..=o + 2 {
            if s.should_skip(off) {
                prop_assert!(!unfinished.contains(&off), "skipped unfinished {}", off);
            }
        }
        // With a generous limit the skip set is exact.
        let full = SkipSet::decode(cp.offset, &t.commit_point(1 << 20).unwrap().metadata);
        for &off in &offsets {
            if off >= cp.offset {
                prop_assert_eq!(full.should_skip(off), !unfinished.contains(&off));
            }
        }
    }

    /// Three owners in a row: what the first finished and the second
    /// did not read yet is still skipped by the third; nothing
    /// unfinished is ever skipped.
    #[test]
    fn hand_overs_carry_skip_sets(
        start in 0i64..100,
        n in 1i64..200,
        finish_mask in proptest::collection::vec(any::<bool>(), 200),
        read_share in 0i64..=200,
        b_finish in proptest::collection::vec(any::<bool>(), 200),
        max_bytes in 8usize..300,
    ) {
        let end = start + n;
        let mut truth_finished = BTreeSet::new();
        let mut a = OffsetTracker::new(Some(start));
        for o in start..end {
            a.received(o);
            if finish_mask[(o - start) as usize] {
                a.finished(o);
                truth_finished.insert(o);
            }
        }
        let cp = a.commit_point(max_bytes).unwrap();
        prop_assert!(cp.metadata.len() <= max_bytes);
        let mut b = OffsetTracker::resume(Some(cp.offset), SkipSet::decode(cp.offset, &cp.metadata));
        let read_to = (cp.offset + read_share * n / 200).min(end);
        for o in cp.offset..read_to {
            if b.inherited_finished(o) {
                prop_assert!(truth_finished.contains(&o), "B skipped unfinished {}", o);
                b.received_finished(o);
            } else {
                b.received(o);
                if b_finish[(o - start) as usize] {
                    b.finished(o);
                    truth_finished.insert(o);
                }
            }
        }
        let cp2 = b.commit_point(max_bytes).unwrap();
        prop_assert!(cp2.metadata.len() <= max_bytes);
        for o in start..cp2.offset {
            prop_assert!(truth_finished.contains(&o) || o < cp.offset, "committed past unfinished {}", o);
        }
        let c = SkipSet::decode(cp2.offset, &cp2.metadata);
        for o in start..end + 2 {
            if c.should_skip(o) {
                prop_assert!(truth_finished.contains(&o), "C skips unfinished {}", o);
            }
        }
        // With generous limits, A's finished offsets that B never read
        // are skipped by C.
        let a_full = a.commit_point(1 << 20).unwrap();
        let mut b2 = OffsetTracker::resume(Some(a_full.offset), SkipSet::decode(a_full.offset, &a_full.metadata));
        b2.received(a_full.offset.min(end));
        if a_full.offset < end {
            b2.finished(a_full.offset);
        }
        let cp3 = b2.commit_point(1 << 20).unwrap();
        let c3 = SkipSet::decode(cp3.offset, &cp3.metadata);
        for o in (a_full.offset + 1)..end {
            if finish_mask[(o - start) as usize] {
                prop_assert!(o < cp3.offset || c3.should_skip(o), "forgot A's finished {}", o);
            }
        }
    }
}
