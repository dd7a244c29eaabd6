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
//!
//! A tracker *inherits* the skip set its partition was committed with and
//! carries it forward: until the new owner has read past the inherited
//! range, its own commits still encode what the old owner finished there, so
//! two hand-overs in a row (a rolling deploy) do not re-send it. Encoding is
//! linear in the number of runs.

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
    /// What the previous owner finished above the committed offset, until
    /// this tracker has read past it.
    inherited: SkipSet,
    /// Offsets at or above `high` known to be finished before they are read
    /// (a head copy whose original was delivered): the commit metadata
    /// says so, and receiving one records it finished.
    ahead: BTreeSet<i64>,
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
        Self::resume(start, SkipSet::default())
    }

    /// A tracker starting at the committed offset `start`, carrying forward
    /// the skip set committed with it.
    pub fn resume(start: Option<i64>, inherited: SkipSet) -> Self {
        Self {
            unfinished: BTreeSet::new(),
            high: start,
            inherited,
            ahead: BTreeSet::new(),
        }
    }

    /// Where a tracker that had no start learns it (the partition's first
    /// stored offset, where a consumer with nothing committed begins).
    pub fn start_at(&mut self, low: i64) {
        if self.high.is_none() {
            self.high = Some(low);
            if self.ahead.first().is_some_and(|&a| a < low) {
                self.ahead = self.ahead.split_off(&low);
            }
        }
    }

    /// One past the highest offset received, or the start position (the
    /// committed offset) before any; `None` when neither is known.
    pub fn position(&self) -> Option<i64> {
        self.high
    }

    /// Whether a record at `offset` was received already (a consumer that
    /// re-fetches from the committed offset after a rebalance hands it over
    /// again): the caller ignores it.
    pub fn already_received(&self, offset: i64) -> bool {
        self.high.is_some_and(|h| offset < h)
    }

    /// Whether the previous owner finished the record at `offset` (the
    /// caller then records it with [`Self::received_finished`]).
    pub fn inherited_finished(&self, offset: i64) -> bool {
        self.inherited.should_skip(offset)
    }

    /// A record at `offset` was received (offsets arrive in increasing order).
    pub fn received(&mut self, offset: i64) {
        if !self.ahead.remove(&offset) {
            self.unfinished.insert(offset);
        }
        self.advance(offset + 1);
    }

    /// A record was received and is already finished (e.g. skipped).
    pub fn received_finished(&mut self, offset: i64) {
        self.advance(offset + 1);
    }

    fn advance(&mut self, next: i64) {
        self.high = Some(self.high.map_or(next, |h| h.max(next)));
        if self.ahead.first().is_some_and(|&a| a < next) {
            self.ahead = self.ahead.split_off(&next);
        }
        if self.inherited.is_exhausted(next) && self.inherited.high > self.inherited.base {
            self.inherited = SkipSet::default();
        }
    }

    /// The record at `offset` is finished (delivered or otherwise settled).
    pub fn finished(&mut self, offset: i64) {
        self.unfinished.remove(&offset);
    }

    /// The record at `offset` is finished, whether or not it was received
    /// yet (a head copy whose original was delivered: nobody may deliver
    /// it again, even after a hand-over before it is read back).
    pub fn finished_ahead(&mut self, offset: i64) {
        if self.high.is_some_and(|h| offset < h) {
            self.unfinished.remove(&offset);
        } else {
            self.ahead.insert(offset);
        }
    }

    /// Whether `offset`, not received yet, is known to be finished.
    pub fn is_finished_ahead(&self, offset: i64) -> bool {
        self.ahead.contains(&offset)
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
        let high = self.high?;
        let own = self.unfinished.first().copied();
        // Not read yet: what the previous owner left unfinished, or the end
        // of what it spoke for.
        let unread = if high < self.inherited.high {
            self.inherited
                .first_unfinished_from(high)
                .unwrap_or(self.inherited.high)
        } else {
            high
        };
        Some(own.map_or(unread, |o| o.min(unread)))
    }

    /// The commit point with metadata of at most `max_bytes` bytes.
    pub fn commit_point(&self, max_bytes: usize) -> Option<CommitPoint> {
        let offset = self.committable()?;
        let high = self.high.unwrap_or(offset);
        let mut runs = Runs::new(offset);
        for &u in self.unfinished.range(offset..high.max(offset)) {
            runs.unfinished(u, u + 1);
        }
        // Above what was read: what the previous owner left unfinished
        // (everything past the range it spoke for), less what is known to be
        // finished ahead.
        let mut end = high.max(offset);
        let mut above = Vec::new();
        if high < self.inherited.high {
            for &(s, e) in &self.inherited.unfinished {
                above.push((s.max(high).max(offset), e));
            }
            end = end.max(self.inherited.high);
        }
        if let Some(&last) = self.ahead.last() {
            let from = end;
            end = end.max(last + 1);
            above.push((from, end));
        }
        for (mut s, e) in above {
            for &a in self.ahead.range(s..e.max(s)) {
                if s < a {
                    runs.unfinished(s, a);
                }
                s = a + 1;
            }
            if s < e {
                runs.unfinished(s, e);
            }
        }
        Some(CommitPoint {
            offset,
            metadata: runs.encode(end, max_bytes),
        })
    }
}

