//! Every counter and histogram Herald documents, registered at start with
//! its known label sets, so `/metrics` shows them at zero from the first
//! scrape: an alert on `increase(herald_dead_letters_total[5m]) > 0` then
//! fires on the very first dead letter instead of waiting for the series to
//! exist. Gauges are set by the parts that own them.

use crate::names::*;

/// A metric's known label sets: one label name and its values, or none.
type Labels = (&'static str, &'static [&'static str]);

const NONE: Labels = ("", &[]);

const COUNTERS: &[(&str, Labels)] = &[
    (
        EVENTS_PUBLISHED,
        (
            "outcome",
            &[
                "ok",
                "invalid",
                "not_found",
                "disabled",
                "kafka_error",
                "rate_limited",
            ],
        ),
    ),
    (
        AUTH_REFUSALS,
        ("code", &["unauthenticated", "permission_denied"]),
    ),
    (EVENTS_DELIVERED, NONE),
    (EVENTS_SKIPPED, ("reason", &["poison", "endpoint_deleted"])),
    (RETRY_WRITES, NONE),
    (
        DEAD_LETTERS,
        (
            "reason",
            &[
                "final_answer",
                "attempts_exhausted",
                "max_age_exceeded",
                "predecessor_dead_lettered",
            ],
        ),
    ),
    (DEAD_LETTERS_REPLAYED, NONE),
    (PARTITION_PAUSES, NONE),
    (RATE_LIMITED_WAITS, NONE),
    (HOST_CEILING_WAITS, NONE),
    (CIRCUIT_TRANSITIONS, ("state", &["open", "closed"])),
    (ENDPOINTS_AUTO_DISABLED, ("reason", &["gone", "failing"])),
    (ATTEMPT_LOG_DROPPED, NONE),
    (REBALANCES, ("kind", &["assign", "revoke"])),
    (PARTITIONS_RESUMED, NONE),
    (WORKER_FAILURES, NONE),
    (COMMITS, ("outcome", &["ok", "error"])),
    (
        RECORDS_UNDECODABLE,
        (
            "topic",
            &["dlq", "attempts", "ops", "idempotency", "scheduled"],
        ),
    ),
    (REGISTRY_SKIPPED, NONE),
    (
        FANOUT_TARGETS,
        ("outcome", &["matched", "filtered_out", "filter_error"]),
    ),
    (SCHEDULED_MOVES, ("to", &["events", "tier"])),
];

const METHODS: &[&str] = &["publish", "publish_batch"];
const ATTEMPT_OUTCOMES: &[&str] = &["success", "retryable", "final", "refused"];
const STATUS_CLASSES: &[&str] = &["1xx", "2xx", "3xx", "4xx", "5xx", "other", "none"];

/// Registers every known counter and histogram series at zero.
pub fn register() {
    for (name, (label, values)) in COUNTERS {
        if values.is_empty() {
            metrics::counter!(*name).increment(0);
        }
        for v in *values {
            metrics::counter!(*name, *label => *v).increment(0);
        }
    }
    for method in METHODS {
        for outcome in ["ok", "error"] {
            metrics::counter!(PUBLISH_REQUESTS, "method" => *method, "outcome" => outcome)
                .increment(0);
        }
        // Registering a histogram handle creates the series, no sample.
        let _ = metrics::histogram!(PUBLISH_LATENCY, "method" => *method);
    }
    for outcome in ATTEMPT_OUTCOMES {
        for class in STATUS_CLASSES {
            metrics::counter!(DELIVERY_ATTEMPTS, "outcome" => *outcome, "status_class" => *class)
                .increment(0);
        }
        let _ = metrics::histogram!(DELIVERY_LATENCY, "outcome" => *outcome);
    }
    let _ = metrics::histogram!(END_TO_END_LATENCY);
}
