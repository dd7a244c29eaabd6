//! Configuration fixtures for tests against the in-process broker.
//!
//! [`test_config`] is a [`Config`] tuned for fast, deterministic tests
//! (loopback listeners on port 0, short commit interval and retry delays,
//! a 6 s session timeout so group joins do not wait 45 s);
//! [`start_broker`] starts a [`DevBroker`] with that config's topics and
//! points the config at it. Node start-up lives with the tests in `tests/`
//! (this crate must not depend on the `herald` crate).

use std::sync::atomic::{AtomicU64, Ordering};

use herald_core::Config;
use herald_kafka::DevBroker;

/// A configuration for one test node; `kafka.brokers` still has to be set
/// (see [`start_broker`]).
pub fn test_config() -> Config {
    let mut cfg = Config::default();
    cfg.node.id = unique("it-node");
    cfg.kafka.replication_factor = 1;
    cfg.kafka.session_timeout_ms = 6000;
    cfg.kafka.events_partitions = 4;
    cfg.kafka.consumer_group = unique("it-dispatch");
    cfg.grpc.listen = "127.0.0.1:0".parse().expect("valid address");
    cfg.http.listen = "127.0.0.1:0".parse().expect("valid address");
    cfg.dispatch.commit_interval_ms = 100;
    // Tests call the API without tokens; tests/auth.rs covers authentication.
    cfg.auth.disabled = true;
    // Every node of a test process (and its child processes) shares a key.
    cfg.secrets.keys = vec![herald_core::config::MasterKeyConfig {
        id: "test".into(),
        file: Some(master_key_file()),
        env: None,
    }];
    // Test receivers listen on loopback, which production refuses.
    cfg.delivery.allow_cidrs = vec!["127.0.0.0/8".into(), "::1/128".into()];
    // Short retries, all in memory: tests that need the retry topic set their own.
    cfg.retry.schedule = [50, 100, 200, 400, 500, 500, 500, 500, 500, 500]
        .into_iter()
        .map(std::time::Duration::from_millis)
        .collect();
    cfg.retry.in_memory_max = std::time::Duration::from_secs(1);
    // A circuit that opens in a test closes again quickly.
    cfg.endpoint_health.cool_down = std::time::Duration::from_millis(200);
    cfg
}

/// A master key file shared by every node this test process starts (in
/// process or as child processes): `$TMPDIR/herald-test-master-<pid>.key`.
pub fn master_key_file() -> std::path::PathBuf {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("herald-test-master-{}.key", std::process::id()));
        std::fs::write(&path, herald_registry::keys::generate_key())
            .expect("write the test master key");
        path
    })
    .clone()
}

/// Starts an in-memory broker with `cfg`'s topics and sets `kafka.brokers`.
///
/// The broker is not `Send`: keep it in the test function's body.
pub fn start_broker(cfg: &mut Config) -> Result<DevBroker, rdkafka::error::KafkaError> {
    let broker = DevBroker::start(&cfg.kafka)?;
    cfg.kafka.brokers = broker.bootstrap_servers().to_string();
    Ok(broker)
}

/// `prefix-<pid>-<n>`: unique within this machine for the process's life.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The current time as unix seconds (for signature verification).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_config_is_valid_once_brokers_are_set() {
        let mut cfg = test_config();
        cfg.kafka.brokers = "127.0.0.1:9".into();
        cfg.validate().unwrap();
        assert_ne!(test_config().kafka.consumer_group, cfg.kafka.consumer_group);
    }

    #[test]
    fn start_broker_points_the_config_at_it() {
        let mut cfg = test_config();
        let broker = start_broker(&mut cfg).unwrap();
        assert_eq!(cfg.kafka.brokers, broker.bootstrap_servers());
        assert!(cfg.kafka.brokers.starts_with("127.0.0.1:") || cfg.kafka.brokers.contains(':'));
    }
}
