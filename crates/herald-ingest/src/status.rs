//! `ClusterService.GetStatus`: the state of the cluster as Kafka sees it —
//! the dispatchers' consumer group and who owns which partition, lag of the
//! events and retry topics, publish throughput (end offsets sampled twice),
//! endpoints that are disabled (registry), and from one scan of the last
//! hour of operational events the endpoints with an open circuit and those
//! with the most dead letters and circuit openings. Which Kafka features the
//! broker lacks is the capability probe's (`herald_kafka::capabilities`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use herald_core::config::KafkaConfig;
use herald_core::time::now_ms;
use herald_kafka::Capabilities;
use herald_proto::v1 as pb;
use herald_proto::v1::cluster_service_server::ClusterService;
use herald_registry::Registry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tonic::{Request, Response, Status};

/// How many ids of disabled or failing endpoints a status lists.
const MAX_LISTED: usize = 50;

/// How many of the worst endpoints a status lists.
const MAX_WORST: usize = 10;

/// The `ClusterService` implementation.
#[derive(Clone)]
pub struct ClusterApi {
    kafka: std::sync::Arc<KafkaConfig>,
    node_id: std::sync::Arc<str>,
    registry: Registry,
    /// Bounds the ops-topic scan of `GetStatus`.
    gate: crate::scan_gate::ScanGate,
    /// What the node's probe found the broker lacks (unset while it runs).
    broker: std::sync::Arc<std::sync::OnceLock<Capabilities>>,
}

impl ClusterApi {
    /// Reports on the cluster behind `kafka`.
    pub fn new(kafka: &KafkaConfig, node_id: &str, registry: Registry) -> Self {
        Self {
            kafka: std::sync::Arc::new(kafka.clone()),
            node_id: node_id.into(),
            registry,
            gate: Default::default(),
            broker: Default::default(),
        }
    }

    /// Reports the gaps the node's broker capability probe finds (until it
    /// has finished, every feature is listed as unknown).
    pub fn with_broker_features(
        mut self,
        found: std::sync::Arc<std::sync::OnceLock<Capabilities>>,
    ) -> Self {
        self.broker = found;
        self
    }

    /// Shares `gate` (the node's bound on topic scans) with the other scanning RPCs.
    pub fn with_scan_gate(mut self, gate: crate::scan_gate::ScanGate) -> Self {
        self.gate = gate;
        self
    }
}

/// Partitions of `topic` in a consumer-protocol member assignment
/// (version i16, topics [name, partitions [i32]], user data).
pub fn assigned_partitions(assignment: &[u8], topic: &str) -> Vec<i32> {
    fn i16_at(b: &[u8], at: usize) -> Option<i16> {
        Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }
    fn i32_at(b: &[u8], at: usize) -> Option<i32> {
        Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }
    let parse = || -> Option<Vec<i32>> {
        let mut at = 2; // version
        let topics = i32_at(assignment, at)?;
        at += 4;
        let mut found = Vec::new();
        for _ in 0..topics.max(0) {
            let len = i16_at(assignment, at)?.max(0) as usize;
            at += 2;
            let name = std::str::from_utf8(assignment.get(at..at + len)?).ok()?;
            at += len;
            let n = i32_at(assignment, at)?;
            at += 4;
            for _ in 0..n.max(0) {
                let p = i32_at(assignment, at)?;
                at += 4;
                if name == topic {
                    found.push(p);
                }
            }
        }
        Some(found)
    };
    let mut ps = parse().unwrap_or_default();
    ps.sort_unstable();
    ps
}

fn ends(
    c: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    partitions
        .iter()
        .map(|&p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .map(|(_, h)| (p, h))
        })
        .collect()
}

