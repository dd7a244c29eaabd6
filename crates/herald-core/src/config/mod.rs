//! Typed, layered configuration: defaults → TOML file → `HERALD_*` environment
//! → command-line flags, validated once.
//!
//! Every key is documented in `docs/configuration.md`. Environment variables
//! are `HERALD_<SECTION>_<KEY>` in upper case (e.g. `HERALD_KAFKA_BROKERS`,
//! `HERALD_DISPATCH_COMMIT_INTERVAL_MS`); their values are read as TOML
//! scalars when they parse as one (numbers, booleans) and as strings otherwise.
//! Errors name the key and the layer it came from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// Where a configuration value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A built-in default (or a mode's default, e.g. `herald dev`).
    Default,
    /// The TOML file at this path.
    File(String),
    /// This environment variable.
    Env(String),
    /// This command-line flag.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "defaults"),
            Source::File(p) => write!(f, "file {p}"),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::Flag(v) => write!(f, "flag {v}"),
        }
    }
}

/// A configuration that could not be loaded; always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid TOML.
    #[error("config file {path}: {message}")]
    Parse {
        /// File path.
        path: String,
        /// Parser message (with line and column).
        message: String,
    },
    /// A key has the wrong type or is unknown.
    #[error("config key `{key}` (from {layer}): {message}")]
    Key {
        /// Dotted key, e.g. `kafka.brokers`.
        key: String,
        /// The layer that set it.
        layer: Source,
        /// What is wrong.
        message: String,
    },
    /// A value is well-typed but not acceptable.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted key.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

/// Herald's whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node.
    pub node: NodeConfig,
    /// The gRPC API (ingest).
    pub grpc: GrpcConfig,
    /// The HTTP server for `/metrics`, `/healthz`, `/readyz`.
    pub http: HttpConfig,
    /// Kafka connection and topics.
    pub kafka: KafkaConfig,
    /// The dispatcher.
    pub dispatch: DispatchConfig,
    /// Outgoing HTTP deliveries.
    pub delivery: DeliveryConfig,
    /// Retry schedule and dead-lettering.
    pub retry: RetryConfig,
    /// Circuit breaker, automatic disabling, operational events.
    pub endpoint_health: EndpointHealthConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[node]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Name of this node in logs, metrics and attempt records (default: host name).
    pub id: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        let id = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "herald".into());
        Self { id }
    }
}

/// `[grpc]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Listen address of the gRPC API.
    pub listen: SocketAddr,
    /// Largest accepted event payload, bytes.
    pub max_payload_bytes: usize,
    /// Most events in one `PublishBatch`.
    pub max_batch_size: usize,
    /// Idempotency keys remembered per ingest node (most recent first out).
    pub idempotency_cache_size: usize,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:50051".parse().expect("valid"),
            max_payload_bytes: 256 * 1024,
            max_batch_size: 1000,
            idempotency_cache_size: 100_000,
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address of the metrics/health server.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9464".parse().expect("valid"),
        }
    }
}

