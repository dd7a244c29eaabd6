//! Observability end to end (issue 5): `/metrics` after a run with
//! successes, retries and a dead letter; the attempt log of an event with a
//! failed-then-successful history (gRPC and `herald attempts`); and logs
//! that never show a secret or a signature.
//!
//! The broker runs as its own process (`herald-it-node mock-broker`). Where
//! counts or logs must belong to one dispatcher, the dispatcher is a child
//! process (`herald-it-node dispatch`) and ingest runs in the test process;
//! the in-process recorder is shared by every test in this binary, so the
//! ingest node's metrics are checked with `>=`.
//!
//! Waits are event-driven with generous failure guards: the receiver's
//! requests, the attempt log (a dispatcher records an attempt's metrics and
//! log line before it hands the attempt to the attempt log), the operations
//! topic (`event.exhausted` is emitted after the dead-letter counter moved)
//! and the dispatcher's own log lines.

mod support;

use std::path::Path;

use herald_proto::v1 as pb;
use herald_testkit::{Policy, Reply, TestReceiver};
use support::attempts_tail::AttemptsTail;
use support::cluster::ProcessCluster;
use support::dlq::DlqTail;
use support::ledger::Ledger;
use support::ops::OpsTail;
use support::procs;
use support::promtext;
use support::GUARD;

const PARTITIONS: i32 = 2;

/// The shared process harness, with this file's partition count.
async fn cluster(test: &str, sections: &[(&str, &str)]) -> ProcessCluster {
    ProcessCluster::start(test, &procs::config_text(PARTITIONS, sections)).await
}

fn attempts_tail(c: &ProcessCluster) -> AttemptsTail {
    AttemptsTail::start(c.bootstrap(), "herald.attempts", PARTITIONS)
}

fn endpoint_req(id: &str, url: &str) -> pb::CreateEndpointRequest {
    pb::CreateEndpointRequest {
        id: id.into(),
        url: url.into(),
        ..Default::default()
    }
}

async fn get_text(url: &str) -> String {
    let a = herald_testkit::http::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(a.status, 200, "GET {url}: {}", a.text());
    a.text()
}

