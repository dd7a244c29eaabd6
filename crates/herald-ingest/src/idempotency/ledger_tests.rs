//! The ledger's rules, and a model of several ingest nodes claiming keys
//! through one shared log, with crashes and restarts, checked against what
//! idempotency promises: nothing answered that was not written, one write
//! per key unless an owner died between its write and its answer, and every
//! node that has read the same log agrees.

use proptest::prelude::*;

use super::ledger::{Answer, Key, Ledger, Lookup, Progress, Record, RequestHash};

const WINDOW: i64 = 1_000_000;
const LEASE: i64 = 100;
/// The longest an events write takes (acknowledged or failed).
const BUDGET: i64 = 30;

fn key(k: u8) -> Key {
    [k; 32]
}

fn req(r: u8) -> RequestHash {
    [r; 32]
}

fn claim(id: &str, r: u8, at: i64) -> Record {
    Record::Claim {
        claim_id: id.into(),
        request: req(r),
        at_ms: at,
        lease_until_ms: at + LEASE,
    }
}

fn done(id: &str, r: u8, at: i64) -> Record {
    Record::Done {
        claim_id: id.into(),
        request: req(r),
        at_ms: at,
        answer: answer(r),
    }
}

fn answer(r: u8) -> Answer {
    Answer {
        event_id: format!("e{r}"),
        ..Default::default()
    }
}

fn progress(id: &str, through: &str, written: u32) -> Record {
    Record::Progress {
        claim_id: id.into(),
        progress: Progress {
            through: through.into(),
            written,
        },
    }
}

#[test]
fn fan_out_progress_is_kept_from_the_holder_and_carried_to_a_retry() {
    let mut l = Ledger::new(WINDOW, 10, BUDGET);
    l.apply(key(1), &claim("a", 1, 0));
    l.apply(key(1), &progress("b", "ep-9", 9));
    assert_eq!(
        l.progress(&key(1)),
        None,
        "only the holder records progress"
    );
    l.apply(key(1), &progress("a", "ep-3", 3));
    l.apply(key(1), &progress("a", "ep-2", 2));
    let at_3 = Some(Progress {
        through: "ep-3".into(),
        written: 3,
    });
    assert_eq!(l.progress(&key(1)), at_3, "progress never goes back");
    // The write failed: a retry of the same request resumes after ep-3.
    l.apply(
        key(1),
        &Record::Release {
            claim_id: "a".into(),
        },
    );
    l.apply(key(1), &claim("c", 1, 10));
    assert_eq!(l.lookup(&key(1), &req(1), Some("c"), 11), Lookup::Owned);
    assert_eq!(l.progress(&key(1)), at_3);
    // A claim that takes an expired lease over with another request starts
    // from nothing.
    l.apply(key(1), &claim("d", 2, 10 + LEASE + 1));
    assert_eq!(l.progress(&key(1)), None);
}

#[test]
fn first_claim_wins_and_the_answer_is_repeated() {
    let mut l = Ledger::new(WINDOW, 10, BUDGET);
    assert_eq!(l.lookup(&key(1), &req(1), None, 0), Lookup::Free);
    l.apply(key(1), &claim("a", 1, 0));
    l.apply(key(1), &claim("b", 1, 1));
    assert_eq!(l.lookup(&key(1), &req(1), Some("a"), 2), Lookup::Owned);
    // Too little lease left to start writing: wait for it to end instead.
    assert_eq!(
        l.lookup(&key(1), &req(1), Some("a"), LEASE - BUDGET + 1),
        Lookup::Wait { until_ms: LEASE }
    );
    assert_eq!(
        l.lookup(&key(1), &req(1), Some("b"), 2),
        Lookup::Wait { until_ms: LEASE }
    );
    assert_eq!(l.lookup(&key(1), &req(2), Some("b"), 2), Lookup::Conflict);
    l.apply(key(1), &done("a", 1, 3));
    assert_eq!(
        l.lookup(&key(1), &req(1), Some("b"), 4),
        Lookup::Done(answer(1))
    );
    assert_eq!(l.lookup(&key(1), &req(2), None, 4), Lookup::Conflict);
    // Other keys are untouched.
    assert_eq!(l.lookup(&key(2), &req(2), None, 4), Lookup::Free);
}

#[test]
fn a_release_or_an_ended_lease_frees_the_key() {
    let mut l = Ledger::new(WINDOW, 10, BUDGET);
    l.apply(key(1), &claim("a", 1, 0));
    l.apply(
        key(1),
        &Record::Release {
            claim_id: "b".into(),
        },
    );
    assert_eq!(
        l.lookup(&key(1), &req(1), None, 1),
        Lookup::Wait { until_ms: LEASE }
    );
    l.apply(
        key(1),
        &Record::Release {
            claim_id: "a".into(),
        },
    );
    assert_eq!(l.lookup(&key(1), &req(1), None, 1), Lookup::Free);
    l.apply(key(1), &claim("c", 1, 2));
    assert_eq!(l.lookup(&key(1), &req(1), None, LEASE + 3), Lookup::Free);
    // A claim written after the lease ended takes the key over ...
    l.apply(key(1), &claim("d", 1, LEASE + 3));
    assert_eq!(
        l.lookup(&key(1), &req(1), Some("d"), LEASE + 4),
        Lookup::Owned
    );
    // ... and the late owner's answer (same request: its events exist) still counts.
    l.apply(key(1), &done("c", 1, LEASE + 5));
    assert_eq!(
        l.lookup(&key(1), &req(1), Some("d"), LEASE + 6),
        Lookup::Done(answer(1))
    );
}

