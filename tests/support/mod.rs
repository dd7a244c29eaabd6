//! Shared helpers of the end-to-end tests: start a whole Herald node
//! (ingest + dispatcher) in-process against a [`DevBroker`], connect gRPC
//! clients to it, and small request builders.
//!
//! The broker is not `Send`, so each test starts it in its own body
//! (`let (broker, cfg) = support::broker(cfg)`), then the node with
//! [`TestNode::start`].

#![allow(dead_code)]

pub mod attempts_tail;
pub mod certs;
pub mod cluster;
pub mod dlq;
pub mod fleet;
pub mod health;
pub mod ledger;
pub mod ops;
pub mod procs;
pub mod promtext;
pub mod tansu;
pub mod topic_tail;

use std::time::Duration;

use herald::node::{self, Roles, RunningNode};
use herald_core::Config;
use herald_kafka::DevBroker;
use herald_proto::v1 as pb;
use herald_proto::v1::endpoint_service_client::EndpointServiceClient;
use herald_proto::v1::event_service_client::EventServiceClient;
use herald_testkit::fixtures;
use tonic::transport::Channel;

/// The failure guard of every wait: generous, never a synchronisation.
pub const GUARD: Duration = Duration::from_secs(120);

/// A test configuration; logs go to stderr at `warn` unless `RUST_LOG` says otherwise.
pub fn config() -> Config {
    let mut cfg = fixtures::test_config();
    cfg.log.level = "warn".into();
    herald::logging::init(&cfg.log);
    cfg
}

/// Starts an in-memory broker for `cfg` and points `cfg` at it.
pub fn broker(mut cfg: Config) -> (DevBroker, Config) {
    let broker = fixtures::start_broker(&mut cfg).expect("mock Kafka cluster starts");
    (broker, cfg)
}

/// A running node with gRPC clients connected to it.
pub struct TestNode {
    /// The node itself.
    pub node: RunningNode,
    /// `EventService` client.
    pub events: EventServiceClient<Channel>,
    /// `EndpointService` client.
    pub endpoints: EndpointServiceClient<Channel>,
}

impl TestNode {
    /// Starts a node with every role and waits until its registry is loaded
    /// (before that, the API answers `UNAVAILABLE`).
    pub async fn start(cfg: Config) -> Self {
        Self::start_with(cfg, Roles::ALL).await
    }

    /// Starts a node with `roles` (ingest must be one of them) and waits
    /// until its registry is loaded.
    pub async fn start_with(cfg: Config, roles: Roles) -> Self {
        let node = start_loaded(cfg, roles).await;
        let channel = channel(&node).await;
        Self {
            node,
            events: EventServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            endpoints: EndpointServiceClient::new(channel),
        }
    }

