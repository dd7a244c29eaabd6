//! One pass over the dead-letter topic for `ListDeadLetters` and
//! `ReplayDeadLetters`, in bounded memory: it keeps at most `keep` matching
//! dead letters (the first ones in `(partition, offset)` order after a
//! page token) and only counters and (up to a bound) `(partition, offset)`
//! keys for the rest, never the whole topic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicBool;

use herald_core::config::KafkaConfig;
use herald_kafka::headers as h;
use herald_proto::v1::EventEnvelope;
use prost::Message as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};

/// One dead letter as scanned.
#[derive(Debug, Clone)]
pub struct Entry {
    pub partition: i32,
    pub offset: i64,
    pub at_ms: i64,
    pub headers: HashMap<String, String>,
    pub envelope: EventEnvelope,
    /// A replay marker for it was seen.
    pub replayed: bool,
}

/// What to scan for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub endpoint_id: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Only dead letters after this `(partition, offset)` (a page token).
    pub after: Option<(i32, i64)>,
    /// Keep at most this many.
    pub keep: usize,
    /// And at most this many payload bytes (at least one entry is kept).
    pub max_bytes: usize,
    /// Leave out dead letters a replay marker says were replayed (and count them).
    pub drop_replayed: bool,
}

impl Filter {
    fn matches(&self, e: &Entry) -> bool {
        (self.endpoint_id.is_empty() || e.envelope.endpoint_id == self.endpoint_id)
            && e.at_ms >= self.from_ms
            && (self.to_ms <= 0 || e.at_ms < self.to_ms)
            && self.after.is_none_or(|a| (e.partition, e.offset) > a)
    }
}

/// Result of a scan.
#[derive(Debug, Default)]
pub struct Scan {
    /// The first `keep` matching dead letters in `(partition, offset)` order
    /// (without the replayed ones when `drop_replayed`).
    pub entries: Vec<Entry>,
    /// Every matching dead letter, kept or not.
    pub matched: u64,
    /// Matching dead letters with a replay marker (left out when `drop_replayed`).
    pub replayed: u64,
}

impl Scan {
    /// Matching dead letters neither kept nor counted as replayed: what a
    /// later call still has to do.
    pub fn remaining(&self, drop_replayed: bool) -> u64 {
        let done = if drop_replayed { self.replayed } else { 0 };
        self.matched
            .saturating_sub(done)
            .saturating_sub(self.entries.len() as u64)
    }
}

/// Most `(partition, offset)` keys one scan remembers for counting replay
/// markers: 16 bytes each, so at most about 32 MiB with the set's overhead.
const MAX_TRACKED_KEYS: usize = 1_000_000;

/// Folds records into a [`Scan`] (no I/O: tests feed it directly).
#[derive(Default)]
pub struct Collector {
    filter: Filter,
    kept: BTreeMap<(i32, i64), Entry>,
    /// Matching dead letters seen.
    matched: u64,
    /// Payload bytes of `kept`.
    bytes: usize,
    /// Keys of every matching dead letter, for counting replay markers.
    matched_keys: HashSet<(i32, i64)>,
    marked: HashSet<(i32, i64)>,
}

impl Collector {
    /// A collector for `filter`.
    pub fn new(filter: Filter) -> Self {
        Self {
            filter,
            ..Default::default()
        }
    }

    /// A dead letter.
    pub fn entry(&mut self, e: Entry) {
        if !self.filter.matches(&e) {
            return;
        }
        let key = (e.partition, e.offset);
        self.matched += 1;
        // Keys are remembered (to count replay markers) up to a bound; past
        // it, markers of the rest are not counted and `remaining` may be
        // high, never low.
        if self.matched_keys.len() < MAX_TRACKED_KEYS {
            self.matched_keys.insert(key);
        }
        self.bytes += e.envelope.payload.len();
        self.kept.insert(key, e);
        while self.kept.len() > self.filter.keep
            || (self.bytes > self.filter.max_bytes && self.kept.len() > 1)
        {
            if let Some((_, out)) = self.kept.pop_last() {
                self.bytes -= out.envelope.payload.len();
            }
        }
    }

    /// A replay marker for the dead letter at `key` (markers always follow
    /// their dead letter in its partition).
    pub fn marker(&mut self, key: (i32, i64)) {
        if !self.matched_keys.contains(&key) || !self.marked.insert(key) {
            return;
        }
        if self.filter.drop_replayed {
            if let Some(out) = self.kept.remove(&key) {
                self.bytes -= out.envelope.payload.len();
            }
        } else if let Some(e) = self.kept.get_mut(&key) {
            e.replayed = true;
        }
    }

    /// The scan's result.
    pub fn finish(self) -> Scan {
        Scan {
            entries: self.kept.into_values().collect(),
            matched: self.matched,
            replayed: self.marked.len() as u64,
        }
    }
}

