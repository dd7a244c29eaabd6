//! Per-endpoint rate limits and endpoint health (issue 4), end to end.
//!
//! Every test runs a real Kafka-protocol broker in its own process
//! (`herald-it-node mock-broker`), real HTTP receivers on port 0
//! ([`TestReceiver`]), and Herald either in-process (one node with ingest and
//! dispatcher) or, for the cluster-wide rate limit and the delivery-time
//! SSRF refusal, as dispatcher processes with ingest in the test process.
//!
//! - `rate_limit_holds_across_two_dispatchers`: an endpoint limited to R/s
//!   (burst B) gets no more than R + B requests in any one-second window of
//!   the receiver's own arrival times, also across the rebalance when the
//!   second dispatcher joins; unlimited endpoints on the same partitions all
//!   finish before the limited ones are half done.
//! - `default_rate_limit_applies_to_endpoints_without_their_own`: the
//!   `[dispatch]` default limit, and an endpoint's own limit replacing it.
//! - `retry_after_429_is_honoured`: no request before the `Retry-After` has
//!   passed, ordered or unordered.
//! - `retry_after_is_capped_by_max_retry_after`: a huge `Retry-After` waits
//!   only `retry.max_retry_after`.
//! - `refused_target_is_a_final_failure_with_a_reason`: the SSRF guard at
//!   delivery time (a dispatcher that does not allow-list loopback).
//! - `circuit_breaker_opens_and_closes` and
//!   `open_circuit_sends_nothing_until_the_cool_down_ends`: the breaker, its
//!   metric and its operational events.
//! - `gone_disables_and_reenable_resumes_in_order`: 410 disables and
//!   dead-letters the backlog; a manually disabled endpoint resumes in order.
//! - `gone_again_after_re_enable_disables_again`: every 410 disables.
//! - `disabled_endpoint_gets_no_requests_until_re_enabled`: a parked lane
//!   sends nothing, whatever its head was doing.
//! - `failing_endpoint_is_auto_disabled` and
//!   `endpoint_failing_across_events_is_auto_disabled`: `disable_after`.
//! - `operator_endpoint_receives_ops_webhooks`: operational events as webhooks.
//! - `endpoint_urls_reaching_private_networks_are_refused`: the SSRF guard at
//!   create/update time.
//!
//! The only timing assertions are the ones the issue specifies (the rate
//! window, `Retry-After`, the breaker's cool-down), checked with the
//! receiver's recorded arrival `Instant`s; they are lower bounds or window
//! counts, never "fast enough". Every wait is on a condition (receiver,
//! dead-letter or operations topic, registry) with a generous failure guard;
//! the one absence check (a parked endpoint gets nothing) watches the
//! receiver for 3 s. Metric assertions use `>=`, because under `cargo test`
//! the in-process nodes of all tests share one recorder. Each test prints its
//! run directory (config and child logs).

#[path = "support/ops.rs"]
mod ops;
mod support;
#[path = "support/topic_tail.rs"]
mod topic_tail;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::node::Roles;
use herald_dispatch::sink::header;
use herald_proto::v1 as pb;
use herald_signing::Secret;
use herald_testkit::fixtures::now_unix;
use herald_testkit::{first_arrivals, Policy, Recorded, Reply, TestReceiver};
use ops::OpsTail;
use support::dlq::DlqTail;
use support::ledger::{self, Ledger};
use support::procs::{self, BrokerProc};
use support::{metric_sum_with, publish_in_order, publish_req, TestNode, GUARD};
use tonic::Code;

const PARTITIONS: i32 = 4;
const OPS_TOPIC: &str = "herald.ops";
const DLQ_TOPIC: &str = "herald.dlq";

// ----- set-up -----------------------------------------------------------------

/// A broker process and one in-process node (ingest + dispatcher) on it,
/// plus a reader of the operations topic.
///
/// A failing test drops it while unwinding: the node is then shut down before
/// the broker process is killed, so the failure is not buried under the
/// node's "broker down" errors.
struct Cluster {
    dir: PathBuf,
    /// Partitions of the events (and retry, dead-letter) topic.
    partitions: i32,
    /// Always `Some` until shutdown or drop.
    running: Option<TestNode>,
    ops: OpsTail,
    broker: BrokerProc,
}

impl Cluster {
    /// Starts a broker with the config `sections` (merged over the test base
    /// of [`procs::config_text`]) and a node using the same file.
    async fn start(test: &str, sections: &[(&str, &str)]) -> Self {
        Self::start_with(test, PARTITIONS, sections).await
    }

    /// [`Cluster::start`] with `partitions` partitions.
    async fn start_with(test: &str, partitions: i32, sections: &[(&str, &str)]) -> Self {
        let dir = procs::run_dir(test);
        eprintln!(
            "{test}: run directory (config, broker log): {}",
            dir.display()
        );
        let config = procs::write_config(&dir, &procs::config_text(partitions, sections));
        let broker = tokio::task::block_in_place(|| BrokerProc::start(&dir, &config));
        let cfg = procs::load_config(&config, &broker.bootstrap, &format!("{test}-node"));
        let node = TestNode::start(cfg).await;
        let ops = OpsTail::start(&broker.bootstrap, OPS_TOPIC);
        Self {
            dir,
            partitions,
            running: Some(node),
            ops,
            broker,
        }
    }

    /// The in-process node.
    fn node(&self) -> &TestNode {
        self.running.as_ref().expect("the node runs")
    }

    async fn create(&self, req: pb::CreateEndpointRequest) -> (pb::Endpoint, String) {
        let id = req.id.clone();
        let resp = self
            .node()
            .endpoints
            .clone()
            .create_endpoint(req)
            .await
            .unwrap_or_else(|e| panic!("create endpoint {id}: {e}"))
            .into_inner();
        (resp.endpoint.expect("created endpoint"), resp.secret)
    }

