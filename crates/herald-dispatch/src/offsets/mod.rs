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
//! unfinished; it is empty when `base` itself was finished ahead). When the encoding would exceed the byte limit
//! (Kafka's `offset.metadata.max.bytes` defaults to 4096), it is cut after a
//! whole run and `high` lowered to match, so a new owner re-sends more than
//! needed, never less. Unreadable metadata is ignored: re-send, never skip.
//!
//! A tracker *inherits* the skip set its partition was committed with and
//! carries it forward: until the new owner has read past the inherited
//! range, its own commits still encode what the old owner finished there, so
//! two hand-overs in a row (a rolling deploy) do not re-send it. Encoding is
//! linear in the number of runs.
//!
//! Offsets not read yet can be *finished ahead* (a head copy whose original
//! was delivered; an events record whose event a retry record already
//! carries): the metadata then reaches past the read position.

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
    /// (see [`Self::finished_ahead`]): the commit metadata says so, and
    /// receiving one records it finished.
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
            self.forget_ahead_below(low);
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
        self.forget_ahead_below(next);
        if self.inherited.is_exhausted(next) && self.inherited.high > self.inherited.base {
            self.inherited = SkipSet::default();
        }
    }

    /// Offsets below `offset` are read (or never will be): nothing ahead
    /// is left to remember there.
    fn forget_ahead_below(&mut self, offset: i64) {
        if self.ahead.first().is_some_and(|&a| a < offset) {
            self.ahead = self.ahead.split_off(&offset);
        }
    }

    /// The record at `offset` is finished (delivered or otherwise settled).
    pub fn finished(&mut self, offset: i64) {
        self.unfinished.remove(&offset);
    }

    /// The record at `offset` is finished, whether or not it was received
    /// yet: a head copy whose original was delivered, or an events record
    /// whose event a retry record already carries. Nobody may deliver it
    /// again, even after a hand-over before it is read.
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
mod tests;
