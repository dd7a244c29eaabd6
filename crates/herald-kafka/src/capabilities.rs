//! What the connected broker supports of the Kafka features Herald's
//! guarantees lean on, found by asking it, and what Herald does without them.
//!
//! Some Kafka-protocol brokers implement less than Apache Kafka (tansu 0.6
//! stores committed offsets but returns them without their metadata). Herald
//! never needs such a feature to keep an event: each one only narrows the
//! re-sends after a rebalance or crash. A node probes once at start, logs
//! every gap as a warning naming its effect, and exports the result as the
//! gauge `herald_broker_feature_supported{feature}`; `herald status` lists
//! the gaps.
//!
//! The probe works on its own consumer group (`<group>.capability-probe`), so
//! it never touches the dispatchers' committed offsets.

use std::time::Duration;

use herald_core::config::KafkaConfig;
use herald_telemetry::names;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::clients::consumer_config;

/// A feature the probe checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// `OffsetFetch` returns the metadata string committed with an offset.
    CommitMetadata,
    /// `DescribeGroups` answers with the group's state and members.
    DescribeGroups,
}

impl Feature {
    /// Every feature the probe checks.
    pub const ALL: [Feature; 2] = [Feature::CommitMetadata, Feature::DescribeGroups];

    /// The metric label and log name.
    pub fn name(self) -> &'static str {
        match self {
            Feature::CommitMetadata => "offset_commit_metadata",
            Feature::DescribeGroups => "describe_groups",
        }
    }

    /// What Herald does without it.
    pub fn effect_when_missing(self) -> &'static str {
        match self {
            Feature::CommitMetadata => {
                "a new partition owner cannot skip what the previous owner finished above its \
                 committed offset, so a rebalance or crash re-sends those events (duplicates \
                 with the same webhook-id, never loss)"
            }
            Feature::DescribeGroups => {
                "herald status cannot show the consumer group's state, its members or which \
                 partitions each dispatcher owns (delivery is not affected)"
            }
        }
    }
}

/// What the probe found out about one feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// The broker does what Kafka does.
    Yes,
    /// The broker answered, but not as Kafka would.
    No(String),
    /// The probe could not tell (e.g. the broker did not answer in time).
    Unknown(String),
}

/// A feature the broker lacks (or may lack) and what that costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The feature's name ([`Feature::name`]).
    pub feature: &'static str,
    /// What the probe saw.
    pub observed: String,
    /// What Herald does without it.
    pub effect: &'static str,
}

/// The probe's findings, per feature.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    found: Vec<(Feature, Support)>,
}

impl Capabilities {
    /// Findings from explicit values (tests, and nodes that skip the probe).
    pub fn from_findings(found: Vec<(Feature, Support)>) -> Self {
        Self { found }
    }

    /// What was found for `feature` (`Unknown` when it was not probed).
    pub fn support(&self, feature: Feature) -> Support {
        self.found
            .iter()
            .find(|(f, _)| *f == feature)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| Support::Unknown("not probed".into()))
    }

    /// Every feature not known to be supported, with its effect.
    pub fn gaps(&self) -> Vec<Gap> {
        Feature::ALL
            .iter()
            .filter_map(|&f| match self.support(f) {
                Support::Yes => None,
                Support::No(seen) => Some(Gap {
                    feature: f.name(),
                    observed: seen,
                    effect: f.effect_when_missing(),
                }),
                Support::Unknown(why) => Some(Gap {
                    feature: f.name(),
                    observed: format!("unknown: {why}"),
                    effect: f.effect_when_missing(),
                }),
            })
            .collect()
    }

    /// Logs each gap as a warning and sets
    /// `herald_broker_feature_supported{feature}` (1 supported, 0 missing,
    /// -1 unknown).
    pub fn report(&self) {
        for f in Feature::ALL {
            let value = match self.support(f) {
                Support::Yes => 1.0,
                Support::No(_) => 0.0,
                Support::Unknown(_) => -1.0,
            };
            metrics::gauge!(names::BROKER_FEATURE_SUPPORTED, "feature" => f.name()).set(value);
        }
        let gaps = self.gaps();
        tracing::info!(
            target: "herald::broker",
            gaps = gaps.len(),
            "broker capability probe finished"
        );
        for gap in gaps {
            tracing::warn!(
                feature = gap.feature,
                observed = %gap.observed,
                effect = gap.effect,
                "the Kafka broker lacks a feature Herald uses; Herald degrades to more re-sends, never to loss"
            );
        }
    }
}

/// How every probe's metadata starts.
const TOKEN_PREFIX: &str = "herald-probe:";

/// The metadata the probe commits: unique per call, so an old probe's
/// commit is never mistaken for this one's.
fn probe_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{TOKEN_PREFIX}{}:{nanos}", std::process::id())
}

