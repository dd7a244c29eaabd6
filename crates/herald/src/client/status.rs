//! `herald status`: a readable summary of a running cluster — dispatchers
//! and their partitions, publish throughput, lag and retry backlog, and the
//! endpoints that are disabled or failing — through `ClusterService`.

use herald_proto::v1::cluster_service_client::ClusterServiceClient;
use herald_proto::v1::{ClusterStatus, GetStatusRequest};
use serde::Serialize;

use super::output::{self, Render};
use super::{rpc, ClientOpts};

/// Flags of `herald status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Measure publish throughput over this long, e.g. 1s (at most 10s).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_sample)]
    sample: u32,
}

fn parse_sample(s: &str) -> Result<u32, String> {
    let d = herald_core::duration::parse(s)?;
    if d.as_millis() > 10_000 || d.is_zero() {
        return Err("give a sample between 1ms and 10s".into());
    }
    Ok(d.as_millis() as u32)
}

#[derive(Serialize, Debug)]
struct Dispatcher {
    client_id: String,
    host: String,
    partitions: Vec<i32>,
}

#[derive(Serialize, Debug)]
struct Partition {
    partition: i32,
    events_lag: i64,
    retry_backlog: i64,
    events_end: i64,
    events_committed: i64,
}

#[derive(Serialize, Debug)]
struct StatusView {
    group: String,
    group_state: String,
    dispatchers: Vec<Dispatcher>,
    publish_rate: f64,
    total_lag: i64,
    total_retry_backlog: i64,
    partitions: Vec<Partition>,
    endpoints: u32,
    disabled_count: u32,
    disabled_endpoints: Vec<String>,
    open_circuits: Vec<String>,
}

impl From<ClusterStatus> for StatusView {
    fn from(s: ClusterStatus) -> Self {
        let partitions: Vec<Partition> = s
            .partitions
            .into_iter()
            .map(|p| Partition {
                partition: p.partition,
                events_lag: p.events_lag,
                retry_backlog: p.retry_backlog,
                events_end: p.events_end,
                events_committed: p.events_committed,
            })
            .collect();
        Self {
            total_lag: partitions.iter().map(|p| p.events_lag).sum(),
            total_retry_backlog: partitions.iter().map(|p| p.retry_backlog).sum(),
            group: s.group,
            group_state: s.group_state,
            dispatchers: s
                .dispatchers
                .into_iter()
                .map(|d| Dispatcher {
                    client_id: d.client_id,
                    host: d.host,
                    partitions: d.partitions,
                })
                .collect(),
            publish_rate: s.publish_rate,
            partitions,
            endpoints: s.endpoints,
            disabled_count: s.disabled_count,
            disabled_endpoints: s.disabled_endpoints,
            open_circuits: s.open_circuits,
        }
    }
}

impl Render for StatusView {
    fn to_text(&self) -> String {
        let mut out = String::new();
        let state = if self.group_state.is_empty() {
            "unknown"
        } else {
            &self.group_state
        };
        out.push_str(&format!(
            "dispatchers ({} in group {}, {state}):\n",
            self.dispatchers.len(),
            self.group
        ));
        if self.dispatchers.is_empty() && !self.group_state.starts_with("unknown") {
            out.push_str("  none: no dispatcher is running, nothing is delivered\n");
        }
        for d in &self.dispatchers {
            let ps: Vec<String> = d.partitions.iter().map(i32::to_string).collect();
            out.push_str(&format!(
                "  {}  {}  partitions [{}]\n",
                d.client_id,
                d.host,
                ps.join(", ")
            ));
        }
        out.push_str(&format!(
            "publish rate: {:.1} events/s\n",
            self.publish_rate
        ));
        out.push_str(&format!(
            "lag: {} events behind, {} waiting in the retry topic\n",
            self.total_lag, self.total_retry_backlog
        ));
        out.push_str("  PARTITION  LAG  RETRY BACKLOG  END  COMMITTED\n");
        for p in &self.partitions {
            out.push_str(&format!(
                "  {:<9}  {:<3}  {:<13}  {:<3}  {}\n",
                p.partition, p.events_lag, p.retry_backlog, p.events_end, p.events_committed
            ));
        }
        out.push_str(&format!(
            "endpoints: {} ({} disabled)\n",
            self.endpoints, self.disabled_count
        ));
        if !self.disabled_endpoints.is_empty() {
            out.push_str(&format!(
                "  disabled: {}\n",
                self.disabled_endpoints.join(", ")
            ));
        }
        if self.open_circuits.is_empty() {
            out.push_str("failing endpoints: none with an open circuit\n");
        } else {
            out.push_str(&format!(
                "failing endpoints (circuit open): {}\n",
                self.open_circuits.join(", ")
            ));
        }
        out
    }
}

/// Prints the status of the cluster behind `opts.server`.
pub async fn run_status(opts: &ClientOpts, args: StatusArgs) -> anyhow::Result<()> {
    let server = opts.server.as_str();
    let mut client = ClusterServiceClient::new(rpc::connect(opts).await?);
    let status = client
        .get_status(GetStatusRequest {
            sample_ms: args.sample,
        })
        .await
        .map_err(|s| rpc::rpc_error(server, "GetStatus", s))?
        .into_inner();
    output::print(opts.output, &StatusView::from(status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1::{DispatcherStatus, PartitionStatus};

    #[test]
    fn text_summary_names_what_matters() {
        let view = StatusView::from(ClusterStatus {
            group: "herald-dispatch".into(),
            group_state: "Stable".into(),
            dispatchers: vec![DispatcherStatus {
                client_id: "herald-dispatch-a".into(),
                host: "/10.0.0.1".into(),
                partitions: vec![0, 1],
                ..Default::default()
            }],
            partitions: vec![
                PartitionStatus {
                    partition: 0,
                    events_lag: 3,
                    retry_backlog: 2,
                    ..Default::default()
                },
                PartitionStatus {
                    partition: 1,
                    events_lag: 4,
                    ..Default::default()
                },
            ],
            publish_rate: 12.5,
            endpoints: 3,
            disabled_count: 1,
            disabled_endpoints: vec!["gone".into()],
            open_circuits: vec!["flaky".into()],
            ..Default::default()
        });
        let text = view.to_text();
        assert!(text.contains("herald-dispatch-a"), "{text}");
        assert!(text.contains("partitions [0, 1]"), "{text}");
        assert!(text.contains("12.5 events/s"), "{text}");
        assert!(text.contains("7 events behind, 2 waiting"), "{text}");
        assert!(text.contains("disabled: gone"), "{text}");
        assert!(text.contains("circuit open): flaky"), "{text}");
        assert!(parse_sample("20s").is_err());
        assert_eq!(parse_sample("500ms").unwrap(), 500);
    }
}