    async fn get(&self, id: &str) -> pb::Endpoint {
        self.node()
            .endpoints
            .clone()
            .get_endpoint(pb::GetEndpointRequest { id: id.into() })
            .await
            .unwrap_or_else(|e| panic!("get endpoint {id}: {e}"))
            .into_inner()
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> pb::Endpoint {
        self.node()
            .endpoints
            .clone()
            .update_endpoint(pb::UpdateEndpointRequest {
                id: id.into(),
                enabled: Some(enabled),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("update endpoint {id} (enabled = {enabled}): {e}"))
            .into_inner()
    }

    /// Publishes `payloads` to `endpoint` in one batch (so in this order);
    /// returns the event ids.
    async fn publish_all(&self, endpoint: &str, payloads: &[String]) -> Vec<String> {
        let items: Vec<(String, String)> = payloads
            .iter()
            .map(|p| (endpoint.to_string(), p.clone()))
            .collect();
        publish_in_order(&mut self.node().events.clone(), &items, 1000)
            .await
            .into_iter()
            .map(|r| r.event_id)
            .collect()
    }

    /// Waits until this node's registry shows `id` with `enabled`.
    async fn wait_enabled(&self, id: &str, enabled: bool) {
        let registry = self.node().node.registry.clone();
        let mut progress = registry.progress();
        let waited = tokio::time::timeout(GUARD, async {
            loop {
                progress.borrow_and_update();
                if registry.get(id).is_some_and(|e| e.enabled == enabled) {
                    return;
                }
                progress.changed().await.expect("registry alive");
            }
        })
        .await;
        if waited.is_err() {
            panic!(
                "endpoint {id} did not become enabled = {enabled} within {GUARD:?}; operations records: {:?}; run dir {}",
                self.ops.records().iter().map(|r| r.value.to_string()).collect::<Vec<_>>(),
                self.dir.display()
            );
        }
    }

    async fn shutdown(mut self) {
        if let Some(node) = self.running.take() {
            node.shutdown().await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let Some(node) = self.running.take() else {
            return;
        };
        // Only reached when a test failed before `shutdown`.
        tokio::task::block_in_place(|| {
            let _ = tokio::runtime::Handle::current().block_on(tokio::time::timeout(
                Duration::from_secs(15),
                node.shutdown(),
            ));
        });
    }
}

/// A `[retry]` section: `n` retries `delay` apart, no jitter.
fn retry_section(delay: &str, n: usize) -> String {
    let list = vec![format!("\"{delay}\""); n].join(", ");
    format!("schedule = [{list}]\njitter = 0.0")
}

fn payloads(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"test":"{tag}","seq":{i}}}"#))
        .collect()
}

fn endpoint(id: &str, url: String) -> pb::CreateEndpointRequest {
    pb::CreateEndpointRequest {
        id: id.into(),
        url,
        ..Default::default()
    }
}

/// Asserts `r` failed with `code` and a message containing `needle`.
#[track_caller]
fn assert_status<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, needle: &str) {
    match r {
        Ok(v) => panic!("expected {code:?} mentioning {needle:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "status {s:?}");
            assert!(
                s.message().contains(needle),
                "{code:?} message {:?} does not mention {needle:?}",
                s.message()
            );
        }
    }
}

/// Arrivals at `path`, in arrival order.
fn at(rx: &TestReceiver, path: &str) -> Vec<Recorded> {
    rx.requests_for(path)
}

/// The gaps between consecutive arrivals, for failure messages.
fn gaps(reqs: &[Recorded]) -> Vec<String> {
    reqs.windows(2)
        .map(|w| format!("{:?}", w[1].at - w[0].at))
        .collect()
}

// ----- rate limits --------------------------------------------------------------