/// `[kafka]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Topic the events are written to, keyed by endpoint id.
    pub events_topic: String,
    /// Partitions of the events topic when Herald creates it.
    pub events_partitions: i32,
    /// Compacted topic holding the endpoint registry.
    pub endpoints_topic: String,
    /// Topic holding events waiting for a long retry (same partition count as events).
    pub retry_topic: String,
    /// Topic holding dead letters (same partition count as events).
    pub dlq_topic: String,
    /// Topic of operational events (circuit opened, endpoint disabled, ...).
    pub ops_topic: String,
    /// Topic of the attempt log (every delivery attempt, keyed by endpoint).
    pub attempts_topic: String,
    /// How long the attempt log keeps attempts (topic `retention.ms` when
    /// Herald creates it).
    #[serde(with = "crate::duration::serde_one")]
    pub attempts_retention: Duration,
    /// How long the retry topic keeps records (its `retention.ms` when
    /// Herald creates it). Must outlive `retry.max_age`: a record waiting
    /// for its next attempt must still be there when it is due.
    #[serde(with = "crate::duration::serde_one")]
    pub retry_retention: Duration,
    /// How long the dead-letter topic keeps dead letters (its
    /// `retention.ms` when Herald creates it): the window for replays.
    #[serde(with = "crate::duration::serde_one")]
    pub dlq_retention: Duration,
    /// Replication factor of topics Herald creates.
    pub replication_factor: i32,
    /// Consumer group of the dispatchers.
    pub consumer_group: String,
    /// Consumer group session timeout, milliseconds.
    pub session_timeout_ms: u32,
    /// Create missing topics at start.
    pub create_topics: bool,
    /// Extra librdkafka properties for every client (e.g. `security.protocol`).
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            events_topic: "herald.events".into(),
            events_partitions: 12,
            endpoints_topic: "herald.endpoints".into(),
            retry_topic: "herald.retry".into(),
            dlq_topic: "herald.dlq".into(),
            ops_topic: "herald.ops".into(),
            attempts_topic: "herald.attempts".into(),
            attempts_retention: Duration::from_secs(7 * 86_400),
            retry_retention: Duration::from_secs(14 * 86_400),
            dlq_retention: Duration::from_secs(30 * 86_400),
            replication_factor: 3,
            consumer_group: "herald-dispatch".into(),
            session_timeout_ms: 10_000,
            create_topics: true,
            client: BTreeMap::new(),
        }
    }
}

/// `[dispatch]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchConfig {
    /// How often finished offsets are committed, milliseconds.
    pub commit_interval_ms: u64,
    /// Deliveries at once for unordered endpoints that set no `max_in_flight`.
    pub default_max_in_flight: u32,
    /// Events held in memory per partition before its events are paused.
    pub max_buffered_per_partition: usize,
    /// Write every delivery attempt to the attempt log topic.
    pub attempt_log: bool,
    /// How many endpoints with the oldest undelivered events `/metrics`
    /// shows per node (`herald_endpoint_oldest_event_age_seconds`; 0 = none).
    pub worst_endpoints: usize,
    /// Requests per second for endpoints without their own limit (0 = unlimited).
    pub default_rate_limit_per_second: u32,
    /// Burst for the default rate limit (0 = same as the rate).
    pub default_rate_limit_burst: u32,
    /// Events held in memory per endpoint lane before the lane's backlog
    /// moves to the retry topic.
    pub max_buffered_per_lane: usize,
    /// On shutdown, how long in-flight deliveries may finish, milliseconds.
    pub drain_timeout_ms: u64,
    /// Join the consumer group as a static member (`group.instance.id` =
    /// the node id): a stable assignment, and on Kafka no rebalance when a
    /// node restarts within the session timeout. Node ids must be unique.
    pub static_membership: bool,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            commit_interval_ms: 1000,
            default_max_in_flight: 16,
            max_buffered_per_partition: 10_000,
            max_buffered_per_lane: 1_000,
            attempt_log: true,
            worst_endpoints: 10,
            default_rate_limit_per_second: 0,
            default_rate_limit_burst: 0,
            drain_timeout_ms: 10_000,
            static_membership: false,
        }
    }
}

/// `[delivery]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// TCP (+TLS) connect timeout, milliseconds.
    pub connect_timeout_ms: u64,
    /// Whole-attempt timeout (connect, request, response head and capped body), milliseconds.
    pub timeout_ms: u64,
    /// Response body bytes kept per attempt; the rest is not read.
    pub max_response_body_bytes: usize,
    /// Idle keep-alive connections kept per host.
    pub pool_idle_per_host: usize,
    /// Address blocks deliveries may reach although they are private,
    /// loopback, link-local, ... (e.g. `["10.1.0.0/16"]`). Empty = public only.
    pub allow_cidrs: Vec<String>,
    /// Egress proxy for all deliveries, `http://[user:pass@]host:port` (HTTP CONNECT).
    pub proxy: Option<String>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5_000,
            timeout_ms: 15_000,
            max_response_body_bytes: 4096,
            pool_idle_per_host: 64,
            allow_cidrs: Vec::new(),
            proxy: None,
        }
    }
}

