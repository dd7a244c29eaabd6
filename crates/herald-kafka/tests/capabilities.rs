//! The capability probe against the embedded mock broker, which keeps
//! committed offset metadata like Kafka does but does not describe groups.
//! (The standalone tansu tier is covered by `tests/fleet.rs`, which checks
//! that `herald status` lists what the node's probe found.)

use std::time::Duration;

use herald_core::config::KafkaConfig;
use herald_kafka::capabilities::{probe_blocking, Feature, Support};
use herald_kafka::DevBroker;

#[test]
fn the_mock_broker_keeps_commit_metadata() {
    let mut cfg = KafkaConfig::default();
    let broker = DevBroker::start(&cfg).expect("mock broker");
    cfg.brokers = broker.bootstrap_servers().to_string();
    let caps = probe_blocking(&cfg, &cfg.events_topic.clone(), Duration::from_secs(30));
    assert_eq!(
        caps.support(Feature::CommitMetadata),
        Support::Yes,
        "{caps:?}"
    );
    let gaps: Vec<&str> = caps.gaps().iter().map(|g| g.feature).collect();
    assert_eq!(gaps, ["describe_groups"], "{caps:?}");

    // A second probe (a restarted node) finds the same, not the first
    // probe's commit.
    let again = probe_blocking(&cfg, &cfg.events_topic.clone(), Duration::from_secs(30));
    assert_eq!(again.support(Feature::CommitMetadata), Support::Yes);
}

#[test]
fn an_unreachable_broker_is_unknown_not_supported() {
    // Nothing listens on port 1 of loopback.
    let cfg = KafkaConfig {
        brokers: "127.0.0.1:1".into(),
        ..KafkaConfig::default()
    };
    let caps = probe_blocking(&cfg, "herald.events", Duration::from_secs(2));
    match caps.support(Feature::CommitMetadata) {
        Support::Unknown(why) => assert!(!why.is_empty()),
        other => panic!("expected unknown, got {other:?}"),
    }
    assert_eq!(caps.gaps().len(), 2);
}