/// Two dispatcher processes share the partitions; ingest runs here. Two
/// endpoints are limited to R/s with burst B (one ordered, one unordered with
/// 8 in flight), 300 events each (15 s of pacing), published ahead of 16
/// unlimited endpoints' events in the same batch (so on shared partitions
/// they queue behind the limited ones in Kafka). The second dispatcher joins
/// mid-run, so the limit must also hold across the hand-over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_holds_across_two_dispatchers() {
    const R: u32 = 20;
    const BURST: u32 = 5;
    const LIMITED: usize = 300;
    const OTHERS: usize = 16;
    const PER_OTHER: usize = 20;
    let limited = ["lim-ordered", "lim-unordered"];

    let dir = procs::run_dir("rate");
    eprintln!("run directory (config, child logs): {}", dir.display());
    let config = procs::write_config(&dir, &procs::config_text(PARTITIONS, &[]));
    let broker = tokio::task::block_in_place(|| BrokerProc::start(&dir, &config));
    let cfg = procs::load_config(&config, &broker.bootstrap, "rate-ingest");
    let ingest = TestNode::start_with(
        cfg,
        Roles {
            ingest: true,
            dispatch: false,
        },
    )
    .await;
    let receiver = TestReceiver::start().await.unwrap();

    // Endpoints exist before the dispatchers start (they load the registry first).
    let mut endpoints = ingest.endpoints.clone();
    for (i, id) in limited.iter().enumerate() {
        endpoints
            .create_endpoint(pb::CreateEndpointRequest {
                id: id.to_string(),
                url: receiver.url_for(id),
                ordered: Some(i == 0),
                max_in_flight: if i == 0 { 0 } else { 8 },
                rate_limit: Some(pb::RateLimit {
                    per_second: R,
                    burst: BURST,
                }),
                ..Default::default()
            })
            .await
            .expect("create a limited endpoint");
    }
    let others: Vec<String> = (0..OTHERS).map(|i| format!("free-{i:02}")).collect();
    for id in &others {
        ingest.create_endpoint(id, &receiver.url_for(id)).await;
    }

    let log = "warn,herald_dispatch::consumer=info";
    let mut a = procs::spawn_dispatcher("dispatch-a", &dir, &config, &broker.bootstrap, log);
    tokio::task::block_in_place(|| a.wait_for_line("partition assigned", GUARD))
        .unwrap_or_else(|e| panic!("{e}"));

    // One batch: the limited endpoints' events first, then the others'.
    let mut items: Vec<(String, String)> = Vec::new();
    for seq in 0..LIMITED {
        for id in limited {
            items.push((id.to_string(), format!(r#"{{"seq":{seq}}}"#)));
        }
    }
    for seq in 0..PER_OTHER {
        for id in &others {
            items.push((id.clone(), format!(r#"{{"seq":{seq}}}"#)));
        }
    }
    let published = publish_in_order(&mut ingest.events.clone(), &items, items.len()).await;
    let mut ids: HashMap<&str, Vec<String>> = HashMap::new();
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    for ((ep, _), r) in items.iter().zip(&published) {
        ids.entry(ep.as_str()).or_default().push(r.event_id.clone());
        partition_of.insert(ep.as_str(), r.partition);
    }
    let limited_partitions: HashSet<i32> = limited.iter().map(|id| partition_of[id]).collect();
    let sharing: Vec<&String> = others
        .iter()
        .filter(|id| limited_partitions.contains(&partition_of[id.as_str()]))
        .collect();
    assert!(
        !sharing.is_empty(),
        "no unlimited endpoint shares a partition with the limited ones ({partition_of:?}); rename endpoints"
    );

    // The second dispatcher joins while the limited endpoints are being
    // paced: the eager rebalance hands every partition out again, so the
    // limiters restart (conservatively) mid-run, maybe on the other process.
    receiver
        .wait_for(
            |all| {
                limited
                    .iter()
                    .all(|id| all.iter().filter(|r| r.path == format!("/{id}")).count() >= 40)
            },
            GUARD,
        )
        .await
        .unwrap();
    let mut b = procs::spawn_dispatcher("dispatch-b", &dir, &config, &broker.bootstrap, log);
    tokio::task::block_in_place(|| b.wait_for_line("partition assigned", GUARD))
        .unwrap_or_else(|e| panic!("{e}"));
    let at_rebalance: Vec<usize> = limited.iter().map(|id| at(&receiver, id).len()).collect();
    eprintln!("dispatch-b was assigned partitions when the limited endpoints had {at_rebalance:?} requests");
    assert!(
        at_rebalance.iter().all(|&n| n < LIMITED),
        "the rebalance came after the limited endpoints were done; make the run longer"
    );

    let all: Vec<&String> = published.iter().map(|r| &r.event_id).collect();
    receiver
        .wait_for_ids(&all, GUARD)
        .await
        .unwrap_or_else(|e| panic!("not every event arrived: {e}; logs in {}", dir.display()));

    let requests = receiver.requests();
    let other_paths: HashSet<String> = others.iter().map(|id| format!("/{id}")).collect();
    let last_other = requests
        .iter()
        .filter(|r| other_paths.contains(&r.path))
        .map(|r| r.at)
        .max()
        .expect("unlimited endpoints got requests");
    for id in limited {
        let reqs = at(&receiver, id);
        let times: Vec<Instant> = reqs.iter().map(|r| r.at).collect();
        let busiest = support::max_in_window(&times, Duration::from_secs(1));
        let span = times[times.len() - 1] - times[0];
        eprintln!(
            "{id}: {} requests over {span:?}; busiest one-second window: {busiest} (limit {R}/s + burst {BURST})",
            reqs.len()
        );
        assert_eq!(
            first_arrivals(&reqs).len(),
            LIMITED,
            "{id}: every event arrives"
        );
        assert!(
            busiest <= (R + BURST) as usize,
            "{id}: {busiest} requests in one second, limit {R}/s + burst {BURST}"
        );
        // Isolation: every unlimited event had arrived before the limited
        // endpoint was half done (order of completion, not a time bound).
        let half = times[LIMITED / 2];
        assert!(
            last_other < half,
            "{id}: unlimited endpoints finished after the limited one was half done ({:?} later)",
            last_other - half
        );
        if id == "lim-ordered" {
            let order: Vec<&str> = first_arrivals(&reqs)
                .iter()
                .map(|r| r.webhook_id())
                .collect();
            let want: Vec<&str> = ids[id].iter().map(String::as_str).collect();
            assert_eq!(order, want, "{id}: delivered in publish order");
        }
    }
    eprintln!(
        "unlimited endpoints sharing a partition with a limited one: {}",
        sharing.len()
    );
    assert!(
        a.is_running() && b.is_running(),
        "both dispatchers still run"
    );
    drop((a, b));
    ingest.shutdown().await;
}

/// `dispatch.default_rate_limit_per_second` (burst `..._burst`) paces an
/// endpoint that sets no limit of its own; an endpoint's own limit replaces
/// the default (here a faster one, so it finishes first although its events
/// were published after the others).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_rate_limit_applies_to_endpoints_without_their_own() {
    const DEFAULT_R: usize = 10;
    const DEFAULT_BURST: usize = 2;
    const EVENTS: usize = 30;
    let c = Cluster::start(
        "default-rate",
        &[(
            "dispatch",
            "default_rate_limit_per_second = 10\ndefault_rate_limit_burst = 2",
        )],
    )
    .await;
    let rx = TestReceiver::start().await.unwrap();
    c.create(endpoint("by-default", rx.url_for("by-default")))
        .await;
    c.create(pb::CreateEndpointRequest {
        rate_limit: Some(pb::RateLimit {
            per_second: 200,
            burst: 10,
        }),
        ..endpoint("own-limit", rx.url_for("own-limit"))
    })
    .await;
    let slow = c
        .publish_all("by-default", &payloads("default", EVENTS))
        .await;
    let fast = c.publish_all("own-limit", &payloads("own", EVENTS)).await;
    let all: Vec<&String> = slow.iter().chain(&fast).collect();
    rx.wait_for_ids(&all, GUARD).await.unwrap();

    let paced: Vec<Instant> = at(&rx, "by-default").iter().map(|r| r.at).collect();
    let busiest = support::max_in_window(&paced, Duration::from_secs(1));
    eprintln!("by-default: busiest one-second window {busiest} (default {DEFAULT_R}/s + burst {DEFAULT_BURST})");
    assert!(
        busiest <= DEFAULT_R + DEFAULT_BURST,
        "an endpoint without a limit got {busiest} requests in one second; default {DEFAULT_R}/s + burst {DEFAULT_BURST}"
    );
    let own_done = at(&rx, "own-limit").iter().map(|r| r.at).max().unwrap();
    assert!(
        own_done < paced[EVENTS / 2],
        "the endpoint with its own (higher) limit was held to the default"
    );
    c.shutdown().await;
}

/// An endpoint answering `429` with `Retry-After: 2` gets no request before
/// 2 s have passed: an ordered endpoint (the failed head and the events
/// queued behind it) and an unordered one (events published after the 429
/// was answered wait too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_429_is_honoured() {
    let retry = retry_section("100ms", 10);
    let c = Cluster::start("retry-after", &[("retry", &retry)]).await;
    let policy = Policy::new(|_, n| {
        if n == 1 {
            Reply::status(429).header("retry-after", "2")
        } else {
            Reply::status(200)
        }
    });
    let rx = TestReceiver::with_policy(policy).await.unwrap();

    // Ordered: three events at once; the first is answered 429.
    c.create(endpoint("ra-ordered", rx.url_for("ra-ordered")))
        .await;
    let ids = c.publish_all("ra-ordered", &payloads("ra", 3)).await;
    rx.wait_for_ids(&ids, GUARD).await.unwrap();
    let reqs = at(&rx, "ra-ordered");
    assert_eq!(reqs[0].webhook_id(), ids[0]);
    for r in &reqs[1..] {
        assert!(
            r.at - reqs[0].at >= Duration::from_secs(2),
            "ordered: a request came {:?} after the 429 with Retry-After: 2",
            r.at - reqs[0].at
        );
    }
    eprintln!(
        "ordered: the retry came {:?} after the 429",
        reqs[1].at - reqs[0].at
    );
    let order: Vec<&str> = first_arrivals(&reqs)
        .iter()
        .map(|r| r.webhook_id())
        .collect();
    assert_eq!(order, ids.iter().map(String::as_str).collect::<Vec<_>>());

    // Unordered, one request at a time: the second event starts only after
    // the first one's 429 was taken in (its retry then waits without holding
    // the slot), so what holds it is the endpoint's Retry-After, not the
    // failed event's own retry delay.
    c.create(pb::CreateEndpointRequest {
        ordered: Some(false),
        max_in_flight: 1,
        ..endpoint("ra-unordered", rx.url_for("ra-unordered"))
    })
    .await;
    let all = c.publish_all("ra-unordered", &payloads("ra-u", 4)).await;
    let first = &all[..1];
    rx.wait_for_ids(&all, GUARD).await.unwrap();
    let reqs = at(&rx, "ra-unordered");
    assert_eq!(
        (reqs[0].webhook_id(), reqs[0].path_seq),
        (first[0].as_str(), 1)
    );
    eprintln!(
        "unordered: first request after the 429 came {:?} later",
        reqs.iter().skip(1).map(|r| r.at - reqs[0].at).min()
    );
    // The pacer keeps `not_before` in whole unix milliseconds, truncated
    // (crates/herald-dispatch/src/rate.rs, `throttled`), so it can open up to
    // 1 ms early; tighten to 2 s once it rounds up.
    let at_least = Duration::from_secs(2) - Duration::from_millis(1);
    for r in &reqs[1..] {
        assert!(
            r.at - reqs[0].at >= at_least,
            "unordered: {} came {:?} after the 429 with Retry-After: 2",
            r.webhook_id(),
            r.at - reqs[0].at
        );
    }
    c.shutdown().await;
}

/// `Retry-After` is capped by `retry.max_retry_after` (1 s here): a receiver
/// asking for an hour gets the event again after the cap, not after an hour.
/// (The wait below is a failure guard, 30× the cap.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_capped_by_max_retry_after() {
    let retry = format!("{}\nmax_retry_after = \"1s\"", retry_section("100ms", 10));
    let c = Cluster::start("retry-after-cap", &[("retry", &retry)]).await;
    let rx = TestReceiver::with_policy(Policy::new(|_, n| {
        if n == 1 {
            Reply::status(429).header("retry-after", "3600")
        } else {
            Reply::status(200)
        }
    }))
    .await
    .unwrap();
    c.create(endpoint("greedy", rx.url_for("greedy"))).await;
    let ids = c.publish_all("greedy", &payloads("greedy", 2)).await;
    rx.wait_for_ids(&ids, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Retry-After: 3600 held the endpoint past retry.max_retry_after = 1s: {e}; requests: {}",
                at(&rx, "greedy").len()
            )
        });
    let reqs = at(&rx, "greedy");
    assert!(
        reqs[1].at - reqs[0].at >= Duration::from_secs(1),
        "{:?}",
        gaps(&reqs)
    );
    c.shutdown().await;
}

