//! Herald as a fleet of real processes: a broker (the mock cluster, or the
//! persistent tansu broker), ingest nodes and dispatchers (`herald-it-node
//! ingest|dispatch`), each of which a test can SIGKILL, stop with SIGTERM, or
//! start again; and
//! a publisher that keeps each endpoint's order across node and broker
//! restarts by retrying whole batches with idempotency keys.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herald_proto::v1 as pb;
use herald_proto::v1::endpoint_service_client::EndpointServiceClient;
use herald_proto::v1::event_service_client::EventServiceClient;
use tonic::transport::Channel;

use super::ledger::{Entry, Ledger};
use super::procs::{self, BrokerProc, ChildProc};
use super::tansu::TansuBroker;

/// Which broker a fleet runs on.
pub enum BrokerKind {
    /// librdkafka's mock cluster in its own process (nothing persists).
    Mock,
    /// tansu with SQLite storage in the run directory (this binary).
    Tansu(PathBuf),
}

/// The broker process of a fleet.
pub enum Broker {
    /// See [`BrokerKind::Mock`].
    Mock(BrokerProc),
    /// See [`BrokerKind::Tansu`].
    Tansu(TansuBroker),
}

impl Broker {
    /// `host:port` for `kafka.brokers`.
    pub fn bootstrap(&self) -> &str {
        match self {
            Broker::Mock(b) => &b.bootstrap,
            Broker::Tansu(b) => &b.bootstrap,
        }
    }

    /// Kills the broker and starts it again on the same port and storage
    /// (the persistent broker only: the mock cluster would lose everything).
    pub fn restart(&mut self) {
        match self {
            Broker::Tansu(b) => b.restart(),
            Broker::Mock(_) => panic!("the mock broker keeps nothing across a restart"),
        }
    }
}

/// librdkafka 2.12.1 (the version rdkafka 0.39 bundles; no newer one is
/// published) can abort a consumer when an assignment is torn down while a
/// partition's previous stop is still outstanding, e.g. when the broker
/// restarts under a rebalance (librdkafka issue 5573, fixed upstream after
/// 2.15). The node dies like a SIGKILL; docs/delivery-semantics.md lists it.
pub const LIBRDKAFKA_ABORT: &str = "rd_kafka_assignment_partition_stopped: Assertion";

/// How often [`Fleet::wait_supervised`] looks for crashed nodes.
pub const SUPERVISE_EVERY: Duration = Duration::from_secs(2);

/// Log filter of fleet nodes: rebalances, capability gaps and warnings.
pub const NODE_LOG: &str = "warn,herald=info,herald_dispatch::consumer=info";

/// A node of the fleet: its process (None while stopped) and, for an ingest
/// node, the gRPC address of its current incarnation.
pub struct Node {
    /// `ingest-a`, `dispatch-b`, ...
    pub name: String,
    /// `ingest` or `dispatch`.
    pub role: &'static str,
    /// The running process.
    pub proc: Option<ChildProc>,
    /// `http://127.0.0.1:PORT` of the gRPC API (ingest nodes).
    pub grpc: Option<String>,
    /// `127.0.0.1:PORT` of `/metrics`.
    pub http: Option<String>,
    /// Its `--log-level` ([`NODE_LOG`] unless added with another).
    pub log_level: String,
    /// Its config file (the fleet's unless added with its own).
    pub config: PathBuf,
}

/// The fleet: broker, ingest nodes, dispatchers, all reading one config.
pub struct Fleet {
    /// Ingest nodes, then dispatchers are separate lists.
    pub ingest: Vec<Node>,
    /// Dispatchers.
    pub dispatch: Vec<Node>,
    /// The broker (dropped last: declared last).
    pub broker: Broker,
    /// The config file.
    pub config: PathBuf,
    /// The run directory.
    pub dir: PathBuf,
    /// Failure guard of every wait.
    pub guard: Duration,
}

impl Fleet {
    /// Starts the broker, then `ingest` ingest nodes (the first creates the
    /// topics on tansu; the mock broker has them from the start), then
    /// `dispatch` dispatchers; waits until each is started.
    pub fn start(
        kind: BrokerKind,
        dir: &Path,
        toml: &str,
        ingest: usize,
        dispatch: usize,
        guard: Duration,
    ) -> Self {
        let config = procs::write_config(dir, toml);
        let broker = match kind {
            BrokerKind::Mock => Broker::Mock(BrokerProc::start(dir, &config)),
            BrokerKind::Tansu(bin) => Broker::Tansu(TansuBroker::start(bin, dir)),
        };
        let mut fleet = Self {
            ingest: Vec::new(),
            dispatch: Vec::new(),
            broker,
            config,
            dir: dir.to_path_buf(),
            guard,
        };
        for _ in 0..ingest {
            fleet.add_node("ingest");
        }
        for _ in 0..dispatch {
            fleet.add_node("dispatch");
        }
        fleet
    }

