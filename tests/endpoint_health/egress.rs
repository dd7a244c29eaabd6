//! The SSRF guard end to end (issue 4): at delivery time (a dispatcher
//! process whose egress policy refuses loopback) and at create/update time.
//!
//! - `refused_target_is_a_final_failure_with_a_reason`: the attempt is a
//!   final failure, dead-lettered with a reason naming the setting.
//! - `endpoint_urls_reaching_private_networks_are_refused`: create/update
//!   refuse URLs that reach private networks.
//!
//! The only timing assertions are the ones the issue specifies (the rate
//! window, `Retry-After`, the breaker's cool-down), checked with the
//! receiver's recorded arrival `Instant`s; they are lower bounds or window
//! counts, never "fast enough". Every wait is on a condition (receiver,
//! dead-letter or operations topic, registry) with a generous failure guard.
//! Metric assertions use `>=`, because under `cargo test` the in-process
//! nodes of all tests share one recorder. Each test prints its run directory
//! (config and child logs).

use crate::support::cluster::ProcessCluster;
use crate::support::dlq::DlqTail;
use crate::support::health::{assert_status, endpoint, Cluster, DLQ_TOPIC, OPS_TOPIC, PARTITIONS};
use crate::support::ledger::Ledger;
use crate::support::ops::OpsTail;
use crate::support::procs;
use crate::support::GUARD;
use herald_dispatch::sink::header;
use herald_proto::v1 as pb;
use herald_testkit::{Reply, TestReceiver};
use tonic::Code;
// ----- safe egress at delivery time -------------------------------------------------

/// A dispatcher whose egress policy refuses loopback (its config has no
/// `delivery.allow_cidrs`) never connects to a loopback receiver: the attempt
/// is a final failure, the event is dead-lettered (`final_answer`) with a
/// last error that says why and names the setting, never silently dropped.
/// Ingest (in the test process) allow-lists loopback, so the endpoint exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_target_is_a_final_failure_with_a_reason() {
    let text = procs::config_text(PARTITIONS, &[]);
    let mut c = ProcessCluster::start("egress", &text).await;
    let strict_dir = c.dir().join("strict");
    std::fs::create_dir_all(&strict_dir).unwrap();
    let strict_text = text.replace("allow_cidrs = [\"127.0.0.0/8\"]\n", "");
    assert_ne!(strict_text, text, "the base config allow-lists loopback");
    let strict = procs::write_config(&strict_dir, &strict_text);
    let ledger = Ledger::new();
    let rx = TestReceiver::with_policy(ledger.policy(|_, _| Reply::status(200)))
        .await
        .unwrap();
    c.create_endpoint(endpoint("local", rx.url_for("local")))
        .await;
    let dlq = DlqTail::start(c.bootstrap(), DLQ_TOPIC, PARTITIONS, ledger.clone());
    let ops = OpsTail::start(c.bootstrap(), OPS_TOPIC);
    c.spawn_dispatcher_with("warn,herald=info", &strict);

    let id = c.node().publish("local", r#"{"n":1}"#).await.event_id;
    ledger
        .wait_until(
            |_| dlq.records().iter().any(|d| d.envelope.event_id == id),
            GUARD,
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the refused event was not dead-lettered: {e}; logs in {}",
                c.dir().display()
            )
        });
    let dead = dlq
        .records()
        .into_iter()
        .find(|d| d.envelope.event_id == id)
        .unwrap();
    assert_eq!(dead.header(header::REASON), "final_answer");
    assert_eq!(
        dead.header(header::ATTEMPTS),
        "1",
        "refused at once, not retried"
    );
    let why = dead.header(header::LAST_ERROR);
    eprintln!("last error of the refused event: {why}");
    assert!(
        why.contains("127.0.0.1")
            && why.contains("loopback")
            && why.contains("delivery.allow_cidrs"),
        "last error {why:?} should say which address, why, and which setting allows it"
    );
    assert_eq!(rx.count(), 0, "nothing reached the refused receiver");
    let exhausted = ops.wait_kind("event.exhausted", "local", GUARD).await;
    assert_eq!(
        exhausted.detail("reason"),
        "final_answer",
        "{}",
        exhausted.value
    );
    drop(ops);
    c.shutdown().await;
}

// ----- safe egress at registration -----------------------------------------------------

/// The node allow-lists only 127.0.0.0/8: endpoint URLs that reach private,
/// link-local (cloud metadata), unique-local or unspecified addresses are
/// refused with `INVALID_ARGUMENT` naming `url`, on create and on update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_urls_reaching_private_networks_are_refused() {
    let c = Cluster::start("ssrf", &[]).await;
    let mut endpoints = c.node().endpoints.clone();
    for url in [
        "http://10.0.0.1/x",
        "http://169.254.169.254/",
        "http://169.254.169.254/latest/meta-data/",
        "http://192.168.1.10:8080/hook",
        "http://172.16.0.1/",
        "http://[::ffff:10.0.0.1]/x",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://[::1]/",
    ] {
        let r = endpoints
            .create_endpoint(pb::CreateEndpointRequest {
                id: "private".into(),
                url: url.into(),
                ..Default::default()
            })
            .await;
        match &r {
            Err(s) => {
                eprintln!("{url}: {:?} {}", s.code(), s.message());
                assert!(
                    s.code() == Code::InvalidArgument && s.message().starts_with("url: "),
                    "{url}: {s:?}"
                )
            }
            Ok(v) => panic!("{url} was accepted: {v:?}"),
        }
    }
    // Allow-listed loopback passes; moving it to a private address does not.
    c.create_endpoint(endpoint("loop", "http://127.0.0.1:9/hook".into()))
        .await;
    let r = endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "loop".into(),
            url: Some("http://10.0.0.1/x".into()),
            ..Default::default()
        })
        .await;
    assert_status(r, Code::InvalidArgument, "url");
    assert_eq!(c.get_endpoint("loop").await.url, "http://127.0.0.1:9/hook");
    c.shutdown().await;
}