// ----- safe egress at delivery time -------------------------------------------------

/// A dispatcher whose egress policy refuses loopback (its config has no
/// `delivery.allow_cidrs`) never connects to a loopback receiver: the attempt
/// is a final failure, the event is dead-lettered (`final_answer`) with a
/// last error that says why and names the setting, never silently dropped.
/// Ingest (in the test process) allow-lists loopback, so the endpoint exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_target_is_a_final_failure_with_a_reason() {
    let dir = procs::run_dir("egress");
    eprintln!("run directory (config, child logs): {}", dir.display());
    let text = procs::config_text(PARTITIONS, &[]);
    let config = procs::write_config(&dir, &text);
    let strict_dir = dir.join("strict");
    std::fs::create_dir_all(&strict_dir).unwrap();
    let strict_text = text.replace("allow_cidrs = [\"127.0.0.0/8\"]\n", "");
    assert_ne!(strict_text, text, "the base config allow-lists loopback");
    let strict = procs::write_config(&strict_dir, &strict_text);

    let broker = tokio::task::block_in_place(|| BrokerProc::start(&dir, &config));
    let cfg = procs::load_config(&config, &broker.bootstrap, "egress-ingest");
    let ingest = TestNode::start_with(
        cfg,
        Roles {
            ingest: true,
            dispatch: false,
        },
    )
    .await;
    let ledger = Ledger::new();
    let rx = TestReceiver::with_policy(ledger.policy(|_, _| Reply::status(200)))
        .await
        .unwrap();
    ingest.create_endpoint("local", &rx.url_for("local")).await;
    let dlq = DlqTail::start(&broker.bootstrap, DLQ_TOPIC, PARTITIONS, ledger.clone());
    let ops = OpsTail::start(&broker.bootstrap, OPS_TOPIC);
    let _dispatcher =
        procs::spawn_dispatcher("dispatch-strict", &dir, &strict, &broker.bootstrap, "warn");

    let id = ingest.publish("local", r#"{"n":1}"#).await.event_id;
    ledger
        .wait_until(
            |_| dlq.records().iter().any(|d| d.envelope.event_id == id),
            GUARD,
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the refused event was not dead-lettered: {e}; logs in {}",
                dir.display()
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
    ingest.shutdown().await;
}

// ----- circuit breaker -----------------------------------------------------------

/// `failures_to_open = 3`, `cool_down = 1s`: an always-failing endpoint opens
/// its circuit (metric and `circuit.opened` on the operations topic); once it
/// is healthy again the circuit closes (`circuit.closed`) and its events are
/// delivered, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_opens_and_closes() {
    let retry = retry_section("100ms", 200);
    let c = Cluster::start(
        "breaker",
        &[
            (
                "endpoint_health",
                "failures_to_open = 3\ncool_down = \"1s\"",
            ),
            ("retry", &retry),
        ],
    )
    .await;
    let healthy = Arc::new(AtomicBool::new(false));
    let policy = {
        let healthy = healthy.clone();
        Policy::new(move |_, _| {
            Reply::status(if healthy.load(Ordering::SeqCst) {
                200
            } else {
                500
            })
        })
    };
    let rx = TestReceiver::with_policy(policy).await.unwrap();
    c.create(endpoint("flaky", rx.url_for("flaky"))).await;
    let ids = c.publish_all("flaky", &payloads("flaky", 5)).await;

    let opened = c.ops.wait_kind("circuit.opened", "flaky", GUARD).await;
    assert_eq!(
        opened.key, "flaky",
        "operations records are keyed by endpoint"
    );
    assert_eq!(
        opened.value["detail"]["cool_down_ms"], 1000,
        "{}",
        opened.value
    );
    assert!(
        opened.value["at_ms"].as_i64().is_some_and(|t| t > 0),
        "{}",
        opened.value
    );
    assert!(
        at(&rx, "flaky").len() >= 3,
        "the circuit opened after 3 failures"
    );
    // The counter is bumped before the operational event is written.
    let metrics = c.node().metrics().await;
    let open = metric_sum_with(
        &metrics,
        "herald_circuit_transitions_total",
        r#"state="open""#,
    );
    assert!(open.is_some_and(|v| v >= 1.0), "open transitions: {open:?}");

    healthy.store(true, Ordering::SeqCst);
    c.ops.wait_kind("circuit.closed", "flaky", GUARD).await;
    rx.wait_for_ids(&ids, GUARD).await.unwrap();
    let order: Vec<String> = first_arrivals(&at(&rx, "flaky"))
        .iter()
        .map(|r| r.webhook_id().to_string())
        .collect();
    assert_eq!(order, ids, "delivered in order once the circuit closed");
    let metrics = c.node().metrics().await;
    let closed = metric_sum_with(
        &metrics,
        "herald_circuit_transitions_total",
        r#"state="closed""#,
    );
    assert!(
        closed.is_some_and(|v| v >= 1.0),
        "closed transitions: {closed:?}"
    );
    c.shutdown().await;
}