#[track_caller]
fn count(m: &promtext::Exposition, name: &str, with: &[(&str, &str)]) -> f64 {
    m.sum(name, with)
        .unwrap_or_else(|| panic!("no sample {name} with {with:?} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count() {
    let mut c = cluster(
        "obs-metrics",
        &[
            ("retry", "schedule = [\"50ms\"]\njitter = 0.0"),
            ("endpoint_health", "failures_to_open = 0"),
        ],
    )
    .await;
    let receiver = TestReceiver::with_policy(Policy::by_path(
        [
            ("/ok".to_string(), Policy::always(200)),
            ("/flaky".to_string(), Policy::fail_first(1, 500)),
            ("/broken".to_string(), Policy::always(500)),
        ],
        Policy::always(404),
    ))
    .await
    .unwrap();
    for ep in ["ok", "flaky", "broken"] {
        c.create_endpoint(endpoint_req(ep, &receiver.url_for(ep)))
            .await;
    }
    let metrics_url = c.spawn_dispatcher("warn,herald=info");
    let attempts = attempts_tail(&c);
    let ops = OpsTail::start(c.bootstrap(), "herald.ops");
    let ledger = Ledger::new();
    let dlq = DlqTail::start(c.bootstrap(), "herald.dlq", PARTITIONS, ledger.clone());

    let mut delivered_ids = Vec::new();
    for (ep, n) in [("ok", 5), ("flaky", 3)] {
        for i in 0..n {
            let id = c
                .node()
                .publish(ep, &format!("{{\"n\":{i}}}"))
                .await
                .event_id;
            delivered_ids.push(id);
        }
    }
    let dead_id = c.node().publish("broken", "{\"n\":0}").await.event_id;

    receiver
        .wait_for_ids(&delivered_ids, GUARD)
        .await
        .expect("every event of /ok and /flaky arrives");
    ledger
        .wait_until(|_| dlq.len() >= 1, GUARD)
        .await
        .expect("the /broken event is dead-lettered");
    let dead = dlq.records();
    assert_eq!(dead.len(), 1, "one dead letter: {dead:?}");
    assert_eq!(dead[0].envelope.event_id, dead_id);
    // Fences: the counter of a dead letter moves before `event.exhausted` is
    // emitted; an attempt's metrics before its attempt-log record.
    ops.wait_kind("event.exhausted", "broken", GUARD).await;
    // 5 + 3 successes, 3 + 2 retryable failures.
    attempts
        .wait_count(13, GUARD)
        .await
        .expect("13 attempts in the attempt log");
    let recs = attempts.records();
    assert_eq!(recs.len(), 13, "no further attempts: {recs:?}");

    let text = get_text(&metrics_url).await;
    let m =
        promtext::parse(&text).unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"));
    let a = "herald_delivery_attempts_total";
    assert_eq!(count(&m, a, &[("outcome", "success")]), 8.0, "{text}");
    assert_eq!(
        count(&m, a, &[("outcome", "success"), ("status_class", "2xx")]),
        8.0
    );
    assert_eq!(count(&m, a, &[("outcome", "retryable")]), 5.0, "{text}");
    assert_eq!(
        count(&m, a, &[("outcome", "retryable"), ("status_class", "5xx")]),
        5.0
    );
    assert_eq!(m.sum(a, &[("outcome", "final")]).unwrap_or(0.0), 0.0);
    assert_eq!(m.sum(a, &[("outcome", "refused")]).unwrap_or(0.0), 0.0);
    assert_eq!(count(&m, a, &[]), 13.0);
    assert_eq!(
        count(
            &m,
            "herald_dead_letters_total",
            &[("reason", "attempts_exhausted")]
        ),
        1.0
    );
    assert_eq!(count(&m, "herald_dead_letters_total", &[]), 1.0);
    assert_eq!(count(&m, "herald_events_delivered_total", &[]), 8.0);
    assert_eq!(
        count(&m, "herald_delivery_duration_seconds_count", &[]),
        13.0
    );
    assert_eq!(
        count(
            &m,
            "herald_delivery_duration_seconds_count",
            &[("outcome", "retryable")]
        ),
        5.0
    );
    assert_eq!(
        count(&m, "herald_end_to_end_latency_seconds_count", &[]),
        8.0
    );
    // Histogram shape: the +Inf bucket equals the count.
    assert_eq!(
        count(
            &m,
            "herald_end_to_end_latency_seconds_bucket",
            &[("le", "+Inf")]
        ),
        8.0
    );
    for (name, kind) in [
        ("herald_delivery_attempts_total", "counter"),
        ("herald_dead_letters_total", "counter"),
        ("herald_events_delivered_total", "counter"),
        ("herald_delivery_duration_seconds", "histogram"),
        ("herald_end_to_end_latency_seconds", "histogram"),
    ] {
        assert_eq!(
            m.types.get(name).map(String::as_str),
            Some(kind),
            "# TYPE of {name}"
        );
    }
    // Bounded labels: no endpoint id, event id or URL in any label value.
    for s in &m.samples {
        for v in s.labels.values() {
            assert!(
                !v.contains("127.0.0.1") && !delivered_ids.contains(v) && *v != dead_id,
                "unbounded label value on {s:?}"
            );
        }
    }

    // The ingest node (in-process, shared recorder).
    let text = c.node().metrics().await;
    let m = promtext::parse(&text)
        .unwrap_or_else(|e| panic!("ingest /metrics does not parse: {e}\n{text}"));
    assert!(
        count(&m, "herald_events_published_total", &[("outcome", "ok")]) >= 9.0,
        "{text}"
    );
    assert_eq!(
        m.types
            .get("herald_publish_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );
}

/// `herald attempts ... --output json` against `server`, parsed.
fn cli_attempts(server: &str, endpoint: &str, event: &str) -> serde_json::Value {
    let out = std::process::Command::new(procs::NODE_BIN)
        .args([
            "attempts",
            "--server",
            server,
            "--endpoint",
            endpoint,
            "--event",
            event,
            "--output",
            "json",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("run herald attempts");
    assert!(
        out.status.success(),
        "herald attempts failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "herald attempts --output json is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_log_shows_failed_then_successful_history() {
    let mut c = cluster(
        "obs-attempts",
        &[
            ("retry", "schedule = [\"50ms\", \"50ms\"]\njitter = 0.0"),
            ("endpoint_health", "failures_to_open = 0"),
        ],
    )
    .await;
    const BODY: &str = "{\"error\":\"try again later\"}";
    let receiver =
        TestReceiver::with_policy(Policy::fail_first_with(2, Reply::status(500).body(BODY)))
            .await
            .unwrap();
    c.create_endpoint(endpoint_req("flaky", &receiver.url_for("flaky")))
        .await;
    c.spawn_dispatcher("warn,herald=info");
    let attempts = attempts_tail(&c);

    let event = c.node().publish("flaky", "{\"n\":1}").await.event_id;
    receiver
        .wait_for(
            |all| all.iter().filter(|r| r.webhook_id() == event).count() >= 3,
            GUARD,
        )
        .await
        .expect("three attempts arrive");
    attempts
        .wait_for(
            |rs| rs.iter().filter(|r| r.event_id == event).count() >= 3,
            GUARD,
        )
        .await
        .expect("three attempts in the attempt log");

    let grpc = c.node().node.grpc_addr.expect("ingest runs");
    let listed = c
        .node()
        .events
        .clone()
        .list_attempts(pb::ListAttemptsRequest {
            endpoint_id: "flaky".into(),
            event_id: event.clone(),
            ..Default::default()
        })
        .await
        .expect("ListAttempts")
        .into_inner()
        .attempts;
    let summary: Vec<(u32, &str, u32)> = listed
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str(), a.status))
        .collect();
    assert_eq!(
        summary,
        [
            (3, "success", 200),
            (2, "retryable", 500),
            (1, "retryable", 500)
        ],
        "newest first: {listed:#?}"
    );
    for w in listed.windows(2) {
        assert!(
            w[0].at_ms >= w[1].at_ms,
            "newest first by time: {listed:#?}"
        );
    }
    for a in &listed {
        assert_eq!(
            (a.event_id.as_str(), a.endpoint_id.as_str()),
            (event.as_str(), "flaky")
        );
        assert_eq!(a.event_type, "test.event");
        assert_eq!(a.node, "dispatch-a", "the dispatcher's node id: {a:?}");
        assert!(a.at_ms > 0, "{a:?}");
    }
    for a in &listed[1..] {
        assert_eq!(a.response_body, BODY, "the receiver's body: {a:?}");
        assert!(a.error.contains("500"), "error says why: {a:?}");
    }
    assert!(
        listed[0].error.is_empty(),
        "a success has no error: {:?}",
        listed[0]
    );

    // The command line shows the same attempts.
    let server = format!("http://{grpc}");
    let ev = event.clone();
    let json = tokio::task::spawn_blocking(move || cli_attempts(&server, "flaky", &ev))
        .await
        .unwrap();
    let rows = json
        .as_array()
        .unwrap_or_else(|| panic!("a JSON array: {json}"));
    assert_eq!(rows.len(), 3, "{json}");
    for (row, a) in rows.iter().zip(&listed) {
        assert_eq!(row["event_id"], a.event_id.as_str(), "{row}");
        assert_eq!(row["endpoint_id"], "flaky", "{row}");
        assert_eq!(row["attempt"], a.attempt, "{row}");
        assert_eq!(row["status"], a.status, "{row}");
        assert_eq!(row["outcome"], a.outcome.as_str(), "{row}");
        assert_eq!(row["at_ms"], a.at_ms, "{row}");
        assert_eq!(row["response_body"], a.response_body.as_str(), "{row}");
        assert_eq!(row["node"], a.node.as_str(), "{row}");
    }
}

/// Every line the child printed to stderr (its logs), without the
/// `[pid err] ` prefix the test harness adds.
fn child_log_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read the dispatcher log");
    text.lines()
        .filter_map(|l| {
            let (tag, rest) = l.strip_prefix('[')?.split_once("] ")?;
            tag.ends_with(" err").then(|| rest.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_show_secrets_or_signatures() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLD_SECRET: &str = "whsec_QmFzZTY0U2VjcmV0Rm9yUm90YXRpb24x";
    const NEW_SECRET: &str = "whsec_TmV3U2VjcmV0QWZ0ZXJSb3RhdGlvbjI5";
    let mut c = cluster(
        "obs-logs",
        &[
            ("retry", "schedule = [\"50ms\"]\njitter = 0.0"),
            ("endpoint_health", "failures_to_open = 0"),
        ],
    )
    .await;
    let receiver = TestReceiver::with_policy(Policy::by_path(
        [
            ("/signed".to_string(), Policy::fail_first(1, 500)),
            ("/rotated".to_string(), Policy::fail_first(1, 503)),
            ("/dead".to_string(), Policy::always(500)),
            ("/gone".to_string(), Policy::always(410)),
        ],
        Policy::always(404),
    ))
    .await
    .unwrap();
    let with_secret = |id: &str, secret: &str| pb::CreateEndpointRequest {
        secret: secret.into(),
        ..endpoint_req(id, &receiver.url_for(id))
    };
    c.create_endpoint(with_secret("signed", SECRET)).await;
    c.create_endpoint(with_secret("dead", SECRET)).await;
    c.create_endpoint(with_secret("gone", SECRET)).await;
    c.create_endpoint(with_secret("rotated", OLD_SECRET)).await;
    c.node()
        .endpoints
        .clone()
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "rotated".into(),
            rotate_secret: Some(NEW_SECRET.into()),
            ..Default::default()
        })
        .await
        .expect("rotate the secret");
    // Started after every registry write: the dispatcher loads the registry
    // to its end before it dispatches, so it signs with both secrets.
    c.spawn_dispatcher("debug");
    let attempts = attempts_tail(&c);
    let ops = OpsTail::start(c.bootstrap(), "herald.ops");

    let mut ids = Vec::new();
    for (ep, n) in [("signed", 3), ("rotated", 2), ("dead", 1), ("gone", 1)] {
        for i in 0..n {
            ids.push(
                c.node()
                    .publish(ep, &format!("{{\"n\":{i}}}"))
                    .await
                    .event_id,
            );
        }
    }
    ops.wait_kind("event.exhausted", "dead", GUARD).await;
    ops.wait_kind("event.exhausted", "gone", GUARD).await;
    // signed 3 × 2, rotated 2 × 2, dead 2, gone 1.
    attempts
        .wait_count(13, GUARD)
        .await
        .expect("13 attempts in the attempt log");

    // Stop the dispatcher gracefully: every line logged before "shutting
    // down" is then in its log file.
    let mut d = c.fleet.dispatch[0].proc.take().expect("dispatcher runs");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &d.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    tokio::task::block_in_place(|| d.wait_for_line("shutting down", GUARD))
        .unwrap_or_else(|e| panic!("{e}"));
    let lines = child_log_lines(&d.log_path);
    let log_text = lines.join("\n");
    drop(d);

    // What must never appear.
    let mut forbidden: Vec<String> = Vec::new();
    for s in [SECRET, OLD_SECRET, NEW_SECRET] {
        forbidden.push(s.to_string());
        forbidden.push(s.trim_start_matches("whsec_").to_string());
    }
    let requests = receiver.requests();
    let rotated = requests
        .iter()
        .find(|r| r.path == "/rotated")
        .expect("/rotated got requests");
    let sig = rotated.header("webhook-signature").unwrap_or_default();
    assert_eq!(
        sig.split(' ').count(),
        2,
        "a rotated endpoint is signed with both secrets: {sig:?}"
    );
    for r in &requests {
        let sig = r
            .header("webhook-signature")
            .unwrap_or_else(|| panic!("no webhook-signature on {r:?}"));
        forbidden.push(sig.to_string());
        for part in sig.split(' ') {
            forbidden.push(part.to_string());
            if let Some((_, b64)) = part.split_once(',') {
                forbidden.push(b64.to_string());
            }
        }
    }
    forbidden.retain(|f| f.len() >= 16);
    for f in &forbidden {
        // JSON escapes '/' never, '+' never; check the raw text and the
        // JSON-escaped form.
        let escaped = serde_json::to_string(f).unwrap();
        let escaped = escaped.trim_matches('"');
        for (i, l) in lines.iter().enumerate() {
            assert!(
                !l.contains(f.as_str()) && !l.contains(escaped),
                "log line {i} shows a secret or signature ({f:?}): {l}"
            );
        }
    }

    // Every line is JSON; delivery lines carry event, endpoint and attempt.
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for (i, l) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("log line {i} is not JSON ({e}): {l}"));
        let msg = v["message"].as_str().unwrap_or("").to_string();
        let has = |k: &str| !v[k].is_null();
        let delivery_line = matches!(msg.as_str(), "delivered" | "delivery attempt failed");
        if delivery_line {
            *seen.entry(msg.clone()).or_default() += 1;
        }
        // Every dispatcher line about an event carries `attempt`.
        let dispatch_event_line = has("event_id")
            && v["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("herald_dispatch"));
        if delivery_line || dispatch_event_line {
            let attempt_field = has("attempt");
            assert!(
                has("event_id") && has("endpoint_id") && attempt_field,
                "delivery log line {i} lacks event_id, endpoint_id or attempt: {l}"
            );
            let ev = v["event_id"].as_str().unwrap_or("");
            assert!(ids.iter().any(|id| id == ev), "unknown event id in {l}");
        }
    }
    // signed 3 + rotated 2 delivered; 3 + 2 + 2 + 1 failed attempts.
    assert_eq!(seen.get("delivered"), Some(&5), "{seen:?}\n{log_text}");
    assert_eq!(seen.get("delivery attempt failed"), Some(&8), "{seen:?}");
}
