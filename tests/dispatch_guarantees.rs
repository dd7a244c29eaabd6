//! The dispatcher's guarantees end to end, against a Kafka-protocol broker
//! running in its own process (`herald-it-node mock-broker`):
//!
//! - per-endpoint order across failed attempts, in-memory retries, moves to
//!   the retry topic and `Retry-After` (and no loss for unordered endpoints);
//! - isolation: dead, hanging and slow endpoints never delay healthy ones on
//!   the same partitions, while buffered events stay under their caps;
//! - dead letters: exhausted and finally-refused events, and the ordered
//!   backlog behind them, land in the dead-letter topic, in order, with the
//!   documented headers.
//!
//! Each test writes its config and its children's logs to a run directory
//! under the system temp directory (printed at start, removed when the test
//! passes), runs the broker and one dispatcher as processes and ingest in the
//! test process, and uses real HTTP receivers on port 0. Waits are event-driven; [`GUARD`] only turns a hang
//! into a failure.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_dispatch::sink::header;
use herald_proto::v1 as pb;
use herald_testkit::{DeadEndpoint, Reply, Stall, StallingReceiver, TestReceiver};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::cluster::ProcessCluster;
use support::dlq::{DeadLetter, DlqTail};
use support::ledger::{self, Ledger};
use support::procs;
use support::{metric_sum, metric_sum_with, GUARD};

/// Partitions of every topic (the events and retry topics must match).
const PARTITIONS: i32 = 4;

/// The config file of a test: `sections` over the common base.
fn config_toml(sections: &[(&str, &str)]) -> String {
    procs::config_text(PARTITIONS, sections)
}