/// The breaker's spec, measured at the receiver: once the circuit is open the
/// endpoint gets no request until the cool-down has passed; then one probe;
/// a failed probe re-opens it for another cool-down. The endpoint fails its
/// first 5 requests (3 open the circuit, 2 probes fail), then succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_circuit_sends_nothing_until_the_cool_down_ends() {
    const COOL_DOWN: Duration = Duration::from_secs(1);
    let retry = retry_section("100ms", 50);
    let c = Cluster::start(
        "cool-down",
        &[
            (
                "endpoint_health",
                "failures_to_open = 3\ncool_down = \"1s\"",
            ),
            ("retry", &retry),
        ],
    )
    .await;
    let rx = TestReceiver::with_policy(Policy::new(|_, n| {
        Reply::status(if n <= 5 { 500 } else { 200 })
    }))
    .await
    .unwrap();
    c.create(endpoint("cooling", rx.url_for("cooling"))).await;
    let ids = c.publish_all("cooling", &payloads("cool", 2)).await;
    rx.wait_for_ids(&ids, GUARD).await.unwrap();
    c.ops.wait_kind("circuit.closed", "cooling", GUARD).await;

    let reqs = at(&rx, "cooling");
    // Requests 4, 5 and 6 (index 3..=5) each follow a failure that left the
    // circuit open.
    assert!(reqs.len() >= 6, "{} requests", reqs.len());
    for i in 3..=5 {
        let gap = reqs[i].at - reqs[i - 1].at;
        assert!(
            gap >= COOL_DOWN,
            "request {} came {gap:?} after request {} although the circuit was open (cool-down {COOL_DOWN:?}); gaps between requests: {:?}",
            i + 1,
            i,
            gaps(&reqs)
        );
    }
    c.shutdown().await;
}

// ----- disabling ------------------------------------------------------------------