fn status(
    kafka: &KafkaConfig,
    node_id: &str,
    sample: Duration,
    stop: &AtomicBool,
) -> Result<pb::ClusterStatus, KafkaError> {
    let client = format!("herald-status-{node_id}");
    // Reads the dispatchers' committed offsets: same group id, never joins it.
    let consumer: BaseConsumer = herald_kafka::base_config(kafka)
        .set("group.id", &kafka.consumer_group)
        .set("client.id", &client)
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(&kafka.events_topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = md
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    let before = ends(&consumer, &kafka.events_topic, &partitions)?;
    let started = std::time::Instant::now();
    std::thread::sleep(sample);
    let events_end = ends(&consumer, &kafka.events_topic, &partitions)?;
    let elapsed = started.elapsed().as_secs_f64().max(0.001);
    let written: i64 = events_end
        .iter()
        .map(|(p, h)| h - before.get(p).copied().unwrap_or(*h))
        .sum();
    let retry_end = ends(&consumer, &kafka.retry_topic, &partitions)?;

    let mut query = TopicPartitionList::new();
    for &p in &partitions {
        query.add_partition(&kafka.events_topic, p);
        query.add_partition(&kafka.retry_topic, p);
    }
    let committed = consumer.committed_offsets(query, Duration::from_secs(10))?;
    let committed_of = |topic: &str, p: i32| -> i64 {
        match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        }
    };
    let partition_status = partitions
        .iter()
        .map(|&p| {
            let (ee, ec) = (events_end[&p], committed_of(&kafka.events_topic, p));
            let (re, rc) = (
                retry_end.get(&p).copied().unwrap_or(0),
                committed_of(&kafka.retry_topic, p),
            );
            pb::PartitionStatus {
                partition: p,
                events_end: ee,
                events_committed: ec,
                events_lag: (ee - ec).max(0),
                retry_end: re,
                retry_committed: rc,
                retry_backlog: (re - rc).max(0),
            }
        })
        .collect();

    // Some Kafka-protocol brokers (librdkafka's mock cluster among them) do
    // not describe groups: report that instead of failing the whole status.
    let groups =
        match consumer.fetch_group_list(Some(&kafka.consumer_group), Duration::from_secs(10)) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::info!(error = %e, "the broker does not describe consumer groups");
                None
            }
        };
    let (group_state, dispatchers) = groups
        .as_ref()
        .and_then(|g| g.groups().first())
        .map(|g| {
            let members = g
                .members()
                .iter()
                .map(|m| pb::DispatcherStatus {
                    member_id: m.id().to_string(),
                    client_id: m.client_id().to_string(),
                    host: m.client_host().to_string(),
                    partitions: m
                        .assignment()
                        .map(|a| assigned_partitions(a, &kafka.events_topic))
                        .unwrap_or_default(),
                })
                .collect();
            (g.state().to_string(), members)
        })
        .unwrap_or_else(|| {
            (
                "unknown (the broker does not describe groups)".to_string(),
                Vec::new(),
            )
        });

    let (open_circuits, worst_endpoints) = endpoint_trouble(kafka, node_id, stop)?;
    Ok(pb::ClusterStatus {
        group: kafka.consumer_group.clone(),
        group_state,
        dispatchers,
        partitions: partition_status,
        publish_rate: written as f64 / elapsed,
        open_circuits,
        worst_endpoints,
        // Filled by the service from the node's capability probe.
        broker_gaps: Vec::new(),
        ..Default::default()
    })
}

/// What the last hour of operational events says about endpoints, tallied
/// as the ops topic is read (pure: fed one event at a time, no I/O).
#[derive(Debug, Default)]
struct OpsTally {
    /// Per endpoint: dead letters, circuit openings, and whether its latest
    /// circuit event opened it.
    endpoints: HashMap<String, Trouble>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Trouble {
    dead_letters: u32,
    circuit_opens: u32,
    circuit_open: bool,
}

impl OpsTally {
    /// Counts one operational event of `kind` about `endpoint`; events are
    /// fed in topic order within an endpoint (the ops topic is keyed by it).
    fn observe(&mut self, kind: &str, endpoint: &str) {
        use herald_registry::ops::kind::*;
        let update: fn(&mut Trouble) = match kind {
            EVENT_EXHAUSTED => |t| t.dead_letters = t.dead_letters.saturating_add(1),
            CIRCUIT_OPENED => |t| {
                t.circuit_opens = t.circuit_opens.saturating_add(1);
                t.circuit_open = true;
            },
            CIRCUIT_CLOSED => |t| t.circuit_open = false,
            _ => return,
        };
        update(self.endpoints.entry(endpoint.to_owned()).or_default());
    }

