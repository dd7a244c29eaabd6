//! Per-partition offset tracking: which offsets are finished, what may be
//! committed, and the commit metadata that lets a new owner skip what was
//! already finished above the committed offset.
//!
//! The committed offset is the lowest *unfinished* offset received (or, when
//! nothing is unfinished, the next offset to read). Offsets between it and
//! the read position that are not unfinished are either finished or do not
//! exist (compaction, transaction markers): both are safe to skip. So the
//! metadata only needs the read position and the unfinished runs:
//!
//! `h1:` + base64url(varint(high - base), varint(run)…)` where runs alternate
//! unfinished, finished, unfinished, … starting at `base` (the first run is
//! unfinished by definition). When the encoding would exceed the byte limit
//! (Kafka's `offset.metadata.max.bytes` defaults to 4096), it is cut after a
//! whole run and `high` lowered to match, so a new owner re-sends more than
//! needed, never less. Unreadable metadata is ignored: re-send, never skip.

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Metadata format tag.
const TAG: &str = "h1:";

/// Finished/unfinished bookkeeping for one partition.
#[derive(Debug, Clone, Default)]
pub struct OffsetTracker {
    /// Received but not finished.
    unfinished: BTreeSet<i64>,
    /// One past the highest offset received (or the start position).
    high: Option<i64>,
}

/// Where to commit and what to say about the offsets above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPoint {
    /// The offset to commit (next to process).
    pub offset: i64,
    /// Encoded skip information for offsets in `offset..high`.
    pub metadata: String,
}

impl OffsetTracker {
    /// A tracker whose read position starts at `start` (the committed
    /// offset), or unknown until the first record when `None`.
    pub fn new(start: Option<i64>) -> Self {
        Self {
            unfinished: BTreeSet::new(),
            high: start,
        }
    }

    /// A record at `offset` was received (offsets arrive in increasing order).
    pub fn received(&mut self, offset: i64) {
        self.unfinished.insert(offset);
        self.high = Some(self.high.map_or(offset + 1, |h| h.max(offset + 1)));
    }

    /// A record was received and is already finished (e.g. skipped).
    pub fn received_finished(&mut self, offset: i64) {
        self.high = Some(self.high.map_or(offset + 1, |h| h.max(offset + 1)));
    }

    /// The record at `offset` is finished (delivered or otherwise settled).
    pub fn finished(&mut self, offset: i64) {
        self.unfinished.remove(&offset);
    }

    /// Whether the record at `offset` was received and is not finished.
    pub fn is_unfinished(&self, offset: i64) -> bool {
        self.unfinished.contains(&offset)
    }

    /// Records received and not finished.
    pub fn unfinished_len(&self) -> usize {
        self.unfinished.len()
    }

    /// The offset safe to commit, if anything was received or a start is known.
    pub fn committable(&self) -> Option<i64> {
        self.unfinished.first().copied().or(self.high)
    }

    /// The commit point with metadata of at most `max_bytes` bytes.
    pub fn commit_point(&self, max_bytes: usize) -> Option<CommitPoint> {
        let offset = self.committable()?;
        let high = self.high.unwrap_or(offset);
        Some(CommitPoint {
            offset,
            metadata: encode(offset, high, &self.unfinished, max_bytes),
        })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Encodes the unfinished runs in `base..high`.
fn encode(base: i64, high: i64, unfinished: &BTreeSet<i64>, max_bytes: usize) -> String {
    if high <= base {
        return String::new();
    }
    // Runs alternate unfinished / finished, starting with unfinished at base.
    let mut runs: Vec<(u64, bool)> = Vec::new(); // (length, unfinished?)
    let mut cursor = base;
    for &u in unfinished.range(base..high) {
        if u > cursor {
            runs.push(((u - cursor) as u64, false));
        }
        match runs.last_mut() {
            Some((len, true)) => *len += 1,
            _ => runs.push((1, true)),
        }
        cursor = u + 1;
    }
    if cursor < high {
        runs.push(((high - cursor) as u64, false));
    }
    // Base64 turns 3 bytes into 4 chars.
    let budget = max_bytes.saturating_sub(TAG.len()) / 4 * 3;
    let mut body = Vec::new();
    let mut covered: u64 = 0;
    let mut encoded_runs = Vec::new();
    for (len, unf) in &runs {
        let mut trial = Vec::new();
        put_varint(&mut trial, covered + len);
        for r in encoded_runs.iter().chain(std::iter::once(len)) {
            put_varint(&mut trial, *r);
        }
        if trial.len() > budget {
            break;
        }
        // Never end the encoding on an unfinished run that was cut short:
        // every run is whole, so the prefix is exact up to `covered`.
        covered += len;
        encoded_runs.push(*len);
        body = trial;
        let _ = unf;
    }
    if encoded_runs.is_empty() {
        return String::new();
    }
    format!("{TAG}{}", URL_SAFE_NO_PAD.encode(body))
}

/// Offsets a new owner may skip, decoded from commit metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipSet {
    /// The committed offset the metadata is relative to.
    base: i64,
    /// End (exclusive) of the range the metadata speaks for.
    high: i64,
    /// Unfinished ranges `[start, end)` inside `base..high`, sorted.
    unfinished: Vec<(i64, i64)>,
}

impl SkipSet {
    /// Decodes `metadata` committed with `base`; unreadable metadata (or
    /// none) skips nothing.
    pub fn decode(base: i64, metadata: &str) -> SkipSet {
        Self::try_decode(base, metadata).unwrap_or(SkipSet {
            base,
            high: base,
            unfinished: Vec::new(),
        })
    }

    fn try_decode(base: i64, metadata: &str) -> Option<SkipSet> {
        let bytes = URL_SAFE_NO_PAD.decode(metadata.strip_prefix(TAG)?).ok()?;
        let mut pos = 0;
        let span = get_varint(&bytes, &mut pos)?;
        let high = base.checked_add(i64::try_from(span).ok()?)?;
        let mut unfinished = Vec::new();
        let mut cursor = base;
        let mut is_unfinished = true;
        while pos < bytes.len() {
            let len = i64::try_from(get_varint(&bytes, &mut pos)?).ok()?;
            let end = cursor.checked_add(len)?;
            if len == 0 || end > high {
                return None;
            }
            if is_unfinished {
                unfinished.push((cursor, end));
            }
            cursor = end;
            is_unfinished = !is_unfinished;
        }
        if cursor != high {
            return None;
        }
        Some(SkipSet {
            base,
            high,
            unfinished,
        })
    }

    /// Whether the record at `offset` was already finished by the previous owner.
    pub fn should_skip(&self, offset: i64) -> bool {
        if offset < self.base || offset >= self.high {
            return false;
        }
        !self
            .unfinished
            .iter()
            .any(|&(s, e)| offset >= s && offset < e)
    }

    /// Whether this set can skip anything at or after `offset`.
    pub fn is_exhausted(&self, offset: i64) -> bool {
        offset >= self.high
    }
}

#[cfg(test)]
mod tests {
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
    }
}