/// `410 Gone` disables the endpoint and dead-letters the event (final_answer)
/// with the events behind it (predecessor_dead_lettered); publishing to it is
/// refused. A *manually* disabled endpoint with events waiting (its head
/// failing) refuses publishes and, re-enabled, delivers them in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_and_reenable_resumes_in_order() {
    let retry = retry_section("100ms", 300);
    // One partition: a later event of another endpoint marks how far the
    // dispatcher has read (records are handled in offset order).
    let c = Cluster::start_with(
        "gone",
        1,
        &[
            // The breaker is off here, so only disabling decides what is sent.
            ("endpoint_health", "failures_to_open = 0"),
            ("retry", &retry),
        ],
    )
    .await;
    let gone_now = Arc::new(AtomicBool::new(false));
    let paused_failing = Arc::new(AtomicBool::new(true));
    let ledger = Ledger::new();
    let policy = {
        let (gone_now, paused_failing) = (gone_now.clone(), paused_failing.clone());
        ledger.policy(move |r, _| match r.path.as_str() {
            "/gone" if gone_now.load(Ordering::SeqCst) => Reply::status(410),
            "/gone" => Reply::status(503),
            "/paused" if paused_failing.load(Ordering::SeqCst) => Reply::status(503),
            _ => Reply::status(200),
        })
    };
    let rx = TestReceiver::with_policy(policy).await.unwrap();
    let dlq = DlqTail::start(&c.broker.bootstrap, DLQ_TOPIC, c.partitions, ledger.clone());
    c.create(endpoint("gone", rx.url_for("gone"))).await;
    c.create(endpoint("paused", rx.url_for("paused"))).await;
    c.create(endpoint("marker", rx.url_for("marker"))).await;

    // The manually disabled endpoint: its head fails, four events wait behind it.
    let paused_ids = c.publish_all("paused", &payloads("paused", 5)).await;
    ledger
        .wait_until(|es| es.iter().any(|e| e.path == "/paused"), GUARD)
        .await
        .unwrap();
    let view = c.set_enabled("paused", false).await;
    assert!(!view.enabled);
    assert_status(
        c.node()
            .events
            .clone()
            .publish(publish_req("paused", "{}"))
            .await,
        Code::FailedPrecondition,
        "paused",
    );

    // The gone endpoint: five events, all read by the dispatcher before the
    // first one is answered 410: the marker, published after them on the
    // same partition, has arrived.
    let gone_ids = c.publish_all("gone", &payloads("gone", 5)).await;
    let marker = c.publish_all("marker", &payloads("marker", 1)).await;
    ledger
        .wait_until(
            |es| es.iter().any(|e| e.path == "/gone") && es.iter().any(|e| e.id == marker[0]),
            GUARD,
        )
        .await
        .unwrap();
    gone_now.store(true, Ordering::SeqCst);

    ledger
        .wait_until(
            |_| dlq.records().iter().filter(|d| d.key == "gone").count() >= 5,
            GUARD,
        )
        .await
        .unwrap_or_else(|e| panic!("the gone endpoint's events were not dead-lettered: {e}"));
    let dead: Vec<_> = dlq
        .records()
        .into_iter()
        .filter(|d| d.key == "gone")
        .collect();
    let got: Vec<(&str, &str)> = dead
        .iter()
        .map(|d| (d.envelope.event_id.as_str(), d.header(header::REASON)))
        .collect();
    let want: Vec<(&str, &str)> = gone_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let reason = if i == 0 {
                "final_answer"
            } else {
                "predecessor_dead_lettered"
            };
            (id.as_str(), reason)
        })
        .collect();
    assert_eq!(got, want, "dead letters of the gone endpoint, in order");
    assert_eq!(dead[0].header(header::LAST_STATUS), "410");
    let gone_sent: HashSet<String> = ledger
        .entries()
        .iter()
        .filter(|e| e.path == "/gone")
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(
        gone_sent,
        HashSet::from([gone_ids[0].clone()]),
        "only the first event was ever sent to the gone endpoint"
    );

    c.wait_enabled("gone", false).await;
    assert!(
        !c.get("gone").await.enabled,
        "GetEndpoint shows it disabled"
    );
    assert_status(
        c.node()
            .events
            .clone()
            .publish(publish_req("gone", "{}"))
            .await,
        Code::FailedPrecondition,
        "gone",
    );
    let disabled = c.ops.wait_kind("endpoint.disabled", "gone", GUARD).await;
    assert_eq!(disabled.detail("reason"), "gone", "{}", disabled.value);
    let exhausted = c.ops.wait_kind("event.exhausted", "gone", GUARD).await;
    assert_eq!(
        exhausted.detail("event_id"),
        gone_ids[0],
        "{}",
        exhausted.value
    );
    assert_eq!(
        exhausted.detail("reason"),
        "final_answer",
        "{}",
        exhausted.value
    );
    let metrics = c.node().metrics().await;
    let auto = metric_sum_with(
        &metrics,
        "herald_endpoints_auto_disabled_total",
        r#"reason="gone""#,
    );
    // `>=`: under `cargo test` every in-process node shares one recorder.
    assert!(
        auto.is_some_and(|v| v >= 1.0),
        "herald_endpoints_auto_disabled_total{{reason=\"gone\"}} = {auto:?}"
    );

    // Re-enable the manually disabled endpoint: what waited is delivered in order.
    paused_failing.store(false, Ordering::SeqCst);
    assert!(c.set_enabled("paused", true).await.enabled);
    rx.wait_for_ids(&paused_ids, GUARD)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "re-enabled endpoint did not deliver what waited: {e}; {:?}",
                ledger::summary(&ledger.entries())
            )
        });
    let violations =
        ledger::order_violations(&ledger.entries(), "/paused", &paused_ids, &HashSet::new());
    assert!(violations.is_empty(), "order: {violations:#?}");
    let delivered: Vec<String> = ledger
        .entries()
        .iter()
        .filter(|e| e.path == "/paused" && e.ok())
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(
        first_unique(&delivered),
        paused_ids,
        "delivered in publish order"
    );
    assert!(
        dlq.records().iter().all(|d| d.key != "paused"),
        "nothing of the paused endpoint was dead-lettered"
    );
    drop(dlq);
    c.shutdown().await;
}