    /// Endpoints whose circuit is open (sorted, at most [`MAX_LISTED`]), and
    /// the worst endpoints (at most [`MAX_WORST`]): most dead letters, then
    /// most circuit openings, then an open circuit, then by id.
    fn finish(self) -> (Vec<String>, Vec<pb::EndpointTrouble>) {
        let mut open: Vec<String> = self
            .endpoints
            .iter()
            .filter(|(_, t)| t.circuit_open)
            .map(|(e, _)| e.clone())
            .collect();
        open.sort();
        open.truncate(MAX_LISTED);
        let mut worst: Vec<(String, Trouble)> = self
            .endpoints
            .into_iter()
            .filter(|(_, t)| t.dead_letters > 0 || t.circuit_opens > 0 || t.circuit_open)
            .collect();
        worst.sort_by(|(a_id, a), (b_id, b)| {
            (b.dead_letters, b.circuit_opens, b.circuit_open)
                .cmp(&(a.dead_letters, a.circuit_opens, a.circuit_open))
                .then_with(|| a_id.cmp(b_id))
        });
        worst.truncate(MAX_WORST);
        let worst = worst
            .into_iter()
            .map(|(endpoint_id, t)| pb::EndpointTrouble {
                endpoint_id,
                dead_letters: t.dead_letters,
                circuit_opens: t.circuit_opens,
                circuit_open: t.circuit_open,
            })
            .collect();
        (open, worst)
    }
}

/// Open circuits and the worst endpoints, from one scan of the last hour of
/// the operations topic.
fn endpoint_trouble(
    kafka: &KafkaConfig,
    node_id: &str,
    stop: &AtomicBool,
) -> Result<(Vec<String>, Vec<pb::EndpointTrouble>), KafkaError> {
    let mut tally = OpsTally::default();
    let client = format!("herald-status-ops-{node_id}");
    herald_kafka::scan::scan_topic_until(
        kafka,
        &client,
        &kafka.ops_topic,
        now_ms() - 3_600_000,
        stop,
        |msg| {
            let Some(v) = msg
                .payload()
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
            else {
                metrics::counter!(herald_telemetry::names::RECORDS_UNDECODABLE, "topic" => "ops")
                    .increment(1);
                return;
            };
            if let (Some(kind), Some(ep)) = (v["type"].as_str(), v["endpoint_id"].as_str()) {
                tally.observe(kind, ep);
            }
        },
    )?;
    Ok(tally.finish())
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        let sample_ms = match request.into_inner().sample_ms {
            0 => 1000,
            n if n > 10_000 => {
                return Err(Status::invalid_argument("sample_ms: at most 10000"));
            }
            n => n,
        };
        let (kafka, node) = (self.kafka.clone(), self.node_id.clone());
        let mut s = self
            .gate
            .run("GetStatus", move |stop| {
                status(
                    &kafka,
                    &node,
                    Duration::from_millis(u64::from(sample_ms)),
                    stop,
                )
                .map_err(|e| {
                    Status::unavailable(format!("cannot read the cluster state from Kafka: {e}"))
                })
            })
            .await?;
        let unprobed = Capabilities::default();
        s.broker_gaps = self
            .broker
            .get()
            .unwrap_or(&unprobed)
            .gaps()
            .into_iter()
            .map(|g| pb::BrokerGap {
                feature: format!("{} ({})", g.feature, g.observed),
                effect: g.effect.to_string(),
            })
            .collect();
        let all = self.registry.list(None, usize::MAX);
        s.endpoints = all.len() as u32;
        let disabled: Vec<String> = all
            .iter()
            .filter(|e| !e.enabled)
            .map(|e| e.id.clone())
            .collect();
        s.disabled_count = disabled.len() as u32;
        s.disabled_endpoints = disabled.into_iter().take(MAX_LISTED).collect();
        Ok(Response::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = vec![0, 1];
        b.extend((topics.len() as i32).to_be_bytes());
        for (name, ps) in topics {
            b.extend((name.len() as i16).to_be_bytes());
            b.extend(name.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend(0i32.to_be_bytes()); // user data
        b
    }

    #[test]
    fn ops_tally_ranks_the_worst_endpoints_and_tracks_open_circuits() {
        let mut t = OpsTally::default();
        for (kind, ep) in [
            ("event.exhausted", "a"),
            ("circuit.opened", "b"),
            ("circuit.closed", "b"),
            ("circuit.opened", "b"),
            ("event.exhausted", "c"),
            ("event.exhausted", "c"),
            ("circuit.opened", "c"),
            ("circuit.closed", "c"),
            ("endpoint.disabled", "d"),
            ("endpoint.enabled", "d"),
            ("something.new", "e"),
        ] {
            t.observe(kind, ep);
        }
        let (open, worst) = t.finish();
        assert_eq!(open, ["b"]);
        let row = |id: &str, dead_letters, circuit_opens, circuit_open| pb::EndpointTrouble {
            endpoint_id: id.into(),
            dead_letters,
            circuit_opens,
            circuit_open,
        };
        assert_eq!(
            worst,
            [
                row("c", 2, 1, false),
                row("a", 1, 0, false),
                row("b", 0, 2, true)
            ]
        );
    }

    #[test]
    fn ops_tally_lists_at_most_the_caps() {
        let mut t = OpsTally::default();
        for i in 0..(MAX_LISTED + 5) {
            t.observe("circuit.opened", &format!("ep-{i:03}"));
        }
        let (open, worst) = t.finish();
        assert_eq!(open.len(), MAX_LISTED);
        assert_eq!(open[0], "ep-000");
        assert_eq!(worst.len(), MAX_WORST);
    }

    #[test]
    fn parses_member_assignments() {
        let a = assignment(&[("herald.retry", &[1, 0]), ("herald.events", &[3, 1])]);
        assert_eq!(assigned_partitions(&a, "herald.events"), vec![1, 3]);
        assert_eq!(assigned_partitions(&a, "herald.retry"), vec![0, 1]);
        assert!(assigned_partitions(&a, "other").is_empty());
        assert!(
            assigned_partitions(&a[..5], "herald.events").is_empty(),
            "truncated input yields nothing"
        );
        assert!(assigned_partitions(&[], "herald.events").is_empty());
    }
}
