//! Server flags and how they become a [`Config`]: built-in defaults, then
//! the mode's defaults (`herald dev`), then `--config FILE`, then
//! `HERALD_*` environment variables, then flags.

use std::path::PathBuf;

use anyhow::Context as _;
use herald_core::config::{ConfigLoader, Source};
use herald_core::Config;
use toml::Value;

/// Flags shared by `herald serve|ingest|dispatch|dev`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServerFlags {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers (kafka.brokers).
    #[arg(long, value_name = "HOST:PORT,...")]
    pub brokers: Option<String>,
    /// gRPC listen address (grpc.listen).
    #[arg(long, value_name = "ADDR")]
    pub grpc_listen: Option<String>,
    /// Metrics/health listen address (http.listen).
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// This node's name (node.id).
    #[arg(long, value_name = "NAME")]
    pub node_id: Option<String>,
    /// Log format: text or json (log.format).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. info or herald_dispatch=debug (log.level).
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// Builds the configuration; `mode_defaults` sit between the built-in
/// defaults and the file.
pub fn load(flags: &ServerFlags, mode_defaults: &[(&str, Value)]) -> anyhow::Result<Config> {
    let mut loader = ConfigLoader::new();
    for (k, v) in mode_defaults {
        loader.set(k, v.clone(), Source::Default);
    }
    if let Some(path) = &flags.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        loader.file(&path.display().to_string(), &text)?;
    }
    loader.env(std::env::vars());
    let pairs = [
        ("kafka.brokers", "--brokers", &flags.brokers),
        ("grpc.listen", "--grpc-listen", &flags.grpc_listen),
        ("http.listen", "--http-listen", &flags.http_listen),
        ("node.id", "--node-id", &flags.node_id),
        ("log.format", "--log-format", &flags.log_format),
        ("log.level", "--log-level", &flags.log_level),
    ];
    for (key, flag, value) in pairs {
        if let Some(v) = value {
            loader.set(key, Value::String(v.clone()), Source::Flag(flag.into()));
        }
    }
    Ok(loader.build()?)
}

/// Defaults of `herald dev`: loopback addresses, a small single-broker cluster.
pub fn dev_defaults() -> Vec<(&'static str, Value)> {
    vec![
        ("grpc.listen", Value::String("127.0.0.1:50051".into())),
        ("http.listen", Value::String("127.0.0.1:9464".into())),
        ("kafka.events_partitions", Value::Integer(4)),
        ("kafka.replication_factor", Value::Integer(1)),
        ("kafka.session_timeout_ms", Value::Integer(6000)),
        ("dispatch.commit_interval_ms", Value::Integer(200)),
        // The embedded broker answers a waiting fetch only when the wait
        // ends, so the wait is dev's latency floor (docs/benchmarks.md).
        ("dispatch.fetch_wait_max_ms", Value::Integer(2)),
        // ... so an idle dev node would fetch hundreds of times a second:
        // after a second without records, each tailing consumer fetches in
        // probes, every 2 s. Writes from dev's own ingest wake them at
        // once (herald_kafka::idle::nudge), so the probe interval only
        // delays records written by other processes (docs/benchmarks.md).
        ("kafka.idle_pause_after_ms", Value::Integer(1000)),
        ("kafka.idle_probe_interval_ms", Value::Integer(2000)),
        ("node.id", Value::String("dev".into())),
        // One developer on loopback: no API tokens (docs/security.md).
        ("auth.disabled", Value::Boolean(true)),
        // Secrets are still sealed in the topic, under a key that lives as
        // long as the process (and the embedded broker).
        ("secrets.ephemeral_key", Value::Boolean(true)),
        // Developers deliver to their own machine.
        (
            "delivery.allow_cidrs",
            Value::Array(vec![
                Value::String("127.0.0.0/8".into()),
                Value::String("::1/128".into()),
            ]),
        ),
    ]
}
