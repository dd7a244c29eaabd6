//! Every metric Herald exports, with its labels. `docs/metrics.md` documents
//! the same list; labels are bounded (never a URL, event id or payload).

/// Counter, labels `outcome` (`ok` | `invalid` | `not_found` | `disabled` |
/// `kafka_error` | `rate_limited`): events handled by `Publish`/`PublishBatch`, per event.
pub const EVENTS_PUBLISHED: &str = "herald_events_published_total";
/// Counter, labels `method` (`publish` | `publish_batch`), `outcome` (`ok` | `error`): gRPC publish calls.
pub const PUBLISH_REQUESTS: &str = "herald_publish_requests_total";
/// Histogram (seconds), label `method`: publish call latency, until Kafka acknowledged.
pub const PUBLISH_LATENCY: &str = "herald_publish_duration_seconds";
/// Counter, label `code` (`unauthenticated` | `permission_denied`): gRPC
/// requests refused before any service ran (never the token or its name).
pub const AUTH_REFUSALS: &str = "herald_api_auth_refusals_total";

/// Counter, labels `outcome` (`success` | `retryable` | `final` | `refused`)
/// and `status_class` (`1xx`..`5xx`, `other`, `none`): delivery attempts.
pub const DELIVERY_ATTEMPTS: &str = "herald_delivery_attempts_total";
/// Histogram (seconds), label `outcome`: one HTTP attempt, request to capped body read.
pub const DELIVERY_LATENCY: &str = "herald_delivery_duration_seconds";
/// Histogram (seconds): publish (event created) to successful delivery.
pub const END_TO_END_LATENCY: &str = "herald_end_to_end_latency_seconds";
/// Counter: events delivered successfully.
pub const EVENTS_DELIVERED: &str = "herald_events_delivered_total";
/// Counter, label `reason` (`poison` | `endpoint_deleted`): events
/// finished without a delivery.
pub const EVENTS_SKIPPED: &str = "herald_events_skipped_total";

/// Counter: events appended to the retry topic (long retries, overflow).
pub const RETRY_WRITES: &str = "herald_retry_writes_total";
/// Counter, label `reason` (`final_answer` | `attempts_exhausted` |
/// `max_age_exceeded` | `predecessor_dead_lettered`): events dead-lettered.
pub const DEAD_LETTERS: &str = "herald_dead_letters_total";
/// Counter: dead letters re-published by a replay.
pub const DEAD_LETTERS_REPLAYED: &str = "herald_dead_letters_replayed_total";
/// Counter: times a partition's events were paused because its lanes held
/// `dispatch.max_buffered_per_partition` events.
pub const PARTITION_PAUSES: &str = "herald_partition_pauses_total";

/// Counter: requests that waited for an endpoint's rate limit or `Retry-After`.
pub const RATE_LIMITED_WAITS: &str = "herald_rate_limited_waits_total";
/// Counter: requests that waited for the node-wide ceiling of their
/// destination host (`delivery.max_requests_per_host_per_second`).
pub const HOST_CEILING_WAITS: &str = "herald_host_ceiling_waits_total";
/// Counter, label `state` (`open` | `closed`): circuit-breaker transitions.
pub const CIRCUIT_TRANSITIONS: &str = "herald_circuit_transitions_total";
/// Counter, label `reason` (`gone` | `failing`): endpoints disabled by the dispatcher.
pub const ENDPOINTS_AUTO_DISABLED: &str = "herald_endpoints_auto_disabled_total";

/// Counter: attempt-log records dropped because the producer queue was full.
pub const ATTEMPT_LOG_DROPPED: &str = "herald_attempt_log_dropped_total";

/// Gauge, labels `topic` (`events` | `retry`) and `partition`: records not
/// yet committed behind the partition's end, from librdkafka's statistics
/// (retry = the retry-topic backlog). Only partitions this node owns.
pub const CONSUMER_LAG: &str = "herald_consumer_lag_records";
/// Gauge, label `partition`: age in seconds of the oldest event this node
/// holds for the partition (0 when it holds none) — the lag in time.
pub const CONSUMER_LAG_SECONDS: &str = "herald_consumer_lag_seconds";
/// Gauge: endpoints whose circuit is open or half-open on this node.
pub const CIRCUITS_OPEN: &str = "herald_circuits_open";

/// Gauge, label `endpoint_id` (only the `dispatch.worst_endpoints` worst
/// endpoints of this node): age of the endpoint's oldest undelivered event
/// held by this node. Rendered at scrape time, so series disappear when an
/// endpoint recovers.
pub const ENDPOINT_OLDEST_EVENT_AGE: &str = "herald_endpoint_oldest_event_age_seconds";