    /// Adds one more node of `role` (`ingest-c`, `dispatch-d`, ...) and
    /// starts it; returns its index.
    pub fn add_node(&mut self, role: &'static str) -> usize {
        let config = self.config.clone();
        self.add_node_with(role, NODE_LOG, &config)
    }

    /// [`Fleet::add_node`] with its own log filter and config file (e.g. a
    /// dispatcher whose egress policy differs from the rest of the fleet).
    pub fn add_node_with(&mut self, role: &'static str, log_level: &str, config: &Path) -> usize {
        let nodes = self.nodes(role);
        let i = nodes.len();
        nodes.push(Node {
            name: format!("{role}-{}", letter(i)),
            role,
            proc: None,
            grpc: None,
            http: None,
            log_level: log_level.to_string(),
            config: config.to_path_buf(),
        });
        self.start_node(role, i);
        i
    }

    fn nodes(&mut self, role: &str) -> &mut Vec<Node> {
        match role {
            "ingest" => &mut self.ingest,
            _ => &mut self.dispatch,
        }
    }

    /// Starts node `i` of `role` (again) and waits for its `herald started`
    /// line (listeners bound, topics checked).
    pub fn start_node(&mut self, role: &str, i: usize) {
        let (dir, brokers, guard) = (
            self.dir.clone(),
            self.broker.bootstrap().to_string(),
            self.guard,
        );
        let node = &mut self.nodes(role)[i];
        let config = node.config.clone();
        assert!(node.proc.is_none(), "{} is already running", node.name);
        let mut p = ChildProc::spawn(
            &node.name,
            &dir,
            &[
                role,
                "--config",
                config.to_str().expect("utf-8 path"),
                "--brokers",
                &brokers,
                "--node-id",
                &node.name,
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--log-level",
                &node.log_level,
            ],
            &[],
        );
        let line = p
            .wait_for_line("herald started", guard)
            .unwrap_or_else(|e| panic!("{e}"));
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: started line is not JSON ({e}): {line}", node.name));
        node.http = v.get("http").and_then(|h| h.as_str()).map(str::to_string);
        // `grpc` is the Debug form of Option<SocketAddr>: `Some(127.0.0.1:PORT)`.
        node.grpc = v
            .get("grpc")
            .and_then(|g| g.as_str())
            .and_then(|g| {
                g.strip_prefix("Some(")?
                    .strip_suffix(')')
                    .map(str::to_string)
            })
            .map(|a| format!("http://{a}"));
        node.proc = Some(p);
    }

    /// Blocks until dispatcher `i` printed a partition assignment (since it
    /// started: the log of one incarnation is checked from its start).
    pub fn wait_assigned(&mut self, i: usize) {
        let guard = self.guard;
        let node = &mut self.dispatch[i];
        node.proc
            .as_mut()
            .expect("running")
            .wait_for_line("partition assigned", guard)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGKILL: no drain, no commit, no goodbye to the group.
    pub fn kill9(&mut self, role: &str, i: usize) {
        let node = &mut self.nodes(role)[i];
        if let Some(mut p) = node.proc.take() {
            p.kill9();
        }
        node.grpc = None;
        node.http = None;
    }

    /// SIGTERM; the node must drain and exit 0 within the guard.
    pub fn terminate(&mut self, role: &str, i: usize) {
        let guard = self.guard;
        let node = &mut self.nodes(role)[i];
        let mut p = node.proc.take().expect("running");
        if let Err(e) = p.terminate(guard) {
            // Dead already of the known librdkafka abort: a crash, not a
            // failed drain (the caller starts it again either way).
            assert!(
                p.printed(LIBRDKAFKA_ABORT),
                "graceful stop of {}: {e}",
                node.name
            );
            eprintln!(
                "{} had died of the librdkafka abort before its SIGTERM",
                node.name
            );
        }
        node.grpc = None;
        node.http = None;
    }

    /// Nodes that died on their own since the last call: each must have died
    /// of the one known librdkafka abort ([`LIBRDKAFKA_ABORT`]), which is
    /// then handled as a supervisor would (the node is started again) and
    /// returned by name; any other death fails the test.
    pub fn revive_crashed(&mut self) -> Vec<String> {
        let mut revived = Vec::new();
        for role in ["ingest", "dispatch"] {
            for i in 0..self.nodes(role).len() {
                let node = &mut self.nodes(role)[i];
                let Some(p) = node.proc.as_mut() else {
                    continue;
                };
                if p.is_running() {
                    continue;
                }
                assert!(
                    p.printed(LIBRDKAFKA_ABORT),
                    "{} died on its own; log: {}",
                    node.name,
                    p.log_path.display()
                );
                revived.push(node.name.clone());
                node.proc = None;
                self.start_node(role, i);
            }
        }
        revived
    }

    /// Waits until `done(entries)` holds, like [`Ledger::wait_until`], as a
    /// supervisor would: every [`SUPERVISE_EVERY`] it starts again the
    /// nodes that died of the known librdkafka abort (see
    /// [`Fleet::revive_crashed`]; any other death fails the test), so a
    /// crash in the middle of a wait does not stall the fleet. The names
    /// of the revived nodes are returned; `Err` after `guard` in all.
    pub async fn wait_supervised(
        &mut self,
        ledger: &Ledger,
        mut done: impl FnMut(&[Entry]) -> bool,
        guard: Duration,
    ) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + guard;
        let mut revived = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match ledger
                .wait_until(&mut done, left.min(SUPERVISE_EVERY))
                .await
            {
                Ok(()) => return Ok(revived),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!(
                        "{e}; {guard:?} in all, nodes revived meanwhile: {revived:?}"
                    ))
                }
                Err(_) => revived.extend(tokio::task::block_in_place(|| self.revive_crashed())),
            }
        }
    }

    /// Whether node `i` of `role` is running.
    pub fn is_up(&mut self, role: &str, i: usize) -> bool {
        self.nodes(role)[i].proc.is_some()
    }

    /// gRPC clients of a running ingest node.
    pub async fn clients(
        &self,
        i: usize,
    ) -> (EventServiceClient<Channel>, EndpointServiceClient<Channel>) {
        let url = self.ingest[i]
            .grpc
            .clone()
            .unwrap_or_else(|| panic!("{} is not running", self.ingest[i].name));
        let ch = Channel::from_shared(url)
            .expect("grpc url")
            .connect()
            .await
            .expect("connect to the ingest node");
        (
            EventServiceClient::new(ch.clone()),
            EndpointServiceClient::new(ch),
        )
    }
}

