//! The one process harness of the integration tests: a mock Kafka broker
//! process, an in-process ingest node, and a dispatcher child process, all
//! reading one config file in a run directory (printed at start). Fields are
//! dropped in declaration order, so the clients of the broker go before it.

use std::path::PathBuf;

use herald::node::Roles;
use herald_proto::v1 as pb;

use super::procs::{self, BrokerProc, ChildProc};
use super::{publish_in_order, TestNode, GUARD};

/// Broker process, in-process ingest node and (once spawned) a dispatcher.
pub struct ProcessCluster {
    /// The ingest node (gRPC clients).
    pub node: TestNode,
    /// The dispatcher child, once spawned.
    pub dispatcher: Option<ChildProc>,
    /// The broker process.
    pub broker: BrokerProc,
    /// The config file every process reads.
    pub config: PathBuf,
    /// The run directory (config, child logs).
    pub dir: PathBuf,
}

impl ProcessCluster {
    /// Writes `toml` to a new run directory, starts the broker and the
    /// ingest node (no dispatcher yet).
    pub async fn start(test: &str, toml: &str) -> Self {
        let dir = procs::run_dir(test);
        eprintln!(
            "{test}: run directory (config and child logs): {}",
            dir.display()
        );
        let config = procs::write_config(&dir, toml);
        let broker = tokio::task::block_in_place(|| BrokerProc::start(&dir, &config));
        let cfg = procs::load_config(&config, &broker.bootstrap, &format!("{test}-ingest"));
        let node = TestNode::start_with(
            cfg,
            Roles {
                ingest: true,
                dispatch: false,
            },
        )
        .await;
        Self {
            node,
            dispatcher: None,
            broker,
            config,
            dir,
        }
    }

    /// Starts the dispatcher child (JSON logs at `log_level`) and waits for
    /// it to start; returns its `/metrics` URL.
    pub fn spawn_dispatcher(&mut self, log_level: &str) -> String {
        let mut d = procs::spawn_dispatcher(
            "dispatch",
            &self.dir,
            &self.config,
            &self.broker.bootstrap,
            log_level,
        );
        let started = tokio::task::block_in_place(|| d.wait_for_line("herald started", GUARD))
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = procs::http_addr_of(&started)
            .unwrap_or_else(|| panic!("no http address in {started:?}"));
        self.dispatcher = Some(d);
        format!("http://{addr}/metrics")
    }

    /// `GET url` (a dispatcher's `/metrics`), as text.
    pub async fn metrics(&self, url: &str) -> String {
        let log = self
            .dispatcher
            .as_ref()
            .map(|d| d.log_path.display().to_string())
            .unwrap_or_default();
        let a = herald_testkit::http::get(url)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}; log: {log}"));
        assert_eq!(a.status, 200, "GET {url}");
        a.text()
    }

    /// Creates an endpoint through the ingest node.
    pub async fn create_endpoint(&self, req: pb::CreateEndpointRequest) {
        let id = req.id.clone();
        self.node
            .endpoints
            .clone()
            .create_endpoint(req)
            .await
            .unwrap_or_else(|e| panic!("create endpoint {id}: {e}"));
    }

    /// Publishes `items` in order, `batch` per call.
    pub async fn publish(
        &self,
        items: &[(String, String)],
        batch: usize,
    ) -> Vec<pb::PublishResponse> {
        publish_in_order(&mut self.node.events.clone(), items, batch).await
    }

    /// Stops everything and removes the run directory (the test passed).
    pub async fn shutdown(self) {
        self.node.shutdown().await;
        drop(self.dispatcher);
        drop(self.broker);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