/// The seed of the tests' random choices: `HERALD_IT_SEED` or a fixed one.
fn seed() -> u64 {
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
struct Harness {
    c: ProcessCluster,
    metrics_url: String,
}

impl Harness {
    async fn start(test: &str, toml: &str) -> Self {
        let mut c = ProcessCluster::start(test, toml).await;
        let metrics_url = c.spawn_dispatcher("warn,herald=info,herald_dispatch=info");
        Self { c, metrics_url }
    }

    /// The dispatcher's `/metrics`, as text.
    async fn metrics(&self) -> String {
        self.c.metrics(&self.metrics_url).await
    }

    /// Creates endpoint `id` posting to `url`.
    async fn endpoint(&self, id: &str, url: &str, ordered: bool, max_in_flight: u32) {
        self.endpoint_with(pb::CreateEndpointRequest {
            id: id.into(),
            url: url.into(),
            ordered: Some(ordered),
            max_in_flight,
            ..Default::default()
        })
        .await;
    }

    async fn endpoint_with(&self, req: pb::CreateEndpointRequest) {
        self.c.create_endpoint(req).await;
    }

    async fn publish(&self, items: &[(String, String)]) -> Vec<pb::PublishResponse> {
        self.c.publish(items, 100).await
    }

    /// Stops everything; the run directory is removed (the test passed).
    async fn shutdown(self) {
        self.c.shutdown().await;
    }
}

fn payload(ep: &str, seq: usize) -> String {
    format!(r#"{{"endpoint":"{ep}","seq":{seq}}}"#)
}

/// The `seq` of a delivered [`payload`].
fn seq_of(r: &herald_testkit::Recorded) -> usize {
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
    v["seq"].as_u64().expect("seq in body") as usize
}

/// `(endpoint, payload)` for `per` events of each of `eps`, ordered by
/// (seq, endpoint): every endpoint's events are in publish order, and the
/// endpoints' streams are interleaved.
fn interleaved(eps: &[String], per: usize) -> Vec<(String, String)> {
    (0..per)
        .flat_map(|seq| eps.iter().map(move |ep| (ep.clone(), payload(ep, seq))))
        .collect()
}

/// Event ids per endpoint, in publish order.
fn ids_by_endpoint(
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
async fn wait_delivered(ledger: &Ledger, ids: impl IntoIterator<Item = String>, what: &str) {
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
enum Script {
    /// Fail each event's first `k` attempts (503).
    FailFirst(u32),
    /// Fail the first `k` attempts of every `every`-th event.
    Bursts { every: usize, k: u32 },
    /// Answer the first attempt of every `every`-th event with 503 and
    /// `Retry-After: 1` (one second: longer than the in-memory window).
    RetryAfter { every: usize },
}

/// Answers a random failure now and then, from a short list of retryable ones.
fn random_failure(rng: &mut StdRng) -> Option<Reply> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_delivery_survives_failures_and_the_retry_topic() {
    const PER: usize = 200;
    const RETRY_AFTER_EVERY: usize = 50;
    // Retries after 5 and 10 ms wait in memory; from the third on (25 ms,
    // jittered 20..30 ms) they are longer than `in_memory_max`, so a live
    // lane moves its backlog to the retry topic. Lanes also overflow into
    // the retry topic at 40 events. The schedule is long enough that random
    // failures on top of the scripted ones never exhaust it.
    let h = Harness::start(
        "order",
        &config_toml(&[
            ("dispatch", "max_buffered_per_lane = 40"),
            // The circuit opens after 5 failures in a row (the bursts and
            // fail-4 endpoints trip it) and probes again 200 ms later.
            ("endpoint_health", "failures_to_open = 5\ncool_down = \"200ms\""),
            (
                "retry",
                r#"schedule = ["5ms", "10ms", "25ms", "25ms", "25ms", "25ms", "25ms", "25ms", "25ms", "25ms", "25ms", "25ms", "25ms", "25ms", "25ms", "25ms", "25ms", "25ms", "25ms", "25ms"]
jitter = 0.2
in_memory_max = "20ms""#,
            ),
        ]),
    )
    .await;
    let ordered: Vec<(&str, Script)> = vec![
        ("random-only", Script::FailFirst(0)),
        ("fail-1", Script::FailFirst(1)),
        ("fail-2", Script::FailFirst(2)),
        ("fail-4", Script::FailFirst(4)),
        ("bursts", Script::Bursts { every: 25, k: 5 }),
        (
            "retry-after",
            Script::RetryAfter {
                every: RETRY_AFTER_EVERY,
            },
        ),
    ];
    let unordered = ("unordered", Script::FailFirst(2));
    let scripts: HashMap<String, Script> = ordered
        .iter()
        .chain([&unordered])
        .map(|(ep, s)| (format!("/{ep}"), *s))
        .collect();

    let ledger = Ledger::new();
    let rng = Mutex::new(StdRng::seed_from_u64(seed()));
    let policy = ledger.policy(move |r, _| {
        let script = scripts[&r.path];
        let seq = seq_of(r);
        let scripted = match script {
            Script::FailFirst(k) => r.id_attempt <= k,
            Script::Bursts { every, k } => seq.is_multiple_of(every) && r.id_attempt <= k,
            Script::RetryAfter { every } => seq.is_multiple_of(every) && r.id_attempt == 1,
        };
        if scripted {
            return match script {
                Script::RetryAfter { .. } => Reply::status(503).header("retry-after", "1"),
                _ => Reply::status(503),
            };
        }
        random_failure(&mut rng.lock().unwrap()).unwrap_or(Reply::status(200))
    });
    let receiver = TestReceiver::with_policy(policy).await.unwrap();
    for (ep, _) in &ordered {
        h.endpoint(ep, &receiver.url_for(ep), true, 0).await;
    }
    h.endpoint(unordered.0, &receiver.url_for(unordered.0), false, 4)
        .await;

    let eps: Vec<String> = ordered
        .iter()
        .chain([&unordered])
        .map(|(ep, _)| ep.to_string())
        .collect();
    let items = interleaved(&eps, PER);
    let resps = h.publish(&items).await;
    let ids = ids_by_endpoint(&items, &resps);
    eprintln!(
        "published {} events to {} endpoints",
        items.len(),
        eps.len()
    );
    wait_delivered(
        &ledger,
        ids.values().flatten().cloned(),
        "every event is delivered",
    )
    .await;

    // Order: no event of an ordered endpoint was sent before its predecessor
    // had been answered 2xx.
    let entries = ledger.entries();
    let none = HashSet::new();
    let mut violations = Vec::new();
    for (ep, _) in &ordered {
        violations.extend(ledger::order_violations(
            &entries,
            &format!("/{ep}"),
            &ids[*ep],
            &none,
        ));
    }
    assert!(
        violations.is_empty(),
        "{} order violations, first ones: {:#?}",
        violations.len(),
        &violations[..violations.len().min(10)]
    );
    let failures = entries.iter().filter(|e| !e.ok()).count();
    eprintln!(
        "{} requests, {} failed answers, {} events",
        entries.len(),
        failures,
        items.len()
    );

    // Retry-After was honoured: the retry of an event answered 503 +
    // `Retry-After: 1` came at least a second after that answer (the bound
    // is the policy's, not the test's; 10 ms of slack for clock rounding).
    let all = receiver.requests_for("retry-after");
    let mut by_id: HashMap<&str, Vec<&herald_testkit::Recorded>> = HashMap::new();
    for r in &all {
        by_id.entry(r.webhook_id()).or_default().push(r);
    }
    let mut checked = 0;
    for (id, attempts) in &by_id {
        if !seq_of(attempts[0]).is_multiple_of(RETRY_AFTER_EVERY) {
            continue;
        }
        assert!(attempts.len() >= 2, "{id}: retried after its 503");
        let gap = attempts[1].at.duration_since(attempts[0].at);
        assert!(
            gap >= Duration::from_millis(990),
            "{id}: retried {gap:?} after a 503 with Retry-After: 1"
        );
        checked += 1;
    }
    assert_eq!(checked, PER / RETRY_AFTER_EVERY);

    // The durable path ran, and nothing was given up on.
    let metrics = h.metrics().await;
    let retry_writes = metric_sum(&metrics, "herald_retry_writes_total").unwrap_or(0.0);
    assert!(retry_writes > 0.0, "no retry-topic writes:\n{metrics}");
    let dead = metric_sum(&metrics, "herald_dead_letters_total").unwrap_or(0.0);
    assert_eq!(
        dead, 0.0,
        "dead letters in a run that never exhausts its schedule"
    );
    eprintln!("retry-topic writes: {retry_writes}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoints_do_not_delay_healthy_ones() {
    const HEALTHY: usize = 50;
    const BAD_EVENTS: usize = 20;
    const ROUNDS: usize = 4;
    const PER_ROUND: usize = 5;
    const MAX_PER_PARTITION: usize = 100;
    // A hanging endpoint costs a 2 s timeout per attempt; the slow one
    // answers after 1 s, inside it. Retries longer than 300 ms go through
    // the retry topic; the schedule outlasts the test, so the bad
    // endpoints keep failing (nothing is dead-lettered meanwhile).
    let h = Harness::start(
        "isolation",
        &config_toml(&[
            (
                "dispatch",
                &format!("max_buffered_per_partition = {MAX_PER_PARTITION}\nmax_buffered_per_lane = 10\ndrain_timeout_ms = 3000"),
            ),
            ("delivery", "timeout_ms = 2000\nconnect_timeout_ms = 1000"),
            (
                "retry",
                &format!(
                    "schedule = [\"100ms\", \"200ms\", \"500ms\", {}]\nin_memory_max = \"300ms\"",
                    vec!["\"1s\""; 120].join(", ")
                ),
            ),
        ]),
    )
    .await;
    let dead = DeadEndpoint::new().unwrap();
    let hanging = StallingReceiver::start(Stall::Forever).await.unwrap();
    let slow = StallingReceiver::start(Stall::For(Duration::from_secs(1)))
        .await
        .unwrap();
    let ledger = Ledger::new();
    let receiver = TestReceiver::with_policy(ledger.policy(|_, _| Reply::status(200)))
        .await
        .unwrap();
    h.endpoint("dead", &dead.url_for("dead"), true, 0).await;
    h.endpoint("hanging", &hanging.url_for("hanging"), true, 0)
        .await;
    h.endpoint("slow", &slow.url_for("slow"), true, 0).await;
    let healthy: Vec<String> = (0..HEALTHY).map(|i| format!("healthy-{i:02}")).collect();
    for ep in &healthy {
        h.endpoint(ep, &receiver.url_for(ep), true, 0).await;
    }

    // Sample the buffered-events gauge after every answer the healthy
    // receiver gives (event-driven, at most one scrape at a time).
    let max_gauge = Arc::new(Mutex::new(0.0f64));
    let sampler = {
        let (ledger, max_gauge) = (ledger.clone(), max_gauge.clone());
        let url = h.metrics_url.clone();
        tokio::spawn(async move {
            loop {
                let seen = ledger.len();
                if let Ok(a) = herald_testkit::http::get(&url).await {
                    if let Some(v) = metric_sum(&a.text(), "herald_lane_events") {
                        let mut m = max_gauge.lock().unwrap();
                        *m = m.max(v);
                    }
                }
                // The next scrape follows the next answer.
                let _ = ledger.wait_until(|e| e.len() > seen, GUARD).await;
            }
        })
    };

    // The outages start first, and are under way before healthy traffic.
    let bad: Vec<String> = ["dead", "hanging", "slow"].map(String::from).to_vec();
    let bad_items = interleaved(&bad, BAD_EVENTS);
    let bad_resps = h.publish(&bad_items).await;
    hanging
        .wait_for_requests(1, GUARD)
        .await
        .expect("the hanging endpoint is attempted");
    slow.wait_for_requests(1, GUARD)
        .await
        .expect("the slow endpoint is attempted");

    let mut healthy_ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    for ((ep, _), r) in bad_items.iter().zip(&bad_resps) {
        partition_of.insert(ep.clone(), r.partition);
    }
    for round in 0..ROUNDS {
        // Each round starts only once the outage has gone on further: the
        // hanging endpoint has been attempted once more (each attempt costs
        // the 2 s timeout, then a retry, later through the retry topic).
        hanging
            .wait_for_requests(round + 1, GUARD)
            .await
            .unwrap_or_else(|e| panic!("the hanging endpoint is retried: {e}"));
        let items: Vec<(String, String)> = (0..PER_ROUND)
            .flat_map(|i| {
                healthy
                    .iter()
                    .map(move |ep| (ep.clone(), payload(ep, round * PER_ROUND + i)))
            })
            .collect();
        let resps = h.publish(&items).await;
        for ((ep, _), r) in items.iter().zip(&resps) {
            partition_of.insert(ep.clone(), r.partition);
            healthy_ids
                .entry(ep.clone())
                .or_default()
                .push(r.event_id.clone());
        }
        wait_delivered(
            &ledger,
            resps.iter().map(|r| r.event_id.clone()),
            &format!("round {round}: healthy events are delivered during the outages"),
        )
        .await;
        // The bad endpoints are still bad.
        assert_eq!(hanging.answered(), 0);
        let gauge = metric_sum(&h.metrics().await, "herald_lane_events").unwrap_or(0.0);
        eprintln!(
            "round {round}: {} healthy events delivered; lane events now {gauge}; hanging endpoint attempted {} times, slow endpoint {} times",
            items.len(),
            hanging.requests().len(),
            slow.requests().len()
        );
        let mut m = max_gauge.lock().unwrap();
        *m = m.max(gauge);
    }
    sampler.abort();

    // Each bad endpoint shares its partition with healthy ones (so the test
    // is about isolation within a partition, not only across partitions).
    for ep in &bad {
        let p = partition_of[ep];
        let neighbours = healthy.iter().filter(|h| partition_of[*h] == p).count();
        assert!(
            neighbours > 0,
            "{ep} (partition {p}) shares no partition with a healthy endpoint"
        );
    }
    // Healthy endpoints kept their order.
    let entries = ledger.entries();
    for (ep, ids) in &healthy_ids {
        let v = ledger::order_violations(&entries, &format!("/{ep}"), ids, &HashSet::new());
        assert!(v.is_empty(), "{v:#?}");
    }
    // The bad endpoints stayed bad: the hanging one never answered, the dead
    // one was attempted (connection errors have no status) and nothing of
    // theirs was dead-lettered or delivered by the healthy receiver.
    assert_eq!(hanging.answered(), 0);
    assert!(!hanging.requests().is_empty());
    assert!(!slow.requests().is_empty());
    let metrics = h.metrics().await;
    let retry_writes = metric_sum(&metrics, "herald_retry_writes_total").unwrap_or(0.0);
    assert!(
        retry_writes > 0.0,
        "the bad lanes never moved to the retry topic:\n{metrics}"
    );
    let no_status = metric_sum_with(
        &metrics,
        "herald_delivery_attempts_total",
        "status_class=\"none\"",
    )
    .unwrap_or(0.0);
    assert!(
        no_status > 0.0,
        "no attempt without an answer recorded:\n{metrics}"
    );
    assert!(entries.iter().all(|e| e.path.starts_with("/healthy-")));
    let bad_ids: HashSet<&str> = bad_resps.iter().map(|r| r.event_id.as_str()).collect();
    assert!(entries.iter().all(|e| !bad_ids.contains(e.id.as_str())));

    // Memory stayed under the configured caps at every sample.
    let cap = (MAX_PER_PARTITION * PARTITIONS as usize) as f64;
    let max = *max_gauge.lock().unwrap();
    let pauses = metric_sum(&metrics, "herald_partition_pauses_total").unwrap_or(0.0);
    eprintln!("largest herald_lane_events sample: {max} (cap {cap}); partition pauses: {pauses}");
    assert!(
        max <= cap,
        "herald_lane_events reached {max}, above {MAX_PER_PARTITION} x {PARTITIONS} partitions"
    );
    h.shutdown().await;
}

/// The dead letters of endpoint `ep`, in the dead-letter topic's order.
fn letters_of<'a>(all: &'a [DeadLetter], ep: &str) -> Vec<&'a DeadLetter> {
    let mut v: Vec<&DeadLetter> = all.iter().filter(|d| d.key == ep).collect();
    // One endpoint's records are in one partition: offset order is topic order.
    v.sort_by_key(|d| (d.partition, d.offset));
    v
}

/// What one dead letter should say.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Why {
    /// Retries exhausted after `attempts` attempts answered `status`.
    Exhausted {
        attempts: i64,
        status: u16,
        min_span_ms: i64,
    },
    /// A final answer on the first attempt.
    Final { status: u16 },
    /// Followed a dead-lettered predecessor without being attempted.
    Predecessor,
}

/// Checks one dead letter against the event it came from.
#[track_caller]
fn check_letter(d: &DeadLetter, ep: &str, published: &pb::PublishResponse, why: Why) {
    let ctx = format!(
        "dead letter of {ep} {}: headers {:?}",
        published.event_id, d.headers
    );
    assert_eq!(d.key, ep, "{ctx}");
    assert_eq!(d.header(header::EVENT_ID), published.event_id, "{ctx}");
    assert_eq!(d.envelope.event_id, published.event_id, "{ctx}");
    assert_eq!(d.header(header::ENDPOINT_ID), ep, "{ctx}");
    assert_eq!(d.header(header::ORIGIN_TOPIC), "herald.events", "{ctx}");
    assert_eq!(
        d.int(header::ORIGIN_PARTITION),
        published.partition as i64,
        "{ctx}"
    );
    assert_eq!(d.int(header::ORIGIN_OFFSET), published.offset, "{ctx}");
    assert_eq!(
        d.partition, published.partition,
        "{ctx}: same partition number as the event"
    );
    let attempts = d.int(header::ATTEMPTS);
    let first = d.int(header::FIRST_ATTEMPT_MS);
    let last = d.int(header::LAST_ATTEMPT_MS);
    let dead_at = d.int(header::DEAD_LETTERED_MS);
    let state = d.envelope.attempt.clone().unwrap_or_default();
    assert_eq!(
        (attempts, first, last),
        (
            state.attempts as i64,
            state.first_attempt_ms,
            state.last_attempt_ms
        ),
        "{ctx}: headers agree with the envelope's attempt state"
    );
    match why {
        Why::Exhausted {
            attempts: n,
            status,
            min_span_ms,
        } => {
            assert_eq!(d.header(header::REASON), "attempts_exhausted", "{ctx}");
            assert_eq!(attempts, n, "{ctx}");
            assert_eq!(d.int(header::LAST_STATUS), status as i64, "{ctx}");
            assert_eq!(
                d.header(header::LAST_ERROR),
                format!("HTTP {status}"),
                "{ctx}"
            );
            assert!(
                first >= d.envelope.created_at_ms,
                "{ctx}: first attempt after publish"
            );
            // The schedule's delays (no jitter) lie between the first and last attempt.
            assert!(
                last - first >= min_span_ms,
                "{ctx}: attempts span {} ms",
                last - first
            );
            assert!(dead_at >= last, "{ctx}");
        }
        Why::Final { status } => {
            assert_eq!(d.header(header::REASON), "final_answer", "{ctx}");
            assert_eq!(attempts, 1, "{ctx}");
            assert_eq!(d.int(header::LAST_STATUS), status as i64, "{ctx}");
            assert_eq!(
                d.header(header::LAST_ERROR),
                format!("HTTP {status}"),
                "{ctx}"
            );
            assert!(first > 0 && first == last, "{ctx}");
            assert!(dead_at >= last, "{ctx}");
        }
        Why::Predecessor => {
            assert_eq!(
                d.header(header::REASON),
                "predecessor_dead_lettered",
                "{ctx}"
            );
            assert_eq!(attempts, 0, "{ctx}: never attempted");
            assert!(
                !d.headers.contains_key(header::LAST_STATUS),
                "{ctx}: no status without an attempt"
            );
            assert_eq!((first, last), (0, 0), "{ctx}");
            assert!(dead_at >= d.envelope.created_at_ms, "{ctx}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_events_are_dead_lettered_with_headers() {
    // Three retries 50 ms apart, without jitter, all in memory; the
    // "durable" endpoint overrides that with waits past `in_memory_max`, so
    // its events are exhausted out of the retry topic.
    let h = Harness::start(
        "dlq",
        &config_toml(&[
            (
                "retry",
                r#"schedule = ["50ms", "50ms", "50ms"]
jitter = 0.0
in_memory_max = "100ms""#,
            ),
            // No circuit breaker: its cool-down would only delay the
            // attempts this test counts.
            ("endpoint_health", "failures_to_open = 0"),
        ]),
    )
    .await;
    let healed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ledger = Ledger::new();
    let policy = {
        let healed = healed.clone();
        ledger.policy(move |r, _| match r.path.as_str() {
            "/gone" => Reply::status(410),
            "/exhaust" if healed.load(std::sync::atomic::Ordering::SeqCst) => Reply::status(200),
            _ => Reply::status(500),
        })
    };
    let receiver = TestReceiver::with_policy(policy).await.unwrap();
    h.endpoint("exhaust", &receiver.url_for("exhaust"), true, 0)
        .await;
    h.endpoint("gone", &receiver.url_for("gone"), true, 0).await;
    h.endpoint("unordered", &receiver.url_for("unordered"), false, 0)
        .await;
    h.endpoint_with(pb::CreateEndpointRequest {
        id: "durable".into(),
        url: receiver.url_for("durable"),
        retry_schedule_ms: vec![50, 150, 150],
        ..Default::default()
    })
    .await;
    let dlq = DlqTail::start(h.c.bootstrap(), "herald.dlq", PARTITIONS, ledger.clone());
    let wait_dlq = |n: usize, what: &'static str| {
        let (ledger, dlq) = (ledger.clone(), &dlq);
        async move {
            ledger
                .wait_until(|_| dlq.len() >= n, GUARD)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}; {} dead letters read", dlq.len()));
        }
    };

    // Each ordered endpoint's events are published in one batch, so the
    // dispatcher has read all of them before the head's retries end: they
    // follow the head to the dead-letter topic.
    let batch = |ep: &str, seqs: std::ops::Range<usize>| -> Vec<(String, String)> {
        seqs.map(|s| (ep.to_string(), payload(ep, s))).collect()
    };
    let first: Vec<(String, String)> = [
        batch("exhaust", 0..6),
        batch("gone", 0..3),
        batch("durable", 0..5),
        batch("unordered", 0..4),
    ]
    .concat();
    let mut published = h.publish(&first).await;
    wait_dlq(first.len(), "the first events are dead-lettered").await;
    // After the backlog was flushed, the lane takes new events as new: the
    // next head is attempted (and exhausted) on its own.
    let second = batch("exhaust", 6..10);
    published.extend(h.publish(&second).await);
    wait_dlq(
        first.len() + second.len(),
        "the second batch is dead-lettered",
    )
    .await;
    let items: Vec<(String, String)> = first.into_iter().chain(second).collect();
    let ids = ids_by_endpoint(&items, &published);
    let by_id: HashMap<&str, &pb::PublishResponse> =
        published.iter().map(|r| (r.event_id.as_str(), r)).collect();

    let letters = dlq.records();
    assert_eq!(
        letters.len(),
        items.len(),
        "exactly one dead letter per event: {letters:#?}"
    );
    let exhausted = |attempts: i64, min_span_ms: i64| Why::Exhausted {
        attempts,
        status: 500,
        min_span_ms,
    };
    let expect: Vec<(&str, Vec<Why>)> = vec![
        (
            "exhaust",
            [
                vec![exhausted(4, 150)],
                vec![Why::Predecessor; 5],
                vec![exhausted(4, 150)],
                vec![Why::Predecessor; 3],
            ]
            .concat(),
        ),
        (
            "gone",
            [vec![Why::Final { status: 410 }], vec![Why::Predecessor; 2]].concat(),
        ),
        (
            "durable",
            [vec![exhausted(4, 350)], vec![Why::Predecessor; 4]].concat(),
        ),
    ];
    for (ep, whys) in &expect {
        let got = letters_of(&letters, ep);
        let got_ids: Vec<&str> = got.iter().map(|d| d.envelope.event_id.as_str()).collect();
        let want_ids: Vec<&str> = ids[*ep].iter().map(String::as_str).collect();
        assert_eq!(got_ids, want_ids, "{ep}: dead letters in publish order");
        for (d, why) in got.iter().zip(whys) {
            check_letter(d, ep, by_id[d.envelope.event_id.as_str()], *why);
        }
    }
    // Unordered: every event exhausts its own retries; any order.
    let got = letters_of(&letters, "unordered");
    let got_ids: HashSet<&str> = got.iter().map(|d| d.envelope.event_id.as_str()).collect();
    let want_ids: HashSet<&str> = ids["unordered"].iter().map(String::as_str).collect();
    assert_eq!(got_ids, want_ids);
    for d in got {
        check_letter(
            d,
            "unordered",
            by_id[d.envelope.event_id.as_str()],
            exhausted(4, 150),
        );
    }

    // Followers were never sent; heads were sent once per attempt.
    let entries = ledger.entries();
    let mut sent: HashMap<&str, usize> = HashMap::new();
    for e in &entries {
        *sent.entry(e.id.as_str()).or_default() += 1;
    }
    for d in &letters {
        let n = sent.get(d.envelope.event_id.as_str()).copied().unwrap_or(0) as i64;
        assert_eq!(
            n,
            d.int(header::ATTEMPTS),
            "requests for {} ({})",
            d.envelope.event_id,
            d.key
        );
    }

    // The lane is usable again: once the endpoint recovers, a new event is
    // delivered, not dead-lettered.
    healed.store(true, std::sync::atomic::Ordering::SeqCst);
    let after = h.publish(&batch("exhaust", 10..11)).await;
    wait_delivered(
        &ledger,
        [after[0].event_id.clone()],
        "a new event after the flush",
    )
    .await;

    // The counters agree with the topic (they are bumped right after the
    // write is acknowledged: poll briefly, bounded).
    let want = [
        ("attempts_exhausted", 2 + 1 + 4),
        ("final_answer", 1),
        ("predecessor_dead_lettered", 5 + 3 + 2 + 4),
    ];
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = h.metrics().await;
        let all = want.iter().all(|(reason, n)| {
            metric_sum_with(
                &metrics,
                "herald_dead_letters_total",
                &format!("reason=\"{reason}\""),
            ) == Some(*n as f64)
        });
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (reason, n) in want {
        assert_eq!(
            metric_sum_with(
                &metrics,
                "herald_dead_letters_total",
                &format!("reason=\"{reason}\"")
            ),
            Some(n as f64),
            "herald_dead_letters_total{{reason=\"{reason}\"}}"
        );
    }
    drop(dlq);
    h.shutdown().await;
}