/// Gauge: events held in dispatcher lanes (this node).
pub const LANE_EVENTS: &str = "herald_lane_events";
/// Gauge: open lanes (endpoints with pending events) on this node.
pub const LANES_OPEN: &str = "herald_lanes_open";
/// Gauge: partitions of the events topic assigned to this node.
pub const PARTITIONS_ASSIGNED: &str = "herald_partitions_assigned";
/// Gauge: 1 while this node's dispatcher has paused fetching because it
/// has been idle (`kafka.idle_pause_after_ms`), 0 while it fetches.
pub const DISPATCH_IDLE_PAUSED: &str = "herald_dispatch_idle_paused";
/// Counter, label `kind` (`assign` | `revoke`): rebalance callbacks.
pub const REBALANCES: &str = "herald_rebalances_total";
/// Counter: partitions that came back to this node in a rebalance and
/// resumed in place (state kept, nothing re-sent).
pub const PARTITIONS_RESUMED: &str = "herald_partitions_resumed_total";
/// Counter: partition workers that failed (a bug); the dispatcher stops.
pub const WORKER_FAILURES: &str = "herald_worker_failures_total";
/// Counter, label `outcome` (`ok` | `error`): offset commits.
pub const COMMITS: &str = "herald_offset_commits_total";

/// Gauge, label `state` (`enabled` | `disabled`): endpoints in the registry.
pub const ENDPOINTS: &str = "herald_endpoints";
/// Counter, label `topic` (`dlq` | `attempts` | `ops` | `idempotency` |
/// `scheduled`): records a scan
/// (`ListDeadLetters`, replays, `ListAttempts`, `GetStatus`) met that do not
/// decode; the scan goes on without them. Counted per scan that meets them.
pub const RECORDS_UNDECODABLE: &str = "herald_records_undecodable_total";
/// Counter: registry records this node could not use (undecodable, id not
/// equal to its key, a secret sealed under a master key it lacks); the
/// endpoint's previous version stays in force.
pub const REGISTRY_SKIPPED: &str = "herald_registry_records_skipped_total";

/// Counter, label `outcome` (`matched` | `filtered_out` | `filter_error`):
/// per fan-out, the enabled endpoints of the application whose subscription
/// matched the type and channels: a target (its filter, if any, said yes),
/// its filter said no, or
/// its filter could not be evaluated on the payload (a missing field, a type
/// mismatch: no record; the log says which endpoint at debug level).
pub const FANOUT_TARGETS: &str = "herald_fanout_targets_total";
/// Counter, label `to` (`events` | `tier`): scheduled events the scheduler
/// moved once their tier's wait was over: into the events topic (due), or
/// to a shorter tier of the scheduled topic.
pub const SCHEDULED_MOVES: &str = "herald_scheduled_moves_total";

/// Gauge, label `feature` (`offset_commit_metadata`, `describe_groups`): whether the Kafka
/// broker supports a feature Herald uses, as probed at node start: `1`
/// supported, `0` missing, `-1` unknown. A missing feature costs re-sends,
/// never events (docs/topics.md, "Broker compatibility").
pub const BROKER_FEATURE_SUPPORTED: &str = "herald_broker_feature_supported";

/// Every name above, for tests that check dashboards and docs.
pub const ALL: &[&str] = &[
    EVENTS_PUBLISHED,
    PUBLISH_REQUESTS,
    PUBLISH_LATENCY,
    AUTH_REFUSALS,
    DELIVERY_ATTEMPTS,
    DELIVERY_LATENCY,
    END_TO_END_LATENCY,
    EVENTS_DELIVERED,
    EVENTS_SKIPPED,
    RETRY_WRITES,
    DEAD_LETTERS,
    DEAD_LETTERS_REPLAYED,
    PARTITION_PAUSES,
    RATE_LIMITED_WAITS,
    HOST_CEILING_WAITS,
    CIRCUIT_TRANSITIONS,
    ENDPOINTS_AUTO_DISABLED,
    ATTEMPT_LOG_DROPPED,
    CONSUMER_LAG,
    CONSUMER_LAG_SECONDS,
    CIRCUITS_OPEN,
    ENDPOINT_OLDEST_EVENT_AGE,
    LANE_EVENTS,
    LANES_OPEN,
    PARTITIONS_ASSIGNED,
    DISPATCH_IDLE_PAUSED,
    REBALANCES,
    PARTITIONS_RESUMED,
    WORKER_FAILURES,
    COMMITS,
    ENDPOINTS,
    REGISTRY_SKIPPED,
    RECORDS_UNDECODABLE,
    FANOUT_TARGETS,
    SCHEDULED_MOVES,
    BROKER_FEATURE_SUPPORTED,
];

/// The `status_class` label for an optional HTTP status.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
        None => "none",
    }
}
