//! `herald status`: a readable summary of a running cluster — the Kafka
//! features the broker lacks, the dispatchers' group with each node's
//! partitions, lag and retry backlog, publish throughput, per-partition
//! offsets, and the endpoints that are disabled, have an open circuit or
//! dead-lettered the most in the last hour — through `ClusterService`.
//!
//! The server does the reading; this module only sums per node and lays
//! out the tables (comfy-table, through `output::table`).

use herald_proto::v1::cluster_service_client::ClusterServiceClient;
use std::fmt::Write as _;

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
    /// Events behind on its partitions (sum of their `events_lag`).
    events_lag: i64,
    /// Records waiting in the retry topic on its partitions.
    retry_backlog: i64,
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
struct BrokerGap {
    feature: String,
    effect: String,
}

#[derive(Serialize, Debug)]
struct EndpointTrouble {
    endpoint_id: String,
    dead_letters: u32,
    circuit_opens: u32,
    circuit_open: bool,
}

#[derive(Serialize, Debug)]
struct StatusView {
    group: String,
    group_state: String,
    dispatchers: Vec<Dispatcher>,
    /// Partitions no dispatcher owns; empty when the broker does not
    /// describe the group (ownership unknown).
    unassigned_partitions: Vec<i32>,
    publish_rate: f64,
    total_lag: i64,
    total_retry_backlog: i64,
    partitions: Vec<Partition>,
    endpoints: u32,
    disabled_count: u32,
    disabled_endpoints: Vec<String>,
    open_circuits: Vec<String>,
    /// Most dead letters, then most circuit openings, in the last hour.
    worst_endpoints: Vec<EndpointTrouble>,
    /// Kafka features the broker lacks; empty = all supported.
    broker_gaps: Vec<BrokerGap>,
}

impl StatusView {
    /// Whether the broker described the group, so partition ownership is known.
    fn ownership_known(&self) -> bool {
        !self.group_state.is_empty() && !self.group_state.starts_with("unknown")
    }

    /// The client id of the dispatcher owning `partition`, if known.
    fn owner(&self, partition: i32) -> Option<&str> {
        self.dispatchers
            .iter()
            .find(|d| d.partitions.contains(&partition))
            .map(|d| d.client_id.as_str())
    }
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
        let of = |owned: &[i32], f: fn(&Partition) -> i64| -> i64 {
            partitions
                .iter()
                .filter(|p| owned.contains(&p.partition))
                .map(f)
                .sum()
        };
        let dispatchers: Vec<Dispatcher> = s
            .dispatchers
            .into_iter()
            .map(|d| Dispatcher {
                events_lag: of(&d.partitions, |p| p.events_lag),
                retry_backlog: of(&d.partitions, |p| p.retry_backlog),
                client_id: d.client_id,
                host: d.host,
                partitions: d.partitions,
            })
            .collect();
        let mut view = Self {
            total_lag: partitions.iter().map(|p| p.events_lag).sum(),
            total_retry_backlog: partitions.iter().map(|p| p.retry_backlog).sum(),
            group: s.group,
            group_state: s.group_state,
            dispatchers,
            unassigned_partitions: Vec::new(),
            publish_rate: s.publish_rate,
            partitions,
            endpoints: s.endpoints,
            disabled_count: s.disabled_count,
            disabled_endpoints: s.disabled_endpoints,
            open_circuits: s.open_circuits,
            worst_endpoints: s
                .worst_endpoints
                .into_iter()
                .map(|w| EndpointTrouble {
                    endpoint_id: w.endpoint_id,
                    dead_letters: w.dead_letters,
                    circuit_opens: w.circuit_opens,
                    circuit_open: w.circuit_open,
                })
                .collect(),
            broker_gaps: s
                .broker_gaps
                .into_iter()
                .map(|g| BrokerGap {
                    feature: g.feature,
                    effect: g.effect,
                })
                .collect(),
        };
        if view.ownership_known() {
            view.unassigned_partitions = view
                .partitions
                .iter()
                .map(|p| p.partition)
                .filter(|&p| view.owner(p).is_none())
                .collect();
        }
        view
    }
}

