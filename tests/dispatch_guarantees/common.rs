//! What the dispatcher-guarantee tests share: the process harness, the
//! seed, payloads and waits.

use std::collections::{BTreeMap, HashSet};

use crate::support::cluster::ProcessCluster;
use crate::support::ledger::{self, Ledger};
use crate::support::procs;
use crate::support::GUARD;
use herald_proto::v1 as pb;
use herald_testkit::Reply;
use rand::rngs::StdRng;
use rand::Rng;
/// Partitions of every topic (the events and retry topics must match).
pub const PARTITIONS: i32 = 4;

/// The config file of a test: `sections` over the common base.
pub fn config_toml(sections: &[(&str, &str)]) -> String {
    procs::config_text(PARTITIONS, sections)
}

/// The seed of the tests' random choices: `HERALD_IT_SEED` or a fixed one.
pub fn seed() -> u64 {
    let seed = std::env::var("HERALD_IT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x4e7a1d);
    eprintln!("seed: {seed} (set HERALD_IT_SEED to change it)");
    seed
}

/// A mock broker process, a dispatcher process (`herald-it-node dispatch`,
/// so its `/metrics` are its own even when tests share a process) and an
/// in-process ingest node, all with one config file ([`ProcessCluster`]).
pub struct Harness {
    pub c: ProcessCluster,
    pub metrics_url: String,
}

impl Harness {
    pub async fn start(test: &str, toml: &str) -> Self {
        let mut c = ProcessCluster::start(test, toml).await;
        let metrics_url = c.spawn_dispatcher("warn,herald=info,herald_dispatch=info");
        Self { c, metrics_url }
    }

    /// The dispatcher's `/metrics`, as text.
    pub async fn metrics(&self) -> String {
        self.c.metrics(&self.metrics_url).await
    }

    /// Creates endpoint `id` posting to `url`.
    pub async fn endpoint(&self, id: &str, url: &str, ordered: bool, max_in_flight: u32) {
        self.endpoint_with(pb::CreateEndpointRequest {
            id: id.into(),
            url: url.into(),
            ordered: Some(ordered),
            max_in_flight,
            ..Default::default()
        })
        .await;
    }

    pub async fn endpoint_with(&self, req: pb::CreateEndpointRequest) {
        self.c.create_endpoint(req).await;
    }

    pub async fn publish(&self, items: &[(String, String)]) -> Vec<pb::PublishResponse> {
        self.c.publish(items, 100).await
    }

    /// Stops everything; the run directory is removed (the test passed).
    pub async fn shutdown(self) {
        self.c.shutdown().await;
    }
}

pub fn payload(ep: &str, seq: usize) -> String {
    format!(r#"{{"endpoint":"{ep}","seq":{seq}}}"#)
}

/// The `seq` of a delivered [`payload`].
pub fn seq_of(r: &herald_testkit::Recorded) -> usize {
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
    v["seq"].as_u64().expect("seq in body") as usize
}

/// `(endpoint, payload)` for `per` events of each of `eps`, ordered by
/// (seq, endpoint): every endpoint's events are in publish order, and the
/// endpoints' streams are interleaved.
pub fn interleaved(eps: &[String], per: usize) -> Vec<(String, String)> {
    (0..per)
        .flat_map(|seq| eps.iter().map(move |ep| (ep.clone(), payload(ep, seq))))
        .collect()
}

/// Event ids per endpoint, in publish order.
pub fn ids_by_endpoint(
    items: &[(String, String)],
    resps: &[pb::PublishResponse],
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((ep, _), r) in items.iter().zip(resps) {
        out.entry(ep.clone()).or_default().push(r.event_id.clone());
    }
    out
}

/// Waits until every id in `ids` got a 2xx, or panics saying what is missing.
pub async fn wait_delivered(ledger: &Ledger, ids: impl IntoIterator<Item = String>, what: &str) {
    let mut missing: HashSet<String> = ids.into_iter().collect();
    let total = missing.len();
    let mut seen = 0;
    let r = ledger
        .wait_until(
            |entries| {
                for e in &entries[seen..] {
                    if e.ok() {
                        missing.remove(&e.id);
                    }
                }
                seen = entries.len();
                missing.is_empty()
            },
            GUARD,
        )
        .await;
    if let Err(e) = r {
        let entries = ledger.entries();
        let delivered = ledger::delivered(&entries).len();
        panic!(
            "{what}: {e}; {} of {total} expected ids are missing ({delivered} delivered in all); per path: {:#?}",
            missing.len(),
            ledger::summary(&entries)
        );
    }
}

/// How the order test's receiver treats one endpoint.
#[derive(Debug, Clone, Copy)]
pub enum Script {
    /// Fail each event's first `k` attempts (503).
    FailFirst(u32),
    /// Fail the first `k` attempts of every `every`-th event.
    Bursts { every: usize, k: u32 },
    /// Answer the first attempt of every `every`-th event with 503 and
    /// `Retry-After: 1` (one second: longer than the in-memory window).
    RetryAfter { every: usize },
}

/// Answers a random failure now and then, from a short list of retryable ones.
pub fn random_failure(rng: &mut StdRng) -> Option<Reply> {
    if !rng.random_bool(0.1) {
        return None;
    }
    Some(match rng.random_range(0..6) {
        0 => Reply::status(500),
        1 => Reply::status(502),
        2 => Reply::status(503),
        3 => Reply::status(408),
        4 => Reply::status(302).header("location", "http://127.0.0.1:9/elsewhere"),
        _ => Reply::status(400).body("try again"),
    })
}
