//! Failing endpoints never delay healthy ones; buffers stay under their caps.

use crate::common::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::ledger::{self, Ledger};
use crate::support::{metric_sum, metric_sum_with, GUARD};
use herald_testkit::{DeadEndpoint, Reply, Stall, StallingReceiver, TestReceiver};

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