/// `[endpoint_health]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointHealthConfig {
    /// Consecutive failed attempts that open an endpoint's circuit (0 = never).
    pub failures_to_open: u32,
    /// How long an open circuit sends nothing before one probe.
    #[serde(with = "crate::duration::serde_one")]
    pub cool_down: Duration,
    /// An endpoint failing continuously this long is disabled (0 = never).
    #[serde(with = "crate::duration::serde_one")]
    pub disable_after: Duration,
    /// Endpoint id that receives operational events as webhooks (empty = none).
    pub operator_endpoint: String,
}

impl Default for EndpointHealthConfig {
    fn default() -> Self {
        Self {
            failures_to_open: 10,
            cool_down: Duration::from_secs(60),
            disable_after: Duration::from_secs(5 * 86_400),
            operator_endpoint: String::new(),
        }
    }
}

/// `[retry]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Delays before each retry (the first follows the first attempt).
    #[serde(with = "crate::duration::serde_list")]
    pub schedule: Vec<Duration>,
    /// Relative jitter on each delay, 0.0 to 1.0.
    pub jitter: f64,
    /// Events older than this (since publish) are dead-lettered, not retried.
    #[serde(with = "crate::duration::serde_one")]
    pub max_age: Duration,
    /// Longest wait a receiver's `Retry-After` can impose.
    #[serde(with = "crate::duration::serde_one")]
    pub max_retry_after: Duration,
    /// Retries due within this wait in memory; longer waits move the
    /// endpoint's pending events to the retry topic.
    #[serde(with = "crate::duration::serde_one")]
    pub in_memory_max: Duration,
    /// Treat 4xx answers other than 408 and 429 as final (dead-letter at once).
    pub final_4xx: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        let p = crate::schedule::RetryPolicy::default();
        Self {
            schedule: p.schedule,
            jitter: p.jitter,
            max_age: p.max_age,
            max_retry_after: p.max_retry_after,
            in_memory_max: Duration::from_secs(30),
            final_4xx: false,
        }
    }
}

impl RetryConfig {
    /// The node-wide retry policy.
    pub fn policy(&self) -> crate::schedule::RetryPolicy {
        crate::schedule::RetryPolicy {
            schedule: self.schedule.clone(),
            jitter: self.jitter,
            max_age: self.max_age,
            max_retry_after: self.max_retry_after,
        }
    }
}

