//! What the harness sends: endpoint ids, which publisher owns which
//! targets, and the JSON bodies (target index, per-target sequence number,
//! publish timestamp, padding to a fixed size).
//!
//! A target is one endpoint (direct publishes) or, with a fan-out of `F`,
//! one application whose `F` endpoints all subscribe to every event type:
//! each event published to it reaches each of them. Every target belongs to
//! exactly one publisher, and each publisher sends its batches one after
//! another, so a target's events reach Kafka in sequence order and any
//! reordering the receivers see (per endpoint) is Herald's.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// The index of the dead endpoint when a scenario has one.
pub const DEAD_ENDPOINT: usize = 0;

/// The shape of one run's traffic.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Prefix of every endpoint id of this run (ids are `{prefix}-{index}`).
    pub prefix: String,
    /// Endpoints receiving traffic.
    pub endpoints: usize,
    /// Body size in bytes.
    pub payload_bytes: usize,
    /// Every n-th event goes to [`DEAD_ENDPOINT`] (`None`: no dead endpoint).
    pub dead_every: Option<u64>,
    /// Endpoints per application, each event fanned out to all of them
    /// (1: direct publishes to one endpoint).
    pub fanout: usize,
}

impl Workload {
    /// The id of endpoint `index`.
    pub fn endpoint_id(&self, index: usize) -> String {
        format!("{}-{index}", self.prefix)
    }

    /// The application endpoint `index` belongs to (fan-out only).
    pub fn app_id(&self, index: usize) -> Option<String> {
        (self.fanout > 1).then(|| format!("{}-app-{}", self.prefix, index / self.fanout))
    }

    /// Events are published to targets `0..targets()`: endpoints, or with a
    /// fan-out, applications of `fanout` endpoints each.
    pub fn targets(&self) -> usize {
        if self.fanout > 1 {
            (self.endpoints / self.fanout).max(1)
        } else {
            self.endpoints
        }
    }

    /// Endpoints that receive each event published to a target.
    pub fn per_target(&self) -> usize {
        self.fanout.max(1)
    }

    /// The targets that take healthy traffic.
    pub fn healthy(&self) -> std::ops::Range<usize> {
        match self.dead_every {
            Some(_) => 1..self.targets(),
            None => 0..self.targets(),
        }
    }

    /// Endpoints that receive healthy traffic.
    pub fn receiving(&self) -> usize {
        self.healthy().len() * self.per_target()
    }

    /// The healthy targets publisher `p` of `publishers` owns.
    pub fn owned_by(&self, p: usize, publishers: usize) -> Vec<usize> {
        self.healthy().filter(|e| e % publishers == p).collect()
    }
}

/// Generates one publisher's events in order: round robin over its
/// endpoints, with every `dead_every`-th event to the dead endpoint.
#[derive(Debug)]
pub struct EventStream {
    owned: Vec<usize>,
    next_seq: Vec<u64>,
    cursor: usize,
    produced: u64,
    dead_every: Option<u64>,
    pad: String,
}

/// One event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// Target index (an endpoint, or a fan-out's application).
    pub endpoint: usize,
    /// Sequence number within the endpoint.
    pub seq: u64,
    /// For the dead endpoint (never delivered, not in the ledger).
    pub dead: bool,
}

impl EventStream {
    /// The stream of publisher `p`; `None` when it owns no endpoint.
    pub fn new(w: &Workload, p: usize, publishers: usize) -> Option<Self> {
        let owned = w.owned_by(p, publishers);
        if owned.is_empty() {
            return None;
        }
        Some(Self {
            next_seq: vec![0; owned.len()],
            owned,
            cursor: 0,
            produced: 0,
            dead_every: w.dead_every,
            pad: String::new(),
        })
    }

    /// The next event.
    pub fn next_event(&mut self) -> Planned {
        self.produced += 1;
        if self
            .dead_every
            .is_some_and(|n| self.produced.is_multiple_of(n))
        {
            return Planned {
                endpoint: DEAD_ENDPOINT,
                seq: self.produced,
                dead: true,
            };
        }
        let i = self.cursor;
        self.cursor = (self.cursor + 1) % self.owned.len();
        let seq = self.next_seq[i];
        self.next_seq[i] += 1;
        Planned {
            endpoint: self.owned[i],
            seq,
            dead: false,
        }
    }

    /// The JSON body of `e`, stamped now, padded to `size` bytes.
    pub fn body(&mut self, e: &Planned, size: usize) -> String {
        body(e, unix_nanos(), size, &mut self.pad)
    }
}

/// The JSON body of an event published at `t_ns`, padded to at least `size`
/// bytes; `pad` is scratch space kept between calls.
pub fn body(e: &Planned, t_ns: u64, size: usize, pad: &mut String) -> String {
    let mut s = String::with_capacity(size + 8);
    let _ = write!(
        s,
        r#"{{"ep":{},"seq":{},"t":{},"pad":""#,
        e.endpoint, e.seq, t_ns
    );
    let fill = size.saturating_sub(s.len() + 2);
    if pad.len() < fill {
        *pad = "x".repeat(fill);
    }
    s.push_str(&pad[..fill]);
    s.push_str("\"}");
    s
}