/// Scans the dead-letter topic from `filter.from_ms` until `stop` is set
/// or the end seen at the start is reached.
pub fn scan(
    kafka: &KafkaConfig,
    node_id: &str,
    filter: Filter,
    stop: &AtomicBool,
) -> Result<Scan, KafkaError> {
    let mut c = Collector::new(filter);
    let from_ms = c.filter.from_ms;
    // Markers always follow their dead letter, so starting at the first
    // record written at `from_ms` still sees every relevant marker.
    let client = format!("herald-dlq-reader-{node_id}");
    herald_kafka::scan::scan_topic_until(kafka, &client, &kafka.dlq_topic, from_ms, stop, |msg| {
        record(&mut c, msg)
    })?;
    Ok(c.finish())
}

fn record(c: &mut Collector, msg: &BorrowedMessage<'_>) {
    let headers: HashMap<String, String> = msg
        .headers()
        .map(|hs| {
            hs.iter()
                .filter_map(|hd| {
                    Some((
                        hd.key.to_string(),
                        String::from_utf8_lossy(hd.value?).into_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(of) = headers.get(h::REPLAY_OF) {
        if let Some(key) = of
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        {
            c.marker(key);
        }
        return;
    }
    let Some(envelope) = msg.payload().and_then(|v| EventEnvelope::decode(v).ok()) else {
        // Listed nowhere, but never silently: counted, and logged.
        metrics::counter!(herald_telemetry::names::RECORDS_UNDECODABLE, "topic" => "dlq")
            .increment(1);
        tracing::debug!(
            partition = msg.partition(),
            offset = msg.offset(),
            "undecodable dead-letter record skipped"
        );
        return;
    };
    let at_ms = headers
        .get(h::DEAD_LETTERED_MS)
        .and_then(|v| v.parse().ok())
        .or_else(|| msg.timestamp().to_millis())
        .unwrap_or(0);
    c.entry(Entry {
        partition: msg.partition(),
        offset: msg.offset(),
        at_ms,
        headers,
        envelope,
        replayed: false,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: i32, o: i64, ep: &str) -> Entry {
        Entry {
            partition: p,
            offset: o,
            at_ms: 10,
            headers: HashMap::new(),
            envelope: EventEnvelope {
                endpoint_id: ep.into(),
                ..Default::default()
            },
            replayed: false,
        }
    }

    #[test]
    fn keeps_the_first_n_in_order_and_counts_the_rest() {
        let mut c = Collector::new(Filter {
            endpoint_id: "a".into(),
            keep: 2,
            max_bytes: usize::MAX,
            ..Default::default()
        });
        // Partitions interleave as a scan reads them.
        for (p, o) in [(1, 5), (0, 7), (1, 2), (0, 3), (2, 0)] {
            c.entry(entry(p, o, "a"));
            c.entry(entry(p, o + 100, "other"));
        }
        c.marker((0, 3));
        let s = c.finish();
        let keys: Vec<_> = s.entries.iter().map(|e| (e.partition, e.offset)).collect();
        assert_eq!(keys, vec![(0, 3), (0, 7)]);
        assert!(s.entries[0].replayed && !s.entries[1].replayed);
        assert_eq!((s.matched, s.replayed), (5, 1));
        assert_eq!(s.remaining(false), 3);
    }

    #[test]
    fn a_byte_budget_shortens_the_page_but_keeps_one() {
        let mut c = Collector::new(Filter {
            keep: 100,
            max_bytes: 250,
            ..Default::default()
        });
        for o in (0..5).rev() {
            let mut e = entry(0, o, "x");
            e.envelope.payload = vec![b'x'; 100].into();
            c.entry(e);
        }
        let s = c.finish();
        let keys: Vec<_> = s.entries.iter().map(|e| e.offset).collect();
        assert_eq!(
            keys,
            vec![0, 1],
            "the first ones in order, within 250 bytes"
        );
        assert_eq!(s.matched, 5);
        let mut c = Collector::new(Filter {
            keep: 100,
            max_bytes: 10,
            ..Default::default()
        });
        let mut e = entry(0, 0, "x");
        e.envelope.payload = vec![b'x'; 100].into();
        c.entry(e);
        assert_eq!(c.finish().entries.len(), 1, "one entry always fits");
    }

    #[test]
    fn page_tokens_and_dropping_replayed_ones() {
        let mut c = Collector::new(Filter {
            keep: 10,
            max_bytes: usize::MAX,
            after: Some((0, 3)),
            drop_replayed: true,
            ..Default::default()
        });
        for (p, o) in [(0, 1), (0, 3), (0, 4), (1, 0)] {
            c.entry(entry(p, o, "x"));
        }
        c.marker((0, 4));
        c.marker((0, 4)); // a second marker (a forced replay) counts once
        c.marker((9, 9)); // a marker for something not matched
        let s = c.finish();
        let keys: Vec<_> = s.entries.iter().map(|e| (e.partition, e.offset)).collect();
        assert_eq!(keys, vec![(1, 0)]);
        assert_eq!((s.matched, s.replayed, s.remaining(true)), (2, 1, 0));
    }
}