fn letter(i: usize) -> char {
    (b'a' + i as u8) as char
}

/// One event to publish: endpoint, payload, idempotency key.
#[derive(Debug, Clone)]
pub struct Item {
    /// Endpoint id.
    pub endpoint: String,
    /// JSON payload.
    pub payload: String,
    /// Idempotency key (unique per event): a retry gets the same event id,
    /// on any ingest node (the id is derived from endpoint and key).
    pub key: String,
}

/// Why a publish attempt was repeated, and how often.
#[derive(Debug, Default, Clone)]
pub struct PublishRetries {
    /// Batches sent again after an error or a refused item.
    pub batches: usize,
    /// The last error seen.
    pub last_error: String,
}

/// Publishes `items` as one `PublishBatch` through `client` until every
/// item is accepted; on any failure the whole batch is sent again (the same
/// keys give the same ids, so nothing acknowledged changes and each
/// endpoint's order holds; an event Kafka took but the caller never saw
/// acknowledged may be delivered twice). `reconnect` gives a client for the
/// next try (another ingest node when this one is down). Gives up at
/// `deadline`.
pub async fn publish_until_accepted<F, Fut>(
    items: &[Item],
    mut reconnect: F,
    retries: &mut PublishRetries,
    deadline: Instant,
) -> Vec<pb::PublishResponse>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Option<EventServiceClient<Channel>>>,
{
    let req = pb::PublishBatchRequest {
        events: items
            .iter()
            .map(|it| pb::PublishRequest {
                endpoint_id: it.endpoint.clone(),
                payload: it.payload.clone(),
                idempotency_key: it.key.clone(),
                event_type: "fleet.test".into(),
                ..Default::default()
            })
            .collect(),
    };
    let mut attempt = 0usize;
    loop {
        let outcome = match reconnect(attempt).await {
            None => Err("no ingest node reachable".to_string()),
            Some(mut client) => {
                match tokio::time::timeout(
                    Duration::from_secs(40),
                    client.publish_batch(req.clone()),
                )
                .await
                {
                    Err(_) => Err("PublishBatch did not answer in 40 s".to_string()),
                    Ok(Err(status)) => Err(format!("PublishBatch: {status}")),
                    Ok(Ok(resp)) => {
                        let resp = resp.into_inner();
                        let mut ok = Vec::with_capacity(items.len());
                        let mut refused = None;
                        for r in resp.results {
                            match r.result {
                                Some(pb::publish_result::Result::Ok(o)) => ok.push(o),
                                Some(pb::publish_result::Result::Error(e))
                                    if e.code == "INVALID_ARGUMENT" =>
                                {
                                    // Retrying cannot help: the test is wrong.
                                    panic!("item {} refused: {e:?}", r.index);
                                }
                                other => {
                                    refused.get_or_insert(format!("item {}: {other:?}", r.index));
                                }
                            }
                        }
                        match refused {
                            None if ok.len() == items.len() => Ok(ok),
                            None => Err(format!("{} results for {} items", ok.len(), items.len())),
                            Some(e) => Err(e),
                        }
                    }
                }
            }
        };
        match outcome {
            Ok(ok) => return ok,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "publishing did not succeed before the deadline: {e}"
                );
                retries.batches += 1;
                retries.last_error = e;
                attempt += 1;
                // Pacing of retries while a broker or node restarts: each
                // try is a real request whose answer decides; the pause only
                // keeps the loop from spinning.
                tokio::time::sleep(Duration::from_millis(100 * attempt.min(10) as u64)).await;
            }
        }
    }
}