/// Alternating unfinished/finished runs from a base offset, built in
/// increasing order.
struct Runs {
    base: i64,
    cursor: i64,
    /// (length, unfinished?)
    runs: Vec<(u64, bool)>,
}

impl Runs {
    fn new(base: i64) -> Self {
        Self {
            base,
            cursor: base,
            runs: Vec::new(),
        }
    }

    /// `[start, end)` is unfinished (`start >= ` every earlier call's end).
    fn unfinished(&mut self, start: i64, end: i64) {
        if start > self.cursor {
            self.runs.push(((start - self.cursor) as u64, false));
        }
        match self.runs.last_mut() {
            Some((len, true)) => *len += (end - start) as u64,
            _ => self.runs.push(((end - start) as u64, true)),
        }
        self.cursor = end;
    }

    /// `h1:` + base64(varint(span), varint(run)…), cut after the last whole
    /// run that fits in `max_bytes`.
    fn encode(mut self, high: i64, max_bytes: usize) -> String {
        if high <= self.base {
            return String::new();
        }
        if self.cursor < high {
            self.runs.push(((high - self.cursor) as u64, false));
        }
        // Runs alternate from an unfinished one: a range that opens finished
        // (a record at the commit offset finished before it was read)
        // starts with an empty unfinished run.
        if self.runs.first().is_some_and(|r| !r.1) {
            self.runs.insert(0, (0, true));
        }
        // Base64 turns 3 bytes into 4 chars.
        let budget = max_bytes.saturating_sub(TAG.len()) / 4 * 3;
        let mut covered: u64 = 0;
        let mut run_bytes = 0usize;
        let mut take = 0;
        for (len, _) in &self.runs {
            let size = varint_len(covered + len) + run_bytes + varint_len(*len);
            if size > budget {
                break;
            }
            covered += len;
            run_bytes += varint_len(*len);
            take += 1;
        }
        if take == 0 {
            return String::new();
        }
        let mut body = Vec::with_capacity(varint_len(covered) + run_bytes);
        put_varint(&mut body, covered);
        for (len, _) in &self.runs[..take] {
            put_varint(&mut body, *len);
        }
        format!("{TAG}{}", URL_SAFE_NO_PAD.encode(body))
    }
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
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
        let start = pos;
        while pos < bytes.len() {
            let first = pos == start;
            let len = i64::try_from(get_varint(&bytes, &mut pos)?).ok()?;
            let end = cursor.checked_add(len)?;
            // Only the first (unfinished) run may be empty.
            if (len == 0 && !first) || end > high {
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

    /// The first offset at or after `from`, inside the range this set
    /// speaks for, that the previous owner left unfinished.
    fn first_unfinished_from(&self, from: i64) -> Option<i64> {
        self.unfinished
            .iter()
            .find(|&&(_, e)| e > from)
            .map(|&(s, _)| s.max(from))
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
        let mut b =
            OffsetTracker::resume(Some(cp.offset), SkipSet::decode(cp.offset, &cp.metadata));
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
}
