//! Event types, subscriptions, fan-out and test events end to end (issue 8),
//! as one test binary: one node
//! (ingest + dispatcher) on the embedded broker, real HTTP receivers on
//! port 0.
//!
//! - `fan_out_reaches_every_subscribed_endpoint_in_order`: an application's
//!   endpoints subscribed by pattern, channel and CEL filter; the records
//!   each endpoint receives are exactly those a model of the subscriptions
//!   picks, in publish order, with the derived event ids; other
//!   applications and disabled endpoints get nothing; fan-outs larger than
//!   one chunk (`grpc.fanout_chunk_records = 3`) arrive whole.
//! - `fan_out_to_a_hundred_endpoints_exactly_once`: a table of 100
//!   subscriptions; each target gets each of its events exactly once, the
//!   others nothing.
//! - `fan_out_retried_with_its_key_sends_each_endpoint_one_event`: the
//!   idempotency key gives the same message id and the same per-endpoint ids;
//!   a subscription created after a publish does not receive it.
//! - `catalogue_round_trip_and_publish_checks`: event type CRUD and errors,
//!   schema refusals naming the failing path, archived and unknown types.
//! - `subscriptions_are_validated_with_positions`: bad patterns, channels
//!   and filters are refused at create and update, naming the field and the
//!   position of the mistake.
//! - `one_key_on_two_ingest_nodes_and_after_a_restart_delivers_once`
//!   (`idempotency.rs`): one idempotency key published to two ingest nodes
//!   at once and after a restart writes once; another request with the key
//!   is refused; the attempt log read by message id.
//! - `a_keyed_batch_is_claimed_in_a_few_records_and_known_to_a_new_node`
//!   (`idempotency.rs`): a `PublishBatch` of 50 keys adds a handful of
//!   records to the idempotency topic, and a node started after it answers
//!   every key from them.
//! - `a_scheduled_event_takes_its_place_at_its_due_time` and
//!   `a_scheduled_event_survives_a_dispatcher_sigkill` (`schedule.rs`):
//!   scheduled delivery, never before its time, zero events held in lanes.
//! - `send_test_event_reports_the_first_attempt`: `SendTestEvent` delivers a
//!   marked, signed event through the normal path and reports the first
//!   attempt's status, outcome and response, for a working and a failing
//!   receiver.
//! - `batches_keep_order_through_failures_and_verify_with_standard_webhooks`
//!   and `batch_settings_are_validated_and_updated` (`batching.rs`): batched
//!   delivery checked by the Standard Webhooks reference library, order and
//!   whole-batch retries through failures, settings refused by field.

#[path = "../support/mod.rs"]
mod support;

mod batching;
mod catalogue;
mod common;
mod fanout;
mod idempotency;
mod schedule;
mod test_events;
