//! Runs the built `herald` binary as separate processes, the way the README's
//! walkthrough does: `herald dev` on port 0, `herald listen` on port 0, then
//! `herald endpoint …` and `herald publish` against the dev server, and
//! finally SIGTERM to `herald dev`, which must drain and exit 0.
//!
//! Synchronisation is by reading the children's stdout line by line (the
//! addresses `herald dev` and `herald listen` print, the block `herald listen`
//! prints per delivery); the timeouts are failure guards only. The one poll
//! is the bounded wait for `/readyz` to answer 200, as a deployment would.
//! Every child is killed if the test fails (see [`Proc`]). The harness is in
//! `support/mod.rs`, shared with `cli_fan_out.rs`.
#![cfg(unix)]

mod support;

use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::{address_in, http_get, run, run_failing, run_json, tail, Proc, SECRET};

/// The value of one series (`name{labels}`) in Prometheus text output.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn readme_walkthrough_with_real_processes() {
    // 1. `herald dev`, on free ports.
    let mut dev = Proc::spawn(
        "herald dev",
        &[
            "dev",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ],
    );
    let grpc = address_in(&dev.line_where("the gRPC API address", |l| {
        l.trim_start().starts_with("gRPC API")
    }));
    let http = address_in(&dev.line_where("the metrics address", |l| {
        l.trim_start().starts_with("metrics/health")
    }));
    dev.line_where("the in-memory warning", |l| {
        l.starts_with("WARNING:") && l.contains("nothing is persisted")
    });
    let server = format!("http://{grpc}");
    let server = server.as_str();

    // Readiness, the way an orchestrator probes it: bounded polling of /readyz.
    let mut ready = None;
    for _ in 0..600 {
        match http_get(&http, "/readyz") {
            Ok((200, body)) => {
                ready = Some(body);
                break;
            }
            Ok(_) | Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
    let ready = ready.unwrap_or_else(|| dev.fail("/readyz never answered 200"));
    let ready: Value = serde_json::from_str(&ready).expect("/readyz body is JSON");
    assert_eq!(ready["ready"], true, "{ready}");
    for component in ["kafka", "registry", "dispatcher"] {
        assert_eq!(ready["components"][component]["ready"], true, "{ready}");
    }
    assert_eq!(
        http_get(&http, "/healthz").unwrap(),
        (200, "{\"alive\":true}".to_owned())
    );

    // 2. `herald listen` with the endpoint's secret, on a free port.
    let listen = Proc::spawn(
        "herald listen",
        &["listen", "--port", "0", "--secret", SECRET],
    );
    let first = listen.next_line();
    assert!(
        first.starts_with("listening on http://127.0.0.1:"),
        "{first}"
    );
    let listen_addr = address_in(&first);
    let second = listen.next_line();
    assert!(
        second.starts_with("verifying Standard Webhooks signatures"),
        "{second}"
    );
    let hook = format!("http://{listen_addr}/hook");

    // 3. The README's endpoint: id `demo`, pointing at the listener, with its secret.
    let created = run_json(&[
        "endpoint", "create", "--server", server, "--id", "demo", "--url", &hook, "--secret",
        SECRET, "--output", "json",
    ]);
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(id, "demo", "{created}");
    assert_eq!(created["secret"], SECRET, "{created}");
    assert_eq!(created["url"], hook.as_str(), "{created}");
    assert_eq!(
        (created["enabled"].as_bool(), created["ordered"].as_bool()),
        (Some(true), Some(true)),
        "{created}"
    );

    // Without --id and --secret, both are generated.
    let other = run_json(&[
        "endpoint", "create", "--server", server, "--url", &hook, "--output", "json",
    ]);
    let other_id = other["id"].as_str().expect("id").to_owned();
    assert!(other_id.starts_with("ep_"), "{other}");
    assert!(
        other["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_") && s != SECRET),
        "{other}"
    );

    // get and list show the endpoints, never a secret.
    let got = run_json(&[
        "endpoint", "get", &id, "--server", server, "--output", "json",
    ]);
    assert_eq!(got["id"], id.as_str(), "{got}");
    assert_eq!(got["url"], hook.as_str(), "{got}");
    assert!(
        got.get("secret").is_none(),
        "get must not show the secret: {got}"
    );
    let listed = run_json(&["endpoint", "list", "--server", server, "--output", "json"]);
    let ids: Vec<&str> = listed
        .as_array()
        .expect("list is an array")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert!(
        ids.contains(&id.as_str()) && ids.contains(&other_id.as_str()),
        "{listed}"
    );
    let text = run(&["endpoint", "list", "--server", server]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with("ID ") && text.contains(&id) && text.contains(&hook),
        "{text}"
    );

    // 4. Publish; the listener prints the delivery with a verified signature.
    let published = run_json(&[
        "publish",
        "--server",
        server,
        "--endpoint",
        &id,
        "--type",
        "invoice.paid",
        "--data",
        r#"{"invoice":"in_1001","amount":4200}"#,
        "--output",
        "json",
    ]);
    let event_id = published["event_id"].as_str().expect("event_id").to_owned();
    assert!(event_id.starts_with("msg_"), "{published}");
    assert!(
        published["partition"].as_i64().is_some_and(|p| p >= 0),
        "{published}"
    );
    assert!(
        published["offset"].as_i64().is_some_and(|o| o >= 0),
        "{published}"
    );
    assert_eq!(published["duplicate"], false, "{published}");

    let webhook_id = format!("webhook-id={event_id}");
    let delivery = listen.line_where(&webhook_id, |l| l.contains(&webhook_id));
    assert_eq!(
        delivery,
        format!("--> POST /hook  {webhook_id}  verified ✔")
    );
    let body: Vec<String> = std::iter::from_fn(|| Some(listen.next_line()))
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        body.join("\n"),
        "{\n  \"invoice\": \"in_1001\",\n  \"amount\": 4200\n}"
    );

    // The same idempotency key twice: one event id, the second from the cache.
    let key_args = |data: &'static str| {
        vec![
            "publish",
            "--server",
            server,
            "--endpoint",
            id.as_str(),
            "--type",
            "invoice.paid",
            "--data",
            data,
            "--idempotency-key",
            "order-7",
            "--output",
            "json",
        ]
    };
    let first = run_json(&key_args(r#"{"order":7}"#));
    let again = run_json(&key_args(r#"{"order":7}"#));
    assert_eq!(first["event_id"], again["event_id"], "{first} {again}");
    assert_eq!(
        (first["duplicate"].as_bool(), again["duplicate"].as_bool()),
        (Some(false), Some(true))
    );
    let keyed_id = format!("webhook-id={}", first["event_id"].as_str().unwrap());
    let delivery = listen.line_where(&keyed_id, |l| l.contains(&keyed_id));
    assert!(delivery.ends_with("verified ✔"), "{delivery}");

    // 5. Errors: a non-zero exit and the gRPC code on stderr.
    let err = run_failing(&[
        "publish",
        "--server",
        server,
        "--endpoint",
        "no-such-endpoint",
        "--type",
        "t",
        "--data",
        "{}",
    ]);
    assert!(
        err.contains("NOT_FOUND") && err.contains("no-such-endpoint"),
        "{err}"
    );
    let err = run_failing(&[
        "publish",
        "--server",
        server,
        "--endpoint",
        &id,
        "--type",
        "",
        "--data",
        "{}",
    ]);
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("event_type"),
        "{err}"
    );
    let err = run_failing(&[
        "endpoint",
        "create",
        "--server",
        server,
        "--url",
        "ftp://example.com/hook",
    ]);
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("url"),
        "{err}"
    );
    let err = run_failing(&["endpoint", "get", "no-such-endpoint", "--server", server]);
    assert!(err.contains("NOT_FOUND"), "{err}");

    // The counters Prometheus scrapes saw the publishes.
    let (status, metrics) = http_get(&http, "/metrics").unwrap();
    assert_eq!(status, 200);
    // Three publishes succeeded (one of them answered from the idempotency cache).
    assert_eq!(
        sample(&metrics, r#"herald_events_published_total{outcome="ok"}"#),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"herald_events_published_total{outcome="not_found"}"#
        ),
        Some(1.0),
        "{metrics}"
    );

    // 6. SIGTERM: `herald dev` drains, says so and exits 0.
    let status = dev.terminate();
    dev.line_where("the stop message", |l| l == "Herald dev stopped.");
    assert!(
        status.success(),
        "herald dev exited with {status}; stderr:\n{}",
        tail(&dev.stderr.lock().unwrap(), 4000)
    );
    drop(listen);
}
