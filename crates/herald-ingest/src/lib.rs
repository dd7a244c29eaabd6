//! gRPC ingest: `EventService` (publish events to Kafka) and
//! `EndpointService` (manage the endpoint registry).
//!
//! # Layout
//! - [`publish`]: validation and the Kafka write of one event.
//! - `publish_keys`: claiming and settling a call's idempotency keys.
//! - [`events`]: the `EventService` implementation (single and batch).
//! - [`attempts`]: `EventService.ListAttempts` over the attempt log.
//! - [`endpoints`]: the `EndpointService` implementation.
//! - [`event_types`]: the `EventTypeService` implementation (the catalogue).
//! - [`fanout`]: fan-out targets and the catalogue's checks on a publish.
//! - `fanout_publish`: writing one fan-out (claim, chunks, answer).
//! - [`deadletters`]: the `DeadLetterService` implementation (list, replay).
//! - [`test_event`]: `EndpointService.SendTestEvent` (deliver one, read its first attempt back).
//! - [`status`]: `ClusterService.GetStatus` (dispatchers, lag, throughput, failing endpoints).
//! - `paging`: page sizes and tokens of the registry listings.
//! - [`idempotency`]: idempotency keys across nodes and restarts (the idempotency topic).
//! - [`dlq_scan`]: one bounded-memory pass over the dead-letter topic.
//! - [`scan_gate`]: concurrency, deadline and cancellation of topic scans.
#![forbid(unsafe_code)]

pub mod attempts;
pub mod deadletters;
pub mod dlq_scan;
pub mod endpoints;
pub mod event_types;
pub mod events;
pub mod fanout;
mod fanout_publish;
pub mod idempotency;
mod paging;
pub mod publish;
mod publish_keys;
pub mod scan_gate;
pub mod status;
pub mod test_event;

pub use deadletters::DeadLetterApi;
pub use endpoints::EndpointApi;
pub use event_types::EventTypeApi;
pub use events::EventApi;
pub use publish::Publisher;