/// An endpoint that answers 410 is disabled; re-enabled by its owner and
/// answering 410 again, it is disabled again (every 410 disables, not only
/// the first one a dispatcher sees).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_again_after_re_enable_disables_again() {
    let c = Cluster::start("gone-again", &[]).await;
    let ledger = Ledger::new();
    let rx = TestReceiver::with_policy(ledger.policy(|_, _| Reply::status(410)))
        .await
        .unwrap();
    let dlq = DlqTail::start(&c.broker.bootstrap, DLQ_TOPIC, c.partitions, ledger.clone());
    c.create(endpoint("again", rx.url_for("again"))).await;

    let first = c.publish_all("again", &payloads("again-1", 1)).await;
    c.wait_enabled("again", false).await;
    assert!(c.set_enabled("again", true).await.enabled);
    let second = c.publish_all("again", &payloads("again-2", 1)).await;
    ledger
        .wait_until(
            |_| {
                dlq.records()
                    .iter()
                    .any(|d| d.envelope.event_id == second[0])
            },
            GUARD,
        )
        .await
        .unwrap();
    assert_ne!(first, second);
    // The disable is decided before the dead letter is written; allow its
    // registry write a generous while to land.
    let registry = c.node().node.registry.clone();
    let mut progress = registry.progress();
    let disabled = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            progress.borrow_and_update();
            if registry.get("again").is_some_and(|e| !e.enabled) {
                return;
            }
            progress.changed().await.expect("registry alive");
        }
    })
    .await;
    assert!(
        disabled.is_ok(),
        "the endpoint answered 410 again after being re-enabled but stayed enabled; operations records: {:?}",
        c.ops.records().iter().map(|r| r.value.to_string()).collect::<Vec<_>>()
    );
    // The operational record is written after the registry write.
    c.ops
        .wait_for(
            |rs| {
                rs.iter()
                    .filter(|r| r.kind() == "endpoint.disabled" && r.endpoint() == "again")
                    .count()
                    >= 2
            },
            GUARD,
        )
        .await
        .expect("a second endpoint.disabled record");
    assert_eq!(c.ops.of("endpoint.disabled", "again").len(), 2);
    drop(dlq);
    c.shutdown().await;
}

/// A disabled endpoint's lane is parked: once the disable is visible, no
/// request reaches it (at most the one attempt already under way), however
/// its head was waiting. The check watches the receiver for 3 s (30 of the
/// head's 100 ms retry delays); then the endpoint is re-enabled and what
/// waited is delivered in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_endpoint_gets_no_requests_until_re_enabled() {
    const WATCH: Duration = Duration::from_secs(3);
    let retry = retry_section("100ms", 300);
    let c = Cluster::start(
        "parked",
        &[
            ("endpoint_health", "failures_to_open = 0"),
            ("retry", &retry),
        ],
    )
    .await;
    let failing = Arc::new(AtomicBool::new(true));
    let rx = {
        let failing = failing.clone();
        TestReceiver::with_policy(Policy::new(move |_, _| {
            Reply::status(if failing.load(Ordering::SeqCst) {
                503
            } else {
                200
            })
        }))
        .await
        .unwrap()
    };
    c.create(endpoint("parked", rx.url_for("parked"))).await;
    let ids = c.publish_all("parked", &payloads("parked", 3)).await;
    rx.wait_for_count(1, GUARD).await.unwrap();
    c.set_enabled("parked", false).await;
    let disabled_at = Instant::now();

    // Absence over a window: a second request after the disable is a failure.
    let after = |all: &[Recorded]| all.iter().filter(|r| r.at > disabled_at).count();
    let seen = rx.wait_for(|all| after(all) >= 2, WATCH).await;
    let reqs = rx.requests();
    assert!(
        seen.is_err(),
        "the disabled endpoint got {} requests in the {WATCH:?} after it was disabled (its failing head kept being retried); gaps: {:?}",
        after(&reqs),
        gaps(&reqs)
    );

    failing.store(false, Ordering::SeqCst);
    c.set_enabled("parked", true).await;
    rx.wait_for_ids(&ids, GUARD).await.unwrap();
    // Both changes made through the API are reported as operational events.
    let rec = c.ops.wait_kind("endpoint.enabled", "parked", GUARD).await;
    assert_eq!(rec.detail("reason"), "api", "{}", rec.value);
    c.ops.wait_kind("endpoint.disabled", "parked", GUARD).await;
    let order: Vec<String> = first_arrivals(&rx.requests())
        .iter()
        .map(|r| r.webhook_id().to_string())
        .collect();
    assert_eq!(order, ids, "delivered in order after re-enabling");
    c.shutdown().await;
}

fn first_unique(ids: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.iter().filter(|i| seen.insert(*i)).cloned().collect()
}

/// `disable_after = 2s`: one event failing (500) for longer than that
/// disables its endpoint, with an `endpoint.disabled` record of reason
/// `failing`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_is_auto_disabled() {
    let retry = retry_section("200ms", 100);
    let c = Cluster::start(
        "auto-disable",
        &[
            (
                "endpoint_health",
                "failures_to_open = 0\ndisable_after = \"2s\"",
            ),
            ("retry", &retry),
        ],
    )
    .await;
    let rx = TestReceiver::with_policy(Policy::always(500))
        .await
        .unwrap();
    c.create(endpoint("failing", rx.url_for("failing"))).await;
    c.publish_all("failing", &payloads("failing", 1)).await;

    let rec = c.ops.wait_kind("endpoint.disabled", "failing", GUARD).await;
    assert_eq!(rec.detail("reason"), "failing", "{}", rec.value);
    let since: i64 = rec
        .detail("detail")
        .trim_start_matches("failing since ")
        .trim_end_matches(" ms ago")
        .parse()
        .unwrap_or_else(|_| panic!("detail: {}", rec.value));
    assert!(since > 2000, "disabled after failing for {since} ms only");
    c.wait_enabled("failing", false).await;
    assert!(!c.get("failing").await.enabled);
    assert_status(
        c.node()
            .events
            .clone()
            .publish(publish_req("failing", "{}"))
            .await,
        Code::FailedPrecondition,
        "failing",
    );
    let metrics = c.node().metrics().await;
    let auto = metric_sum_with(
        &metrics,
        "herald_endpoints_auto_disabled_total",
        r#"reason="failing""#,
    );
    assert!(
        auto.is_some_and(|v| v >= 1.0),
        "auto-disabled (failing): {auto:?}"
    );
    assert!(at(&rx, "failing").len() >= 2);
    c.shutdown().await;
}

