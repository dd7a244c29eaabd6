//! Exhausted and refused events in the dead-letter topic, with their headers.

use crate::common::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::support::dlq::{DeadLetter, DlqTail};
use crate::support::ledger::Ledger;
use crate::support::{metric_sum_with, GUARD};
use herald_dispatch::sink::header;
use herald_proto::v1 as pb;
use herald_testkit::{Reply, TestReceiver};

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