    /// Creates an enabled endpoint `id` posting to `url`; returns its view and secret.
    pub async fn create_endpoint(&self, id: &str, url: &str) -> (pb::Endpoint, String) {
        let resp = self
            .endpoints
            .clone()
            .create_endpoint(pb::CreateEndpointRequest {
                id: id.into(),
                url: url.into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("create endpoint {id}: {e}"))
            .into_inner();
        (
            resp.endpoint.expect("create returns the endpoint"),
            resp.secret,
        )
    }

    /// Publishes one event; panics on any error.
    pub async fn publish(&self, endpoint_id: &str, payload: &str) -> pb::PublishResponse {
        self.events
            .clone()
            .publish(publish_req(endpoint_id, payload))
            .await
            .unwrap_or_else(|e| panic!("publish to {endpoint_id}: {e}"))
            .into_inner()
    }

    /// `GET /metrics` of the node, as text.
    pub async fn metrics(&self) -> String {
        metrics_text(&self.node).await
    }

    /// Stops the node (drain included) and checks that it stopped cleanly.
    pub async fn shutdown(self) {
        drop((self.events, self.endpoints));
        tokio::time::timeout(GUARD, self.node.shutdown())
            .await
            .expect("node shuts down in time")
            .expect("node shuts down cleanly");
    }
}

/// Starts a node that only dispatches (no gRPC API); panics if it cannot.
pub async fn start_dispatcher(cfg: Config) -> RunningNode {
    node::start(
        cfg,
        Roles {
            ingest: false,
            dispatch: true,
        },
    )
    .await
    .expect("a dispatch-only node starts")
}

/// Starts a node with `roles` under `cfg` and waits until its registry is
/// loaded; no client is attached (the config may require tokens or TLS).
pub async fn start_loaded(cfg: Config, roles: Roles) -> RunningNode {
    let node = node::start(cfg, roles).await.expect("node starts");
    tokio::time::timeout(GUARD, node.registry.wait_loaded())
        .await
        .expect("the endpoint registry loads");
    if roles.ingest {
        // Keyed publishes are refused until the idempotency topic is read.
        tokio::time::timeout(GUARD, node.health.wait_ready("idempotency"))
            .await
            .expect("the idempotency ledger loads");
    }
    node
}

/// A plaintext gRPC channel to `node`'s API.
pub async fn channel(node: &RunningNode) -> Channel {
    let grpc = node.grpc_addr.expect("ingest runs, so gRPC is bound");
    Channel::from_shared(format!("http://{grpc}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("gRPC connects")
}

/// A publish request of type `test.event`.
pub fn publish_req(endpoint_id: &str, payload: &str) -> pb::PublishRequest {
    pb::PublishRequest {
        endpoint_id: endpoint_id.into(),
        event_type: "test.event".into(),
        payload: payload.into(),
        ..Default::default()
    }
}

/// The sum of every sample of metric `name` in a Prometheus text exposition
/// (all label sets), or `None` if there is none.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// `GET /metrics` of `node`, as text.
pub async fn metrics_text(node: &RunningNode) -> String {
    let url = format!("http://{}/metrics", node.http_addr);
    let answer = herald_testkit::http::get(&url).await.expect("GET /metrics");
    assert_eq!(answer.status, 200, "GET /metrics: {}", answer.text());
    answer.text()
}

/// Waits until `cond` holds on `node`'s metrics text, polling `/metrics`
/// under [`GUARD`]; `what` names the wait in the failure.
pub async fn wait_metric(node: &RunningNode, what: &str, cond: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        if cond(&metrics_text(node).await) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes `items` (endpoint id, payload) with `PublishBatch`, `batch` at a
/// time, one call after the other, so each endpoint's events reach Kafka in
/// the order given. Returns one response per item, in order; panics if any
/// item is refused.
pub async fn publish_in_order(
    client: &mut EventServiceClient<Channel>,
    items: &[(String, String)],
    batch: usize,
) -> Vec<pb::PublishResponse> {
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(batch.max(1)) {
        let req = pb::PublishBatchRequest {
            events: chunk.iter().map(|(ep, p)| publish_req(ep, p)).collect(),
        };
        let resp = tokio::time::timeout(GUARD, client.publish_batch(req))
            .await
            .expect("publish batch answers in time")
            .expect("publish batch")
            .into_inner();
        assert_eq!(
            (resp.accepted as usize, resp.rejected),
            (chunk.len(), 0),
            "batch refused items: {:?}",
            resp.results
                .iter()
                .filter(|r| !matches!(r.result, Some(pb::publish_result::Result::Ok(_))))
                .collect::<Vec<_>>()
        );
        for (i, r) in resp.results.into_iter().enumerate() {
            assert_eq!(r.index as usize, i);
            match r.result {
                Some(pb::publish_result::Result::Ok(ok)) => out.push(ok),
                other => panic!("batch item {i} failed: {other:?}"),
            }
        }
    }
    out
}

/// Publishes round `round`: `per` events to each endpoint `{prefix}-{i:02}`
/// (`i` below `endpoints`), in order, 50 to a `PublishBatch`; waits until
/// `receiver` has every one. Returns (endpoint, response) in publish order.
pub async fn publish_round(
    node: &TestNode,
    receiver: &herald_testkit::TestReceiver,
    (prefix, endpoints): (&str, usize),
    round: usize,
    per: usize,
) -> Vec<(String, pb::PublishResponse)> {
    let items: Vec<(String, String)> = (0..per)
        .flat_map(|seq| {
            (0..endpoints).map(move |i| {
                (
                    format!("{prefix}-{i:02}"),
                    format!(r#"{{"round":{round},"seq":{seq}}}"#),
                )
            })
        })
        .collect();
    let published = publish_in_order(&mut node.events.clone(), &items, 50).await;
    let ids: Vec<String> = published.iter().map(|p| p.event_id.clone()).collect();
    receiver
        .wait_for_ids(&ids, GUARD)
        .await
        .expect("every event of the round is delivered");
    items.into_iter().map(|(ep, _)| ep).zip(published).collect()
}

/// The sum of the samples of metric `name` whose labels contain `label`
/// (e.g. `reason="final_answer"`), or `None` if there is none.
pub fn metric_sum_with(text: &str, name: &str, label: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !rest.starts_with('{') || !rest.split('}').next().is_some_and(|l| l.contains(label)) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The largest number of `times` inside any half-open window of `window`
/// (rate-limit checks on a receiver's arrival times).
pub fn max_in_window(times: &[std::time::Instant], window: Duration) -> usize {
    let mut t = times.to_vec();
    t.sort();
    let (mut lo, mut best) = (0, 0);
    for hi in 0..t.len() {
        while t[hi] - t[lo] >= window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}
