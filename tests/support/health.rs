//! Set-up shared by the endpoint-health tests (`rate_limits.rs`,
//! `circuit_breaker.rs`, `endpoint_disable.rs`, `egress.rs`): a
//! [`ProcessCluster`] whose in-process node has both roles, a reader of the
//! operations topic, and small request and assertion helpers.

use std::ops::Deref;

use herald::node::Roles;
use herald_proto::v1 as pb;
use herald_testkit::{Recorded, TestReceiver};
use tonic::Code;

use super::cluster::ProcessCluster;
use super::ops::OpsTail;
use super::procs;

/// Partitions of the events (and retry, dead-letter) topic of these tests.
pub const PARTITIONS: i32 = 4;
/// The operations topic.
pub const OPS_TOPIC: &str = "herald.ops";
/// The dead-letter topic.
pub const DLQ_TOPIC: &str = "herald.dlq";

/// A broker process and one in-process node (ingest + dispatcher) on it,
/// plus a reader of the operations topic.
pub struct Cluster {
    /// Reader of the operations topic, from its start.
    pub ops: OpsTail,
    /// Partitions of the events topic.
    pub partitions: i32,
    c: ProcessCluster,
}

impl Deref for Cluster {
    type Target = ProcessCluster;
    fn deref(&self) -> &ProcessCluster {
        &self.c
    }
}

impl Cluster {
    /// Starts a broker with the config `sections` (merged over the test base
    /// of [`procs::config_text`]) and a node using the same file.
    pub async fn start(test: &str, sections: &[(&str, &str)]) -> Self {
        Self::start_with(test, PARTITIONS, sections).await
    }

    /// [`Cluster::start`] with `partitions` partitions.
    pub async fn start_with(test: &str, partitions: i32, sections: &[(&str, &str)]) -> Self {
        let toml = procs::config_text(partitions, sections);
        let c = ProcessCluster::start_with(test, &toml, Roles::ALL).await;
        let ops = OpsTail::start(c.bootstrap(), OPS_TOPIC);
        Self { ops, partitions, c }
    }

    /// Waits until the node's registry shows `id` with `enabled`; the
    /// failure names what the operations topic said.
    pub async fn wait_enabled(&self, id: &str, enabled: bool) {
        if let Err(e) = self.c.wait_enabled(id, enabled).await {
            let ops: Vec<String> = self
                .ops
                .records()
                .iter()
                .map(|r| r.value.to_string())
                .collect();
            panic!("{e}; operations records: {ops:?}");
        }
    }

    /// Stops the node, then the broker; removes the run directory.
    pub async fn shutdown(self) {
        drop(self.ops);
        self.c.shutdown().await;
    }
}

/// A `[retry]` section: `n` retries `delay` apart, no jitter.
pub fn retry_section(delay: &str, n: usize) -> String {
    let list = vec![format!("\"{delay}\""); n].join(", ");
    format!("schedule = [{list}]\njitter = 0.0")
}

/// `n` JSON payloads `{"test": tag, "seq": i}`.
pub fn payloads(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"test":"{tag}","seq":{i}}}"#))
        .collect()
}

/// A create request for endpoint `id` posting to `url`, defaults otherwise.
pub fn endpoint(id: &str, url: String) -> pb::CreateEndpointRequest {
    pb::CreateEndpointRequest {
        id: id.into(),
        url,
        ..Default::default()
    }
}

/// Asserts `r` failed with `code` and a message containing `needle`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, needle: &str) {
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
pub fn at(rx: &TestReceiver, path: &str) -> Vec<Recorded> {
    rx.requests_for(path)
}

/// The gaps between consecutive arrivals, for failure messages.
pub fn gaps(reqs: &[Recorded]) -> Vec<String> {
    reqs.windows(2)
        .map(|w| format!("{:?}", w[1].at - w[0].at))
        .collect()
}