/// Asks the broker, on partition 0 of `topic` (which must exist), under the
/// group `<kafka.consumer_group>.capability-probe`. Blocking: at most a few
/// round trips, each bounded by `timeout`.
pub fn probe_blocking(cfg: &KafkaConfig, topic: &str, timeout: Duration) -> Capabilities {
    let group = format!("{}.capability-probe", cfg.consumer_group);
    let token = probe_token();
    let metadata = match commit_metadata_round_trip(cfg, &group, topic, &token, timeout) {
        // Another node probing at the same moment may have committed after
        // this one: its token coming back proves the round trip as well.
        Ok(Some(m)) if m == token || m.starts_with(TOKEN_PREFIX) => Support::Yes,
        Ok(returned) => Support::No(match returned {
            Some(m) if m.is_empty() => "committed metadata came back empty".into(),
            Some(m) => format!("committed metadata came back as {m:?}"),
            None => "the committed offset was not returned".into(),
        }),
        Err(e) => Support::Unknown(e),
    };
    let describe = describe_group(cfg, &group, timeout);
    Capabilities::from_findings(vec![
        (Feature::CommitMetadata, metadata),
        (Feature::DescribeGroups, describe),
    ])
}

/// Kafka describes any group id, even one with only committed offsets
/// (state `Empty`) or none at all (`Dead`); an error or an answer without a
/// state means the broker does not implement `DescribeGroups`.
fn describe_group(cfg: &KafkaConfig, group: &str, timeout: Duration) -> Support {
    let client_id = format!("herald-probe-{}", std::process::id());
    let consumer: BaseConsumer = match consumer_config(cfg, Some(group), &client_id).create() {
        Ok(c) => c,
        Err(e) => return Support::Unknown(format!("cannot create the probe consumer: {e}")),
    };
    match consumer.fetch_group_list(Some(group), timeout) {
        Ok(list) => match list.groups().iter().find(|g| g.name() == group) {
            Some(g) if !g.state().is_empty() => Support::Yes,
            Some(_) => Support::No("the group was described without a state".into()),
            None => Support::No("the group was not in the answer".into()),
        },
        Err(e) => Support::No(format!("DescribeGroups failed: {e}")),
    }
}

/// Commits offset 0 with `token` as metadata and reads it back; returns the
/// metadata read (None when no offset came back).
fn commit_metadata_round_trip(
    cfg: &KafkaConfig,
    group: &str,
    topic: &str,
    token: &str,
    timeout: Duration,
) -> Result<Option<String>, String> {
    let client_id = format!("herald-probe-{}", std::process::id());
    let consumer: BaseConsumer = consumer_config(cfg, Some(group), &client_id)
        .create()
        .map_err(|e| format!("cannot create the probe consumer: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(0))
        .map_err(|e| format!("probe offset: {e}"))?;
    if let Some(mut e) = tpl.find_partition(topic, 0) {
        e.set_metadata(token);
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| format!("the probe commit failed: {e}"))?;
    // Read back through a second client, as a new partition owner would,
    // so nothing the first one remembers locally can stand in for the
    // broker's answer.
    let reader: BaseConsumer = consumer_config(cfg, Some(group), &format!("{client_id}-reader"))
        .create()
        .map_err(|e| format!("cannot create the probe reader: {e}"))?;
    let mut query = TopicPartitionList::new();
    query.add_partition(topic, 0);
    let read = reader
        .committed_offsets(query, timeout)
        .map_err(|e| format!("reading the probe commit back failed: {e}"))?;
    Ok(read
        .find_partition(topic, 0)
        .filter(|e| matches!(e.offset(), Offset::Offset(_)))
        .map(|e| e.metadata().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_name_what_is_missing_or_unknown_and_nothing_else() {
        let all_there = Capabilities::from_findings(vec![
            (Feature::CommitMetadata, Support::Yes),
            (Feature::DescribeGroups, Support::Yes),
        ]);
        assert!(all_there.gaps().is_empty());

        let missing = Capabilities::from_findings(vec![
            (
                Feature::CommitMetadata,
                Support::No("committed metadata came back empty".into()),
            ),
            (Feature::DescribeGroups, Support::Yes),
        ]);
        let gaps = missing.gaps();
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].feature, "offset_commit_metadata");
        assert!(gaps[0].observed.contains("empty"));
        assert!(gaps[0].effect.contains("never loss"));

        // Not probed counts as unknown: a gap, so nobody assumes support.
        let unprobed = Capabilities::default();
        assert_eq!(unprobed.gaps().len(), Feature::ALL.len());
        assert!(unprobed.gaps()[0].observed.starts_with("unknown"));
    }
}