#[test]
fn a_release_keeps_other_requests_out_and_a_holder_renews() {
    let mut l = Ledger::new(WINDOW, 10, BUDGET);
    l.apply(key(1), &claim("a", 1, 0));
    l.apply(
        key(1),
        &Record::Release {
            claim_id: "a".into(),
        },
    );
    // The failed write may have landed: only the same request may retry.
    assert_eq!(l.lookup(&key(1), &req(2), None, 1), Lookup::Conflict);
    assert_eq!(l.lookup(&key(1), &req(1), None, 1), Lookup::Free);
    l.apply(key(1), &claim("x", 2, 2));
    assert_eq!(l.lookup(&key(1), &req(2), Some("x"), 3), Lookup::Conflict);
    l.apply(key(1), &claim("b", 1, 3));
    assert_eq!(l.lookup(&key(1), &req(1), Some("b"), 4), Lookup::Owned);
    assert!(l.holds(&key(1), "b", 4));
    assert!(
        !l.holds(&key(1), "b", LEASE - BUDGET + 4),
        "too little lease left"
    );
    // The holder renews: the lease runs from the renewal.
    l.apply(key(1), &claim("b", 1, 80));
    assert!(l.holds(&key(1), "b", 80 + LEASE - BUDGET));
    // A renewal after another claim took the key over changes nothing.
    l.apply(key(1), &claim("c", 1, 80 + LEASE + 1));
    l.apply(key(1), &claim("b", 1, 80 + LEASE + 2));
    assert!(!l.holds(&key(1), "b", 80 + LEASE + 3));
    assert_eq!(
        l.lookup(&key(1), &req(1), Some("c"), 80 + LEASE + 3),
        Lookup::Owned
    );
}

#[test]
fn a_claim_read_back_late_is_claimed_again() {
    let mut l = Ledger::new(WINDOW, 10, BUDGET);
    l.apply(key(1), &claim("a", 1, 0));
    assert_eq!(
        l.lookup(&key(1), &req(1), Some("a"), LEASE + 1),
        Lookup::Free
    );
}

#[test]
fn keys_end_with_the_window_and_the_capacity() {
    let mut l = Ledger::new(1_000, 2, BUDGET);
    l.apply(key(1), &claim("a", 1, 0));
    l.apply(key(1), &done("a", 1, 1));
    assert_eq!(l.lookup(&key(1), &req(2), None, 999), Lookup::Conflict);
    assert_eq!(l.lookup(&key(1), &req(2), None, 1_001), Lookup::Free);
    l.apply(key(1), &claim("b", 2, 1_001));
    assert_eq!(l.lookup(&key(1), &req(2), Some("b"), 1_002), Lookup::Owned);
    l.apply(key(2), &claim("c", 1, 1_003));
    l.apply(key(3), &claim("d", 1, 1_004));
    assert_eq!(l.len(), 2, "the oldest key is forgotten");
    assert_eq!(l.lookup(&key(1), &req(1), None, 1_005), Lookup::Free);
    let mut none = Ledger::new(1_000, 0, BUDGET);
    none.apply(key(1), &claim("a", 1, 0));
    assert!(none.is_empty());
}

/// One publish in flight on a model node.
#[derive(Debug, Clone)]
struct Flight {
    node: usize,
    key: u8,
    req: u8,
    claim: Option<(String, usize)>,
    stage: Stage,
    /// When the node found it owns the key.
    owned_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Looking,
    Owned,
    Written,
}

#[derive(Debug, Clone)]
enum Op {
    Publish { node: usize, key: u8, req: u8 },
    Read { node: usize, n: usize },
    Step { flight: usize, fail: bool },
    Crash { node: usize },
    Tick { ms: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 0..2u8, 0..2u8).prop_map(|(node, key, req)| Op::Publish { node, key, req }),
        (0..3usize, 1..4usize).prop_map(|(node, n)| Op::Read { node, n }),
        (0..8usize, prop::bool::weighted(0.1)).prop_map(|(flight, fail)| Op::Step { flight, fail }),
        (0..3usize).prop_map(|node| Op::Crash { node }),
        (1..60i64).prop_map(|ms| Op::Tick { ms }),
    ]
}

struct Model {
    log: Vec<(Key, Record)>,
    nodes: Vec<(Ledger, usize)>,
    flights: Vec<Flight>,
    now: i64,
    next_id: u32,
    /// Event writes per key: (request, whether its owner died or overran
    /// its lease before answering).
    writes: Vec<Vec<(u8, bool)>>,
}