/// What a receiver reads back from a body (the padding is skipped).
#[derive(Debug, Deserialize)]
pub struct Stamp {
    /// Target index (the receivers key their ledger by the URL's endpoint).
    pub ep: usize,
    /// Sequence number within the endpoint.
    pub seq: u64,
    /// Publish time, unix nanoseconds.
    pub t: u64,
}

/// One event of a batched request's body (`[{"id":…,"data":{…}}, …]`).
#[derive(Debug, Deserialize)]
pub struct BatchItem {
    /// The event's payload.
    pub data: Stamp,
}

/// The stamps a verified body carries: one, or a batch's, in order.
pub fn stamps(body: &[u8]) -> Option<Vec<Stamp>> {
    if body.first() == Some(&b'[') {
        let items: Vec<BatchItem> = serde_json::from_slice(body).ok()?;
        Some(items.into_iter().map(|i| i.data).collect())
    } else {
        serde_json::from_slice::<Stamp>(body).ok().map(|s| vec![s])
    }
}

/// Wall-clock now, unix nanoseconds (the harness and Herald share a machine).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(dead: Option<u64>) -> Workload {
        Workload {
            prefix: "b".into(),
            endpoints: 10,
            payload_bytes: 256,
            dead_every: dead,
            fanout: 1,
        }
    }

    #[test]
    fn a_fan_out_publishes_to_applications_of_endpoints() {
        let w = Workload {
            endpoints: 1000,
            fanout: 10,
            ..workload(None)
        };
        assert_eq!((w.targets(), w.receiving()), (100, 1000));
        assert_eq!(w.app_id(0).as_deref(), Some("b-app-0"));
        assert_eq!(w.app_id(19).as_deref(), Some("b-app-1"));
        assert_eq!(w.app_id(999).as_deref(), Some("b-app-99"));
        let mut targets: Vec<usize> = (0..16).flat_map(|p| w.owned_by(p, 16)).collect();
        targets.sort();
        assert_eq!(targets, (0..100).collect::<Vec<_>>());
        let direct = workload(None);
        assert_eq!((direct.targets(), direct.receiving()), (10, 10));
        assert_eq!(direct.app_id(3), None);
    }

    #[test]
    fn bodies_have_the_requested_size_and_parse_back() {
        let mut pad = String::new();
        let e = Planned {
            endpoint: 7,
            seq: 42,
            dead: false,
        };
        let b = body(&e, 123, 1024, &mut pad);
        assert_eq!(b.len(), 1024);
        let s: Stamp = serde_json::from_str(&b).unwrap();
        assert_eq!((s.ep, s.seq, s.t), (7, 42, 123));
        // Smaller than the fixed fields: no padding, still valid JSON.
        let b = body(&e, 123, 1, &mut pad);
        assert!(serde_json::from_str::<Stamp>(&b).is_ok());
    }

    #[test]
    fn publishers_own_disjoint_endpoints_and_sequences_are_dense() {
        let w = workload(None);
        let mut all: Vec<usize> = (0..3).flat_map(|p| w.owned_by(p, 3)).collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        let mut s = EventStream::new(&w, 1, 3).unwrap();
        let evs: Vec<Planned> = (0..9).map(|_| s.next_event()).collect();
        // Endpoints 1, 4, 7 in turn, each counting 0, 1, 2.
        for (i, e) in evs.iter().enumerate() {
            assert_eq!(e.endpoint, [1, 4, 7][i % 3]);
            assert_eq!(e.seq, (i / 3) as u64);
        }
    }

    #[test]
    fn a_fifth_of_events_go_to_the_dead_endpoint() {
        let w = workload(Some(5));
        assert!(!w.owned_by(0, 2).contains(&DEAD_ENDPOINT));
        let mut s = EventStream::new(&w, 0, 2).unwrap();
        let dead = (0..1000).filter(|_| s.next_event().dead).count();
        assert_eq!(dead, 200);
    }

    #[test]
    fn a_batch_body_yields_its_stamps_in_order() {
        let one = stamps(br#"{"ep":1,"seq":2,"t":3,"pad":"x"}"#).unwrap();
        assert_eq!((one[0].ep, one[0].seq), (1, 2));
        let batch = br#"[{"id":"a","type":"t","created_at_ms":1,"data":{"ep":0,"seq":5,"t":9}},
                         {"id":"b","type":"t","created_at_ms":1,"data":{"ep":0,"seq":6,"t":9}}]"#;
        let seqs: Vec<u64> = stamps(batch).unwrap().iter().map(|s| s.seq).collect();
        assert_eq!(seqs, [5, 6]);
        assert!(stamps(b"[1, 2]").is_none());
    }
}