impl DeliveryConfig {
    /// The egress policy from `allow_cidrs` (validated by [`Config::validate`]).
    pub fn egress_policy(&self) -> crate::egress::EgressPolicy {
        crate::egress::EgressPolicy::new(
            self.allow_cidrs
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
        )
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `herald_dispatch=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Keys whose values are text even when they look like numbers (`HERALD_NODE_ID=7`).
const STRING_KEYS: &[&str] = &[
    "node.id",
    "kafka.brokers",
    "kafka.events_topic",
    "kafka.endpoints_topic",
    "kafka.retry_topic",
    "kafka.dlq_topic",
    "kafka.ops_topic",
    "kafka.attempts_topic",
    "endpoint_health.operator_endpoint",
    "kafka.consumer_group",
    "log.level",
];

/// Sections that environment variables may address.
const SECTIONS: &[&str] = &[
    "endpoint_health",
    "node",
    "grpc",
    "http",
    "kafka",
    "dispatch",
    "delivery",
    "retry",
    "log",
];

/// Builds a [`Config`] from layers, later layers winning.
#[derive(Debug, Default)]
pub struct ConfigLoader {
    tree: Table,
    sources: BTreeMap<String, Source>,
}

impl ConfigLoader {
    /// Starts from the built-in defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one dotted key (`kafka.brokers`) from `source`.
    pub fn set(&mut self, key: &str, value: Value, source: Source) -> &mut Self {
        let mut parts = key.split('.').peekable();
        let mut table = &mut self.tree;
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                table.insert(part.to_string(), value);
                break;
            }
            let entry = table
                .entry(part.to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            table = entry.as_table_mut().expect("just made a table");
        }
        self.sources.insert(key.to_string(), source);
        self
    }

    /// Merges a TOML document (the config file) read from `path`.
    pub fn file(&mut self, path: &str, text: &str) -> Result<&mut Self, ConfigError> {
        let doc: Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let mut flat = Vec::new();
        flatten("", &doc, &mut flat);
        for (k, v) in flat {
            self.set(&k, v, Source::File(path.to_string()));
        }
        Ok(self)
    }

    /// Merges `HERALD_<SECTION>_<KEY>` variables; others are ignored.
    pub fn env(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> &mut Self {
        for (name, raw) in vars {
            let Some(rest) = name.strip_prefix("HERALD_") else {
                continue;
            };
            let lower = rest.to_ascii_lowercase();
            // Section names may contain `_` (`endpoint_health`): match whole names.
            let Some((section, key)) = SECTIONS.iter().find_map(|sec| {
                lower
                    .strip_prefix(sec)?
                    .strip_prefix('_')
                    .map(|key| (*sec, key))
            }) else {
                continue;
            };
            if key.is_empty() {
                continue;
            }
            let key = format!("{section}.{key}");
            let value = if STRING_KEYS.contains(&key.as_str()) {
                Value::String(raw)
            } else {
                scalar(&raw)
            };
            self.set(&key, value, Source::Env(name));
        }
        self
    }

    /// Deserialises and validates the merged layers.
    pub fn build(&self) -> Result<Config, ConfigError> {
        let de = Value::Table(self.tree.clone());
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let layer = self.source_of(&key);
            ConfigError::Key {
                key,
                layer,
                message: e.inner().to_string(),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn source_of(&self, key: &str) -> Source {
        // The error path may point inside a value or at a table holding an
        // unknown key; the longest recorded prefix names the layer.
        self.sources
            .iter()
            .filter(|(k, _)| {
                key == k.as_str()
                    || key.starts_with(&format!("{k}."))
                    || k.starts_with(&format!("{key}."))
            })
            .max_by_key(|(k, _)| k.len())
            .map(|(_, s)| s.clone())
            .unwrap_or(Source::Default)
    }
}

/// An environment value as a TOML scalar when it is one, else a string.
fn scalar(raw: &str) -> Value {
    match toml::from_str::<Table>(&format!("v = {raw}")) {
        Ok(mut t) => match t.remove("v") {
            Some(v @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_))) => v,
            _ => Value::String(raw.to_string()),
        },
        Err(_) => Value::String(raw.to_string()),
    }
}

fn flatten(prefix: &str, table: &Table, out: &mut Vec<(String, Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            // `kafka.client` is a free-form map: keep it whole.
            Value::Table(t) if key != "kafka.client" => flatten(&key, t, out),
            _ => out.push((key, v.clone())),
        }
    }
}

impl Config {
    /// Checks values that are well-typed but out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &str, message: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key: key.into(),
                message: message.into(),
            })
        }
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            return bad("kafka.brokers", "must list at least one host:port");
        }
        let topics = [
            ("kafka.events_topic", &k.events_topic),
            ("kafka.endpoints_topic", &k.endpoints_topic),
            ("kafka.retry_topic", &k.retry_topic),
            ("kafka.dlq_topic", &k.dlq_topic),
            ("kafka.ops_topic", &k.ops_topic),
            ("kafka.attempts_topic", &k.attempts_topic),
        ];
        for (i, (key, topic)) in topics.iter().enumerate() {
            if !valid_topic(topic) {
                return bad(key, format!("{topic:?} is not a valid Kafka topic name ([A-Za-z0-9._-], 1 to 249 characters)"));
            }
            if let Some((other, _)) = topics[..i].iter().find(|(_, t)| t == topic) {
                return bad(key, format!("must differ from {other} ({topic:?})"));
            }
        }
        if k.events_partitions < 1 {
            return bad("kafka.events_partitions", "must be at least 1");
        }
        if k.replication_factor < 1 {
            return bad("kafka.replication_factor", "must be at least 1");
        }
        if k.consumer_group.trim().is_empty() {
            return bad("kafka.consumer_group", "must not be empty");
        }
        if k.session_timeout_ms < 1000 {
            return bad("kafka.session_timeout_ms", "must be at least 1000");
        }
        let g = &self.grpc;
        if g.max_payload_bytes == 0 || g.max_payload_bytes > 16 * 1024 * 1024 {
            return bad("grpc.max_payload_bytes", "must be between 1 and 16777216");
        }
        if g.max_batch_size == 0 {
            return bad("grpc.max_batch_size", "must be at least 1");
        }
        let d = &self.dispatch;
        if d.commit_interval_ms == 0 {
            return bad("dispatch.commit_interval_ms", "must be at least 1");
        }
        if d.max_buffered_per_partition == 0 {
            return bad("dispatch.max_buffered_per_partition", "must be at least 1");
        }
        if d.max_buffered_per_lane < 2 {
            return bad("dispatch.max_buffered_per_lane", "must be at least 2");
        }
        if d.default_max_in_flight == 0 {
            return bad("dispatch.default_max_in_flight", "must be at least 1");
        }
        let r = &self.retry;
        if !(0.0..=1.0).contains(&r.jitter) {
            return bad("retry.jitter", "must be between 0.0 and 1.0");
        }
        if r.schedule.iter().any(|d| d.is_zero()) {
            return bad("retry.schedule", "delays must be longer than 0");
        }
        if r.max_age.is_zero() {
            return bad("retry.max_age", "must be longer than 0");
        }
        if self.kafka.retry_retention <= r.max_age {
            return bad(
                "kafka.retry_retention",
                format!(
                    "must be longer than retry.max_age ({}s), or records waiting in the retry topic could be deleted before they are due",
                    r.max_age.as_secs()
                ),
            );
        }
        if self.kafka.dlq_retention.is_zero() {
            return bad("kafka.dlq_retention", "must be longer than 0");
        }
        let v = &self.delivery;
        for c in &v.allow_cidrs {
            if let Err(e) = c.parse::<crate::egress::Cidr>() {
                return bad("delivery.allow_cidrs", format!("{c:?}: {e}"));
            }
        }
        if let Some(p) = &v.proxy {
            if !p.starts_with("http://") || p.parse::<http::Uri>().is_err() {
                return bad(
                    "delivery.proxy",
                    format!("{p:?} must be an http:// URL (host:port of an HTTP CONNECT proxy)"),
                );
            }
        }
        if v.connect_timeout_ms == 0 || v.timeout_ms == 0 {
            return bad("delivery.timeout_ms", "timeouts must be at least 1 ms");
        }
        if self.node.id.trim().is_empty() {
            return bad("node.id", "must not be empty");
        }
        Ok(())
    }
}

fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = ConfigLoader::new().build().unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.grpc.max_payload_bytes, 262_144);
    }

    #[test]
    fn layers_apply_in_order() {
        let mut l = ConfigLoader::new();
        l.file(
            "herald.toml",
            "[kafka]\nbrokers = \"file:9092\"\nevents_partitions = 6\n[dispatch]\ncommit_interval_ms = 50\n",
        )
        .unwrap();
        l.env(env(&[
            ("HERALD_KAFKA_BROKERS", "env:9092"),
            ("HERALD_LOG_FORMAT", "json"),
            ("HERALD_SERVER", "ignored-client-var"),
            ("PATH", "/bin"),
        ]));
        l.set(
            "kafka.events_partitions",
            Value::Integer(3),
            Source::Flag("--partitions".into()),
        );
        let cfg = l.build().unwrap();
        assert_eq!(cfg.kafka.brokers, "env:9092");
        assert_eq!(cfg.kafka.events_partitions, 3);
        assert_eq!(cfg.dispatch.commit_interval_ms, 50);
        assert_eq!(cfg.log.format, LogFormat::Json);
        assert_eq!(cfg.grpc, GrpcConfig::default());
    }

    #[test]
    fn env_text_keys_stay_text() {
        let cfg = ConfigLoader::new()
            .env(env(&[
                ("HERALD_NODE_ID", "7"),
                ("HERALD_RETRY_SCHEDULE", "1s, 2m"),
            ]))
            .build()
            .unwrap();
        assert_eq!(cfg.node.id, "7");
        assert_eq!(
            cfg.retry.schedule,
            vec![Duration::from_secs(1), Duration::from_secs(120)]
        );
        let cfg = ConfigLoader::new()
            .env(env(&[("HERALD_ENDPOINT_HEALTH_FAILURES_TO_OPEN", "3")]))
            .build()
            .unwrap();
        assert_eq!(cfg.endpoint_health.failures_to_open, 3);
    }

    #[test]
    fn env_numbers_are_typed() {
        let cfg = ConfigLoader::new()
            .env(env(&[("HERALD_DISPATCH_DEFAULT_MAX_IN_FLIGHT", "4")]))
            .build()
            .unwrap();
        assert_eq!(cfg.dispatch.default_max_in_flight, 4);
    }

    #[test]
    fn wrong_type_names_key_and_layer() {
        let err = ConfigLoader::new()
            .env(env(&[("HERALD_DISPATCH_COMMIT_INTERVAL_MS", "soon")]))
            .build()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("dispatch.commit_interval_ms"), "{msg}");
        assert!(msg.contains("HERALD_DISPATCH_COMMIT_INTERVAL_MS"), "{msg}");
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let mut l = ConfigLoader::new();
        l.file("h.toml", "[kafka]\nbrokerz = \"x\"\n").unwrap();
        let msg = l.build().unwrap_err().to_string();
        assert!(msg.contains("brokerz"), "{msg}");
        assert!(msg.contains("h.toml"), "{msg}");
    }

    #[test]
    fn bad_toml_names_file() {
        let msg = ConfigLoader::new()
            .file("h.toml", "[kafka\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("h.toml"), "{msg}");
    }

    #[test]
    fn out_of_range_values_are_named() {
        let msg = ConfigLoader::new()
            .set(
                "kafka.events_partitions",
                Value::Integer(0),
                Source::Default,
            )
            .build()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("kafka.events_partitions"), "{msg}");
        let msg = ConfigLoader::new()
            .set(
                "kafka.events_topic",
                Value::String("bad topic".into()),
                Source::Default,
            )
            .build()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("kafka.events_topic"), "{msg}");
    }

    #[test]
    fn bad_listen_address_is_named() {
        let msg = ConfigLoader::new()
            .env(env(&[("HERALD_GRPC_LISTEN", "not-an-address")]))
            .build()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("grpc.listen"), "{msg}");
    }

    #[test]
    fn retry_durations_parse() {
        let mut l = ConfigLoader::new();
        l.file(
            "h.toml",
            "[retry]\nschedule = [\"1s\", \"2m\", 500]\nmax_age = \"2d\"\n",
        )
        .unwrap();
        l.env(env(&[("HERALD_RETRY_IN_MEMORY_MAX", "10s")]));
        let cfg = l.build().unwrap();
        assert_eq!(
            cfg.retry.schedule,
            vec![
                Duration::from_secs(1),
                Duration::from_secs(120),
                Duration::from_millis(500)
            ]
        );
        assert_eq!(cfg.retry.max_age, Duration::from_secs(2 * 86_400));
        assert_eq!(cfg.retry.in_memory_max, Duration::from_secs(10));
        let msg = ConfigLoader::new()
            .env(env(&[("HERALD_RETRY_MAX_AGE", "forever")]))
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("retry.max_age") && msg.contains("forever"),
            "{msg}"
        );
    }

    #[test]
    fn retry_retention_must_outlive_the_retry_life() {
        let mut l = ConfigLoader::new();
        l.file(
            "herald.toml",
            "[retry]\nmax_age = \"20d\"\n[kafka]\nretry_retention = \"14d\"\n",
        )
        .unwrap();
        let msg = l.build().unwrap_err().to_string();
        assert!(
            msg.contains("kafka.retry_retention") && msg.contains("retry.max_age"),
            "{msg}"
        );
    }

    #[test]
    fn client_map_is_kept_whole() {
        let mut l = ConfigLoader::new();
        l.file(
            "h.toml",
            "[kafka.client]\n\"security.protocol\" = \"ssl\"\n",
        )
        .unwrap();
        let cfg = l.build().unwrap();
        assert_eq!(
            cfg.kafka
                .client
                .get("security.protocol")
                .map(String::as_str),
            Some("ssl")
        );
    }
}