/// "Failed continuously for a period" is about the endpoint, not one event:
/// an endpoint whose events each fail for ~0.6 s before they are
/// dead-lettered, one after the other, never answering 2xx, has been failing
/// for far longer than `disable_after = 2s` after eight events, and must be
/// disabled. (With the defaults the same holds at scale: `retry.max_age`,
/// 4 days, ends every event before `disable_after`, 5 days.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_failing_across_events_is_auto_disabled() {
    const EVENTS: usize = 8;
    let retry = retry_section("200ms", 3);
    let c = Cluster::start(
        "auto-disable-span",
        &[
            (
                "endpoint_health",
                "failures_to_open = 0\ndisable_after = \"2s\"",
            ),
            ("retry", &retry),
        ],
    )
    .await;
    let ledger = Ledger::new();
    let rx = TestReceiver::with_policy(ledger.policy(|_, _| Reply::status(500)))
        .await
        .unwrap();
    let dlq = DlqTail::start(&c.broker.bootstrap, DLQ_TOPIC, c.partitions, ledger.clone());
    c.create(endpoint("down", rx.url_for("down"))).await;
    // Registry changes wake the ledger's waiters too.
    let bump = {
        let (registry, ledger) = (c.node().node.registry.clone(), ledger.clone());
        tokio::spawn(async move {
            let mut p = registry.progress();
            while p.changed().await.is_ok() {
                ledger.bump();
            }
        })
    };
    let registry = c.node().node.registry.clone();
    let disabled = || !registry.get("down").is_some_and(|e| e.enabled);
    let mut published = 0;
    for k in 0..EVENTS {
        let r = c
            .node()
            .events
            .clone()
            .publish(publish_req("down", &format!(r#"{{"seq":{k}}}"#)))
            .await;
        let id = match r {
            Ok(r) => r.into_inner().event_id,
            Err(s) if s.code() == Code::FailedPrecondition => break,
            Err(s) => panic!("publish {k}: {s}"),
        };
        published += 1;
        ledger
            .wait_until(
                |_| disabled() || dlq.records().iter().any(|d| d.envelope.event_id == id),
                GUARD,
            )
            .await
            .unwrap_or_else(|e| {
                panic!("event {k} neither dead-lettered nor endpoint disabled: {e}")
            });
        if disabled() {
            break;
        }
    }
    bump.abort();
    let reqs = at(&rx, "down");
    let span = reqs[reqs.len() - 1].at - reqs[0].at;
    assert!(
        ledger.entries().iter().all(|e| !e.ok()),
        "the endpoint never answered 2xx"
    );
    assert!(
        disabled(),
        "endpoint `down` failed every one of {} requests for {span:?} ({published} events, each dead-lettered after ~0.6 s) \
         and is still enabled, although endpoint_health.disable_after = 2s",
        reqs.len()
    );
    c.ops.wait_kind("endpoint.disabled", "down", GUARD).await;
    drop(dlq);
    c.shutdown().await;
}

// ----- operator webhooks ------------------------------------------------------------

/// `endpoint_health.operator_endpoint` names an endpoint: a circuit opening
/// on another endpoint reaches it as a signed webhook whose JSON body says
/// `"type":"circuit.opened"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_endpoint_receives_ops_webhooks() {
    let retry = retry_section("100ms", 50);
    let c = Cluster::start(
        "operator",
        &[
            (
                "endpoint_health",
                "failures_to_open = 2\ncool_down = \"60s\"\noperator_endpoint = \"ops-hook\"",
            ),
            ("retry", &retry),
        ],
    )
    .await;
    let rx = TestReceiver::with_policy(Policy::by_path(
        [("flaky".to_string(), Policy::always(500))],
        Policy::always(200),
    ))
    .await
    .unwrap();
    let (_, ops_secret) = c.create(endpoint("ops-hook", rx.url_for("ops-hook"))).await;
    c.create(endpoint("flaky", rx.url_for("flaky"))).await;
    c.publish_all("flaky", &payloads("flaky", 1)).await;

    let is_opened = |r: &Recorded| {
        r.path == "/ops-hook"
            && serde_json::from_slice::<serde_json::Value>(&r.body)
                .is_ok_and(|v| v["type"] == "circuit.opened")
    };
    rx.wait_for(|all| all.iter().any(is_opened), GUARD)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the operator endpoint got no circuit.opened webhook: {e}; operations topic: {:?}",
                c.ops
                    .records()
                    .iter()
                    .map(|r| r.value.to_string())
                    .collect::<Vec<_>>()
            )
        });
    let hook = rx
        .requests()
        .into_iter()
        .find(|r| is_opened(r))
        .expect("just seen");
    let body: serde_json::Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(body["endpoint_id"], "flaky", "{body}");
    assert!(body["at_ms"].as_i64().is_some_and(|t| t > 0), "{body}");
    hook.verify(&[Secret::parse(&ops_secret).unwrap()], now_unix())
        .expect("the operator webhook is signed with the operator endpoint's secret");
    // The same event is on the operations topic.
    c.ops.wait_kind("circuit.opened", "flaky", GUARD).await;
    assert!(
        c.ops.records().iter().all(|r| r.endpoint() != "ops-hook"),
        "nothing reports on the operator endpoint itself"
    );
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
    c.create(endpoint("loop", "http://127.0.0.1:9/hook".into()))
        .await;
    let r = endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "loop".into(),
            url: Some("http://10.0.0.1/x".into()),
            ..Default::default()
        })
        .await;
    assert_status(r, Code::InvalidArgument, "url");
    assert_eq!(c.get("loop").await.url, "http://127.0.0.1:9/hook");
    c.shutdown().await;
}
