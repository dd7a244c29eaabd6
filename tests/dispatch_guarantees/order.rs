//! Per-endpoint order across failures, retries and the retry topic.

use crate::common::*;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::support::ledger::{self, Ledger};
use crate::support::metric_sum;
use herald_testkit::{Reply, TestReceiver};
use rand::rngs::StdRng;
use rand::SeedableRng;

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