impl Render for StatusView {
    fn to_text(&self) -> String {
        let mut out = String::new();
        if self.broker_gaps.is_empty() {
            out.push_str("broker: all features Herald uses are supported\n");
        } else {
            out.push_str("broker gaps:\n");
            for g in &self.broker_gaps {
                let _ = writeln!(out, "  {}: {}", g.feature, g.effect);
            }
        }

        let state = if self.group_state.is_empty() {
            "unknown"
        } else {
            &self.group_state
        };
        let _ = writeln!(
            out,
            "dispatchers ({} in group {}, {state}):",
            self.dispatchers.len(),
            self.group
        );
        if self.dispatchers.is_empty() && self.ownership_known() {
            out.push_str("  none: no dispatcher is running, nothing is delivered\n");
        }
        if !self.dispatchers.is_empty() || !self.unassigned_partitions.is_empty() {
            let mut rows: Vec<[String; 5]> = self
                .dispatchers
                .iter()
                .map(|d| {
                    [
                        d.client_id.clone(),
                        d.host.clone(),
                        partition_ranges(&d.partitions),
                        d.events_lag.to_string(),
                        d.retry_backlog.to_string(),
                    ]
                })
                .collect();
            if !self.unassigned_partitions.is_empty() {
                let lag = |f: fn(&Partition) -> i64| -> i64 {
                    self.partitions
                        .iter()
                        .filter(|p| self.unassigned_partitions.contains(&p.partition))
                        .map(f)
                        .sum()
                };
                rows.push([
                    "(no owner)".into(),
                    "-".into(),
                    partition_ranges(&self.unassigned_partitions),
                    lag(|p| p.events_lag).to_string(),
                    lag(|p| p.retry_backlog).to_string(),
                ]);
            }
            indent(
                &mut out,
                &output::table(
                    &["NODE", "HOST", "PARTITIONS", "LAG", "RETRY BACKLOG"],
                    rows,
                ),
            );
        }

        let _ = writeln!(out, "publish rate: {:.1} events/s", self.publish_rate);
        let _ = writeln!(
            out,
            "lag: {} events behind, {} waiting in the retry topic",
            self.total_lag, self.total_retry_backlog
        );
        let rows = self.partitions.iter().map(|p| {
            let owner = match self.owner(p.partition) {
                Some(owner) => owner.to_owned(),
                None if self.ownership_known() => "(no owner)".to_owned(),
                None => "-".to_owned(),
            };
            [
                p.partition.to_string(),
                owner,
                p.events_lag.to_string(),
                p.retry_backlog.to_string(),
                p.events_end.to_string(),
                p.events_committed.to_string(),
            ]
        });
        indent(
            &mut out,
            &output::table(
                &[
                    "PARTITION",
                    "OWNER",
                    "LAG",
                    "RETRY BACKLOG",
                    "END",
                    "COMMITTED",
                ],
                rows,
            ),
        );

        let _ = writeln!(
            out,
            "endpoints: {} ({} disabled)",
            self.endpoints, self.disabled_count
        );
        if !self.disabled_endpoints.is_empty() {
            let _ = writeln!(out, "  disabled: {}", self.disabled_endpoints.join(", "));
        }
        if self.open_circuits.is_empty() {
            out.push_str("  circuit open: none\n");
        } else {
            let _ = writeln!(out, "  circuit open: {}", self.open_circuits.join(", "));
        }
        if self.worst_endpoints.is_empty() {
            out.push_str("worst endpoints (last hour): none dead-lettered or tripped a circuit\n");
        } else {
            out.push_str("worst endpoints (last hour):\n");
            let rows = self.worst_endpoints.iter().map(|w| {
                [
                    w.endpoint_id.clone(),
                    w.dead_letters.to_string(),
                    w.circuit_opens.to_string(),
                    if w.circuit_open { "open" } else { "closed" }.to_owned(),
                ]
            });
            indent(
                &mut out,
                &output::table(
                    &["ENDPOINT", "DEAD LETTERS", "CIRCUIT OPENINGS", "CIRCUIT"],
                    rows,
                ),
            );
        }
        out
    }
}