impl Model {
    fn new() -> Self {
        Self {
            log: Vec::new(),
            nodes: (0..3)
                .map(|_| (Ledger::new(WINDOW, 100, BUDGET), 0))
                .collect(),
            flights: Vec::new(),
            now: 0,
            next_id: 0,
            writes: vec![Vec::new(); 2],
        }
    }

    fn read(&mut self, node: usize, n: usize) {
        let (ledger, cursor) = &mut self.nodes[node];
        for (k, r) in self.log.iter().skip(*cursor).take(n) {
            ledger.apply(*k, r);
            *cursor += 1;
        }
    }

    fn step(&mut self, i: usize, fail: bool) {
        let Some(f) = self.flights.get(i).cloned() else {
            return;
        };
        let (k, r) = (key(f.key), req(f.req));
        match f.stage {
            Stage::Looking => {
                let (ledger, cursor) = &self.nodes[f.node];
                // A claim counts only once the node has read it back.
                if let Some((_, at)) = &f.claim {
                    if cursor <= at {
                        return;
                    }
                }
                let mine = f.claim.as_ref().map(|(id, _)| id.as_str());
                match ledger.lookup(&k, &r, mine, self.now) {
                    Lookup::Free => {
                        self.next_id += 1;
                        let id = format!("c{}", self.next_id);
                        self.log.push((k, claim(&id, f.req, self.now)));
                        self.flights[i].claim = Some((id, self.log.len() - 1));
                    }
                    Lookup::Owned => {
                        self.flights[i].stage = Stage::Owned;
                        self.flights[i].owned_at = self.now;
                    }
                    Lookup::Done(a) => {
                        assert_eq!(a, answer(f.req), "the answer of another request");
                        assert!(
                            self.writes[f.key as usize].iter().any(|(w, _)| *w == f.req),
                            "answered a key whose events were never written"
                        );
                        self.flights.remove(i);
                    }
                    Lookup::Conflict => {
                        let other = self.log.iter().any(|(lk, rec)| {
                            *lk == k
                                && matches!(rec, Record::Claim { request, .. } if *request != r)
                        });
                        assert!(other, "a conflict with no other request claimed");
                        self.flights.remove(i);
                    }
                    Lookup::Wait { .. } => {}
                }
            }
            // A write not acknowledged within its budget has failed (the
            // producer's message timeout).
            Stage::Owned if fail || self.now > f.owned_at + BUDGET => {
                let (id, _) = f.claim.expect("owned with a claim");
                self.log.push((k, Record::Release { claim_id: id }));
                self.flights.remove(i);
            }
            Stage::Owned => {
                self.writes[f.key as usize].push((f.req, false));
                self.flights[i].stage = Stage::Written;
            }
            Stage::Written => {
                let (id, at) = f.claim.expect("written with a claim");
                let lease_over = match &self.log[at].1 {
                    Record::Claim { lease_until_ms, .. } => *lease_until_ms < self.now,
                    _ => unreachable!("a claim's offset"),
                };
                if lease_over {
                    self.excuse(f.key, f.req);
                }
                self.log.push((k, done(&id, f.req, self.now)));
                self.flights.remove(i);
            }
        }
    }

    /// Marks the key's last write by `req` as orphaned (its owner died or
    /// overran its lease): a takeover may write it again.
    fn excuse(&mut self, k: u8, r: u8) {
        if let Some(w) = self.writes[k as usize]
            .iter_mut()
            .rev()
            .find(|(w, _)| *w == r)
        {
            w.1 = true;
        }
    }

    fn crash(&mut self, node: usize) {
        for f in self.flights.clone().iter().filter(|f| f.node == node) {
            if f.stage == Stage::Written {
                self.excuse(f.key, f.req);
            }
        }
        self.flights.retain(|f| f.node != node);
        self.nodes[node] = (Ledger::new(WINDOW, 100, BUDGET), 0);
    }

    fn check(&self) {
        for writes in &self.writes {
            let unexcused = writes.iter().filter(|(_, orphan)| !orphan).count();
            let orphans = writes.len() - unexcused;
            assert!(
                writes.len() <= 1 + orphans,
                "a key's events were written twice: {writes:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn nodes_sharing_one_log_write_each_key_once(ops in prop::collection::vec(op(), 1..120)) {
        let mut m = Model::new();
        for op in ops {
            match op {
                Op::Publish { node, key, req } => {
                    if m.flights.len() < 8 {
                        m.flights.push(Flight { node, key, req, claim: None, stage: Stage::Looking, owned_at: 0 });
                    }
                }
                Op::Read { node, n } => m.read(node, n),
                Op::Step { flight, fail } => m.step(flight, fail),
                Op::Crash { node } => m.crash(node),
                Op::Tick { ms } => m.now += ms,
            }
            m.check();
        }
        // Every node that reads the whole log agrees on every key.
        for node in 0..3 {
            m.read(node, usize::MAX);
        }
        for k in 0..2 {
            for r in 0..2 {
                let looks: Vec<Lookup> = m.nodes.iter()
                    .map(|(l, _)| l.lookup(&key(k), &req(r), None, m.now))
                    .collect();
                prop_assert!(looks.windows(2).all(|w| w[0] == w[1]), "{looks:?}");
            }
        }
    }
}
