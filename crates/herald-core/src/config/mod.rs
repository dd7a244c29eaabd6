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

mod loader;
mod security;
mod validate;

pub use loader::ConfigLoader;
pub use security::{
    AuthConfig, ClientCertConfig, GrpcTlsConfig, MasterKeyConfig, SecretsConfig, TokenConfig,
};

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
    /// Who may call the gRPC API.
    pub auth: AuthConfig,
    /// Master keys of the endpoint secrets at rest.
    pub secrets: SecretsConfig,
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
    /// Most idempotency keys an ingest node remembers from the idempotency
    /// topic (the oldest forgotten first).
    pub idempotency_cache_size: usize,
    /// TLS for the API (`[grpc.tls]`); plaintext h2c when absent.
    pub tls: Option<GrpcTlsConfig>,
    /// Most endpoints the registry may hold; `CreateEndpoint` answers
    /// `RESOURCE_EXHAUSTED` beyond it (every node keeps the whole registry
    /// in memory).
    pub max_endpoints: usize,
    /// Whether a publish may name an event type that is not in the
    /// catalogue (`herald event-type create`); archived types are always
    /// refused, and a known type's schema is always checked.
    pub allow_unknown_event_types: bool,
    /// A fan-out writes its records in chunks of at most this many, each
    /// acknowledged by Kafka before the next is handed to the producer (and
    /// at most ~900 KB of records per chunk).
    pub fanout_chunk_records: usize,
    /// The furthest ahead a publish may schedule its delivery (`delay_ms`,
    /// `deliver_at_ms`).
    #[serde(with = "crate::duration::serde_one")]
    pub max_schedule_delay: Duration,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:50051".parse().expect("valid"),
            max_payload_bytes: 256 * 1024,
            max_batch_size: 1000,
            idempotency_cache_size: 1_000_000,
            max_endpoints: 1_000_000,
            allow_unknown_event_types: true,
            fanout_chunk_records: 500,
            max_schedule_delay: Duration::from_secs(30 * 86_400),
            tls: None,
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
    /// Topic of idempotency claims and answers (one partition), read by
    /// every ingest node.
    pub idempotency_topic: String,
    /// Topic where scheduled events wait until they are due (one partition
    /// per delay tier, see [`crate::delay`]).
    pub scheduled_topic: String,
    /// How long an idempotency key keeps its answer, across nodes and
    /// restarts (the idempotency topic's `retention.ms` is this plus an
    /// hour when Herald creates it).
    #[serde(with = "crate::duration::serde_one")]
    pub idempotency_window: Duration,
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
    /// After this long without a record, an idle tailing consumer (the
    /// dispatcher, the registry and idempotency readers) pauses its
    /// partitions and fetches only in short probes, milliseconds (0 = never;
    /// `herald dev` uses 1000, as its broker cannot hold a fetch open).
    pub idle_pause_after_ms: u64,
    /// While paused for idleness, how often a consumer probes for records,
    /// milliseconds: how long a record from another process may wait
    /// (`herald dev` uses 2000; its own writes wake consumers at once).
    pub idle_probe_interval_ms: u64,
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
            idempotency_topic: "herald.idempotency".into(),
            scheduled_topic: "herald.scheduled".into(),
            idempotency_window: Duration::from_secs(86_400),
            attempts_retention: Duration::from_secs(7 * 86_400),
            retry_retention: Duration::from_secs(14 * 86_400),
            dlq_retention: Duration::from_secs(30 * 86_400),
            replication_factor: 3,
            consumer_group: "herald-dispatch".into(),
            session_timeout_ms: 10_000,
            create_topics: true,
            idle_pause_after_ms: 0,
            idle_probe_interval_ms: 100,
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
    /// How long the dispatcher's fetch waits for new records, milliseconds
    /// (librdkafka `fetch.wait.max.ms`). A real Kafka broker answers a
    /// waiting fetch as soon as data arrives, so this only bounds idle
    /// polling; the embedded dev broker answers only at the end of the wait,
    /// so there it is the latency floor (`herald dev` uses 2).
    pub fetch_wait_max_ms: u64,
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
            fetch_wait_max_ms: 50,
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
    /// Most requests per second this node sends to one destination host
    /// (`host:port`), over all endpoints that point there; 0 = no ceiling.
    /// Bounds how hard endpoint owners can make Herald hit a third party.
    pub max_requests_per_host_per_second: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5_000,
            timeout_ms: 15_000,
            max_response_body_bytes: 4096,
            pool_idle_per_host: 1024,
            allow_cidrs: Vec::new(),
            proxy: None,
            max_requests_per_host_per_second: 0,
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

#[cfg(test)]
mod tests;
