//! `herald bench` run for real at a small scale: it starts `herald dev`
//! (and, for `batch-ingest`, a broker process and `herald ingest`; for
//! `many-endpoints`, a second node loading the registry; for
//! `failing-endpoints`, endpoints that all refuse connections; for `fanout`,
//! applications whose endpoints all subscribe), publishes, and its
//! receivers keep a ledger. The test checks the ledger and the JSON report:
//! every acknowledged event to a healthy endpoint delivered, in order, no
//! duplicates, the dead endpoint's share held back, every figure present.
//! Speed is not checked here (that is what the harness prints).

use std::process::Command;

use serde_json::Value;

const NODE_BIN: &str = env!("CARGO_BIN_EXE_herald-it-node");

/// 600 events to 12 endpoints from 3 publishers in batches of 25, and a
/// raw baseline of 500 requests: enough to exercise a scenario quickly.
const SMALL_TRAFFIC: [&str; 10] = [
    "--events",
    "600",
    "--endpoints",
    "12",
    "--publishers",
    "3",
    "--batch",
    "25",
    "--baseline-requests",
    "500",
];

/// Runs `herald bench <args> --runs 1 --json F --quiet` and returns the
/// runs array of the report.
fn bench(name: &str, args: &[&str]) -> Vec<Value> {
    let json = std::env::temp_dir().join(format!(
        "herald-it-bench-{name}-{}.json",
        std::process::id()
    ));
    let out = Command::new(NODE_BIN)
        .arg("bench")
        .args(args)
        .args(["--runs", "1", "--quiet", "--json"])
        .arg(&json)
        .output()
        .expect("run herald bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "herald bench {args:?} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("deliver/s"), "no table printed:\n{stdout}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).expect("read the JSON report"))
        .expect("the JSON report parses");
    let _ = std::fs::remove_file(&json);
    doc["runs"].as_array().expect("runs array").clone()
}

fn num(run: &Value, key: &str) -> f64 {
    run[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {run}"))
}

#[test]
fn steady_one_dead_endpoint_and_fanout_deliver_every_healthy_event_in_order() {
    let args = [
        &["steady", "one-dead-endpoint", "fanout", "--fanout", "3"][..],
        &SMALL_TRAFFIC,
    ]
    .concat();
    let runs = bench("steady", &args);
    assert_eq!(runs.len(), 3);
    let steady = &runs[0];
    assert_eq!(steady["scenario"], "steady");
    assert_eq!(num(steady, "published"), 600.0);
    assert_eq!(num(steady, "delivered"), 600.0);
    for run in &runs {
        assert_eq!(num(run, "duplicates"), 0.0, "{run}");
        assert_eq!(num(run, "order_violations"), 0.0, "{run}");
        assert_eq!(num(run, "undelivered"), 0.0, "{run}");
        assert!(num(run, "raw_rate") > 0.0, "the baseline ran: {run}");
        assert!(num(run, "delivery_rate") > 0.0);
        assert!(run["latency_ms"]["p99"].as_f64().is_some(), "{run}");
        assert!(num(run, "herald_cpu_secs") >= 0.0);
        assert!(run["peak_rss_mib"]["dev"].as_f64().unwrap() > 0.0, "{run}");
    }
    // A fifth of the events went to the endpoint that refuses connections:
    // all were acknowledged, none delivered, every other one delivered.
    let dead = &runs[1];
    assert_eq!(num(dead, "published"), 600.0);
    assert_eq!(num(dead, "delivered"), 480.0);
    // 600 fan-outs to applications of 3 endpoints: each endpoint gets every
    // event of its application, in order (checked per endpoint above).
    let fanout = &runs[2];
    assert_eq!(fanout["scenario"], "fanout/3");
    assert_eq!(num(fanout, "published"), 600.0);
    assert_eq!(num(fanout, "delivered"), 1800.0);
}

#[test]
fn batch_ingest_and_many_endpoints_report_their_own_figures() {
    let runs = bench(
        "ingest",
        &[
            "batch-ingest",
            "many-endpoints",
            "failing-endpoints",
            "--idle-secs",
            "1",
            "--events",
            "300",
            "--endpoints",
            "6",
            "--registered",
            "200",
            "--publishers",
            "2",
            "--batch",
            "50",
            "--no-baseline",
        ],
    );
    let names: Vec<&str> = runs
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "batch-ingest/alone",
            "batch-ingest/with-dispatch",
            "many-endpoints",
            "failing-endpoints",
        ]
    );
    let alone = &runs[0];
    assert_eq!(num(alone, "published"), 300.0);
    assert!(
        alone["delivery_rate"].is_null(),
        "ingest alone delivers nothing"
    );
    assert!(
        alone["peak_rss_mib"]["ingest"].as_f64().is_some(),
        "{alone}"
    );
    assert!(
        alone["peak_rss_mib"]["broker"].as_f64().is_some(),
        "{alone}"
    );
    for run in &runs[1..3] {
        assert_eq!(num(run, "delivered"), 300.0, "{run}");
        assert_eq!(num(run, "order_violations"), 0.0);
    }
    let many = &runs[2];
    assert_eq!(many["extra"]["endpoints_registered"].as_f64(), Some(200.0));
    assert!(
        many["extra"]["registry_load_secs"].as_f64().unwrap() > 0.0,
        "{many}"
    );
    assert!(
        many["extra"]["registry_node_peak_rss_mib"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // Every endpoint refuses connections: all acknowledged, none delivered,
    // the node's memory read after it retried for a while.
    let failing = &runs[3];
    assert_eq!(num(failing, "published"), 300.0);
    assert_eq!(failing["extra"]["failing_endpoints"].as_f64(), Some(6.0));
    assert!(failing["peak_rss_mib"]["dev"].as_f64().unwrap() > 0.0);
}

#[test]
fn split_reports_each_role_and_the_raw_clients_cpu() {
    let runs = bench("split", &[&["split"][..], &SMALL_TRAFFIC].concat());
    assert_eq!(runs.len(), 1);
    let split = &runs[0];
    assert_eq!(split["scenario"], "split");
    assert_eq!(num(split, "published"), 600.0);
    assert_eq!(num(split, "delivered"), 600.0);
    assert_eq!(num(split, "duplicates"), 0.0, "{split}");
    assert_eq!(num(split, "order_violations"), 0.0, "{split}");
    // Three processes: the broker, ingest and dispatch.
    for role in ["broker", "ingest", "dispatch"] {
        assert!(
            split["peak_rss_mib"][role].as_f64().unwrap_or(0.0) > 0.0,
            "{role}: {split}"
        );
    }
    // CPU per role (the broker not counted as Herald) and the raw client's.
    let extra = &split["extra"];
    let roles: f64 = ["cpu_ms_per_1k.ingest", "cpu_ms_per_1k.dispatch"]
        .iter()
        .map(|k| {
            extra[*k]
                .as_f64()
                .unwrap_or_else(|| panic!("{k} reported: {split}"))
        })
        .sum();
    assert!(roles >= 0.0, "{split}");
    assert!(extra["cpu_ms_per_1k.broker"].is_null(), "{split}");
    assert!(
        extra["raw_client_cpu_ms_per_1k"].as_f64().is_some(),
        "{split}"
    );
}