/// Appends `text` with every line indented by two spaces.
fn indent(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

/// `0-5, 8, 10-11` for partitions 0,1,2,3,4,5,8,10,11 (sorted first).
fn partition_ranges(partitions: &[i32]) -> String {
    let mut sorted = partitions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if end > start {
            format!("{start}-{end}")
        } else {
            start.to_string()
        });
        i += 1;
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
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
    use crate::client::OutputFormat;
    use herald_proto::v1::{self as pb, DispatcherStatus, PartitionStatus};

    fn partition(partition: i32, events_lag: i64, retry_backlog: i64) -> PartitionStatus {
        PartitionStatus {
            partition,
            events_lag,
            retry_backlog,
            events_end: 100 + events_lag,
            events_committed: 100,
            ..Default::default()
        }
    }

    fn status() -> ClusterStatus {
        ClusterStatus {
            group: "herald-dispatch".into(),
            group_state: "Stable".into(),
            dispatchers: vec![
                DispatcherStatus {
                    client_id: "herald-dispatch-a".into(),
                    host: "/10.0.0.1".into(),
                    partitions: vec![0, 1],
                    ..Default::default()
                },
                DispatcherStatus {
                    client_id: "herald-dispatch-b".into(),
                    host: "/10.0.0.2".into(),
                    partitions: vec![2],
                    ..Default::default()
                },
            ],
            partitions: vec![
                partition(0, 3, 2),
                partition(1, 4, 0),
                partition(2, 0, 5),
                partition(3, 6, 0),
            ],
            publish_rate: 12.5,
            endpoints: 3,
            disabled_count: 1,
            disabled_endpoints: vec!["gone".into()],
            open_circuits: vec!["flaky".into()],
            worst_endpoints: vec![pb::EndpointTrouble {
                endpoint_id: "flaky".into(),
                dead_letters: 7,
                circuit_opens: 2,
                circuit_open: true,
            }],
            broker_gaps: vec![],
        }
    }

    #[test]
    fn text_summary_names_what_matters() {
        let text = StatusView::from(status()).to_text();
        assert_eq!(
            text,
            "broker: all features Herald uses are supported\n\
             dispatchers (2 in group herald-dispatch, Stable):\n\
             \x20 NODE               HOST       PARTITIONS  LAG  RETRY BACKLOG\n\
             \x20 herald-dispatch-a  /10.0.0.1  0-1         7    2\n\
             \x20 herald-dispatch-b  /10.0.0.2  2           0    5\n\
             \x20 (no owner)         -          3           6    0\n\
             publish rate: 12.5 events/s\n\
             lag: 13 events behind, 7 waiting in the retry topic\n\
             \x20 PARTITION  OWNER              LAG  RETRY BACKLOG  END  COMMITTED\n\
             \x20 0          herald-dispatch-a  3    2              103  100\n\
             \x20 1          herald-dispatch-a  4    0              104  100\n\
             \x20 2          herald-dispatch-b  0    5              100  100\n\
             \x20 3          (no owner)         6    0              106  100\n\
             endpoints: 3 (1 disabled)\n\
             \x20 disabled: gone\n\
             \x20 circuit open: flaky\n\
             worst endpoints (last hour):\n\
             \x20 ENDPOINT  DEAD LETTERS  CIRCUIT OPENINGS  CIRCUIT\n\
             \x20 flaky     7             2                 open\n"
        );
        assert!(parse_sample("20s").is_err());
        assert_eq!(parse_sample("500ms").unwrap(), 500);
    }

    #[test]
    fn broker_gaps_are_listed_with_their_effect() {
        let mut s = status();
        s.broker_gaps = vec![pb::BrokerGap {
            feature: "offset commit metadata".into(),
            effect: "a new partition owner re-sends what the previous owner finished above \
                     its committed offset"
                .into(),
        }];
        let view = StatusView::from(s);
        let text = view.to_text();
        assert!(
            text.starts_with(
                "broker gaps:\n  offset commit metadata: a new partition owner re-sends"
            ),
            "{text}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&output::render(OutputFormat::Json, &view).unwrap()).unwrap();
        assert_eq!(json["broker_gaps"][0]["feature"], "offset commit metadata");
        assert_eq!(json["dispatchers"][0]["events_lag"], 7);
        assert_eq!(json["dispatchers"][1]["retry_backlog"], 5);
        assert_eq!(json["unassigned_partitions"], serde_json::json!([3]));
        assert_eq!(json["worst_endpoints"][0]["dead_letters"], 7);
        // Field order is the struct's: scripts and eyes find `group` first.
        let line = output::render(OutputFormat::Json, &view).unwrap();
        assert!(line.starts_with("{\"group\":"), "{line}");
    }

    #[test]
    fn a_broker_that_does_not_describe_groups_claims_no_ownership() {
        let mut s = status();
        s.group_state = "unknown (the broker does not describe groups)".into();
        s.dispatchers.clear();
        s.worst_endpoints.clear();
        s.open_circuits.clear();
        let view = StatusView::from(s);
        assert!(view.unassigned_partitions.is_empty());
        let text = view.to_text();
        assert!(!text.contains("no dispatcher is running"), "{text}");
        assert!(!text.contains("NODE"), "{text}");
        assert!(text.contains("\n  3          -      6"), "{text}");
        assert!(text.contains("  circuit open: none\n"), "{text}");
        assert!(text
            .ends_with("worst endpoints (last hour): none dead-lettered or tripped a circuit\n"));
    }

    #[test]
    fn an_empty_group_says_nothing_is_delivered() {
        let mut s = status();
        s.dispatchers.clear();
        let text = StatusView::from(s).to_text();
        assert!(
            text.contains("  none: no dispatcher is running, nothing is delivered\n"),
            "{text}"
        );
        assert!(text.contains("  (no owner)  -     0-3"), "{text}");
    }

    #[test]
    fn partition_ranges_compress_runs() {
        assert_eq!(partition_ranges(&[]), "-");
        assert_eq!(partition_ranges(&[3]), "3");
        assert_eq!(
            partition_ranges(&[5, 0, 1, 2, 8, 10, 11, 2]),
            "0-2, 5, 8, 10-11"
        );
    }
}
