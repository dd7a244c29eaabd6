//! A [`Fleet`] with a node in the test process: the mock broker and any
//! dispatchers are child processes of the one process harness
//! ([`super::fleet`]), and an in-process node (ingest, or ingest and
//! dispatcher) gives the test gRPC clients and its registry. Every process
//! reads one config file in a run directory (printed at start). Fields are
//! dropped in declaration order, so the in-process node goes before the
//! broker.

use std::path::{Path, PathBuf};
use std::time::Duration;

use herald::node::Roles;
use herald_proto::v1 as pb;

use super::fleet::{BrokerKind, Fleet};
use super::{procs, publish_in_order, TestNode, GUARD};

/// An in-process node on a fleet of broker and dispatcher processes.
pub struct ProcessCluster {
    /// Always `Some` until shutdown or drop.
    running: Option<TestNode>,
    /// Broker and dispatcher processes, config file, run directory.
    pub fleet: Fleet,
}

impl ProcessCluster {
    /// Writes `toml` to a new run directory, starts the broker and an
    /// in-process ingest node (no dispatcher yet).
    pub async fn start(test: &str, toml: &str) -> Self {
        Self::start_with(
            test,
            toml,
            Roles {
                ingest: true,
                dispatch: false,
            },
        )
        .await
    }

    /// [`ProcessCluster::start`] with the in-process node's `roles`.
    pub async fn start_with(test: &str, toml: &str, roles: Roles) -> Self {
        let dir = procs::run_dir(test);
        eprintln!(
            "{test}: run directory (config and child logs): {}",
            dir.display()
        );
        let fleet =
            tokio::task::block_in_place(|| Fleet::start(BrokerKind::Mock, &dir, toml, 0, 0, GUARD));
        let cfg = procs::load_config(
            &fleet.config,
            fleet.broker.bootstrap(),
            &format!("{test}-node"),
        );
        let node = TestNode::start_with(cfg, roles).await;
        Self {
            running: Some(node),
            fleet,
        }
    }

    /// The in-process node.
    pub fn node(&self) -> &TestNode {
        self.running.as_ref().expect("the node runs")
    }

    /// `host:port` of the broker.
    pub fn bootstrap(&self) -> &str {
        self.fleet.broker.bootstrap()
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.fleet.dir
    }

    /// The config file every process reads (unless given its own).
    pub fn config(&self) -> PathBuf {
        self.fleet.config.clone()
    }

    /// Starts a dispatcher process (JSON logs at `log_level`, which must let
    /// `herald=info` through: the harness waits for its `herald started`
    /// line) and waits for it to start; returns its `/metrics` URL.
    pub fn spawn_dispatcher(&mut self, log_level: &str) -> String {
        let config = self.config();
        self.spawn_dispatcher_with(log_level, &config)
    }

    /// [`ProcessCluster::spawn_dispatcher`] reading its own config file.
    pub fn spawn_dispatcher_with(&mut self, log_level: &str, config: &Path) -> String {
        let i =
            tokio::task::block_in_place(|| self.fleet.add_node_with("dispatch", log_level, config));
        let node = &self.fleet.dispatch[i];
        let addr = node
            .http
            .clone()
            .unwrap_or_else(|| panic!("{} printed no http address", node.name));
        format!("http://{addr}/metrics")
    }

    /// `GET url` (a dispatcher's `/metrics`), as text.
    pub async fn metrics(&self, url: &str) -> String {
        let logs: Vec<String> = self
            .fleet
            .dispatch
            .iter()
            .filter_map(|n| n.proc.as_ref())
            .map(|p| p.log_path.display().to_string())
            .collect();
        let a = herald_testkit::http::get(url)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}; logs: {logs:?}"));
        assert_eq!(a.status, 200, "GET {url}");
        a.text()
    }

    /// Creates an endpoint through the in-process node; returns its view and
    /// secret.
    pub async fn create_endpoint(&self, req: pb::CreateEndpointRequest) -> (pb::Endpoint, String) {
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

    /// The endpoint `id` as the API shows it.
    pub async fn get_endpoint(&self, id: &str) -> pb::Endpoint {
        self.node()
            .endpoints
            .clone()
            .get_endpoint(pb::GetEndpointRequest { id: id.into() })
            .await
            .unwrap_or_else(|e| panic!("get endpoint {id}: {e}"))
            .into_inner()
    }

    /// Enables or disables endpoint `id`.
    pub async fn set_enabled(&self, id: &str, enabled: bool) -> pb::Endpoint {
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

    /// Waits until the in-process node's registry shows `id` with
    /// `enabled`; `Err` after the guard.
    pub async fn wait_enabled(&self, id: &str, enabled: bool) -> Result<(), String> {
        let registry = self.node().node.registry.clone();
        let mut progress = registry.progress();
        tokio::time::timeout(GUARD, async {
            loop {
                progress.borrow_and_update();
                if registry.get(id).is_some_and(|e| e.enabled == enabled) {
                    return;
                }
                progress.changed().await.expect("registry alive");
            }
        })
        .await
        .map_err(|_| {
            format!(
                "endpoint {id} did not become enabled = {enabled} within {GUARD:?}; run dir {}",
                self.dir().display()
            )
        })
    }

    /// Publishes `items` in order, `batch` per call.
    pub async fn publish(
        &self,
        items: &[(String, String)],
        batch: usize,
    ) -> Vec<pb::PublishResponse> {
        publish_in_order(&mut self.node().events.clone(), items, batch).await
    }

    /// Publishes `payloads` to `endpoint` in one batch (so in this order);
    /// returns the event ids.
    pub async fn publish_all(&self, endpoint: &str, payloads: &[String]) -> Vec<String> {
        let items: Vec<(String, String)> = payloads
            .iter()
            .map(|p| (endpoint.to_string(), p.clone()))
            .collect();
        self.publish(&items, 1000)
            .await
            .into_iter()
            .map(|r| r.event_id)
            .collect()
    }

    /// Stops the in-process node (drain included, checked), then every
    /// process, and removes the run directory (the test passed).
    pub async fn shutdown(mut self) {
        if let Some(node) = self.running.take() {
            node.shutdown().await;
        }
        let dir = self.dir().to_path_buf();
        drop(self);
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Drop for ProcessCluster {
    /// Only does something when a test failed before `shutdown`: the node
    /// is shut down before the broker process is killed, so the failure is
    /// not buried under the node's "broker down" errors.
    fn drop(&mut self) {
        let Some(node) = self.running.take() else {
            return;
        };
        tokio::task::block_in_place(|| {
            let _ = tokio::runtime::Handle::current().block_on(tokio::time::timeout(
                Duration::from_secs(15),
                node.shutdown(),
            ));
        });
    }
}
