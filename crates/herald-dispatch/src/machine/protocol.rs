//! The core's vocabulary: records and topics, what the worker tells the
//! core ([`Input`]), what the core asks of the worker ([`Action`]), its
//! settings ([`Config`]), its view of the registry ([`Directory`]) and what
//! one step may touch ([`Ctx`]).

use std::sync::Arc;

use bytes::Bytes;
use herald_core::breaker::BreakerConfig;
use herald_core::schedule::RetryPolicy;
use herald_proto::v1::EventEnvelope;

use crate::attempt::{Event, Outcome};
use crate::endpoint::Prepared;
use crate::offsets::OffsetTracker;
use crate::scanner::{ScanRequest, ScanResult};
use crate::sink::Target;

/// Which topic a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// The events topic.
    Events,
    /// The retry topic.
    Retry,
}

/// One record, detached from the consumer.
#[derive(Debug, Clone)]
pub struct Record {
    /// Source topic.
    pub topic: Topic,
    /// Offset in the partition.
    pub offset: i64,
    /// Record key (the endpoint id).
    pub key: Option<Bytes>,
    /// Record value (an `EventEnvelope`).
    pub payload: Option<Bytes>,
}

/// Requests a worker makes of the consumer for its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop fetching the events partition (memory cap reached or catching up).
    PauseEvents,
    /// Fetch the events partition again.
    ResumeEvents,
}

/// Offset trackers of the two topics of one partition.
#[derive(Debug, Default)]
pub struct Trackers {
    /// Events topic.
    pub events: OffsetTracker,
    /// Retry topic.
    pub retry: OffsetTracker,
}

/// How much of the retry partition a new worker reads before events flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CatchUp {
    /// Nothing: the retry partition has no records past the committed offset.
    #[default]
    None,
    /// Up to (not including) this offset.
    Until(i64),
    /// Not known yet (the watermark query failed): the worker asks again,
    /// and events wait.
    Unknown,
}

/// How an attempt began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// At once.
    None,
    /// After a wait within `retry.in_memory_max`.
    Short,
    /// After a longer wait (a durable lane's head).
    Long,
}

/// What the registry says about an endpoint, prepared for delivery.
#[derive(Clone)]
pub enum Known {
    /// The endpoint as last written.
    Ready(Arc<Prepared>),
    /// Its tombstone was read.
    Deleted,
    /// Not read (yet): registry lag, never deletion.
    Unknown,
}

/// The core's view of the endpoint registry.
pub trait Directory {
    /// The endpoint, prepared for delivery.
    fn lookup(&mut self, endpoint: &str) -> Known;
    /// Changes whenever the registry does.
    fn version(&self) -> u64;
}

/// Settings of one partition core.
#[derive(Clone)]
pub struct Config {
    /// The partition number (retry and dead-letter writes go to the same one).
    pub partition: i32,
    /// Retries due within this wait stay in memory (ms).
    pub in_memory_max_ms: i64,
    /// In-flight limit for unordered endpoints without their own.
    pub default_in_flight: u32,
    /// Events from the events topic held before the partition is paused.
    pub max_buffered: usize,
    /// Events held per lane before the lane moves to the retry topic.
    pub max_lane: usize,
    /// Circuit-breaker settings.
    pub breaker: BreakerConfig,
    /// Disable an endpoint failing continuously this long (ms, 0 = never).
    pub disable_after_ms: i64,
    /// The node's retry policy (only for records of unknown endpoints).
    pub policy: RetryPolicy,
    /// Seed of the jitter source (the core draws no other randomness).
    pub seed: u64,
}

/// What happened, as the worker tells the core.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per step, moved, never stored in bulk
pub enum Input {
    /// A record of either topic, in offset order per topic.
    Record(Record),
    /// An attempt the core asked for ended.
    Attempted {
        /// Its endpoint.
        endpoint: Arc<str>,
        /// The event, with its attempt state updated.
        event: Event,
        /// The rest of its batch, in order (empty: one event per request).
        batch: Vec<Event>,
        /// How it ended.
        outcome: Outcome,
        /// How it began.
        wait: Wait,
    },
    /// A write the core asked for landed at this offset, or failed for good.
    Written {
        /// The write's id.
        id: u64,
        /// Landed offset, or the error text.
        result: Result<i64, String>,
    },
    /// A scan the core asked for ended.
    Scanned {
        /// The lane it was for.
        endpoint: Arc<str>,
        /// What it found.
        result: Result<ScanResult, String>,
    },
    /// The retry partition's end, for the catch-up.
    CatchUpTarget {
        /// The partition's first offset still stored.
        low: i64,
        /// One past its last offset.
        high: i64,
    },
    /// A wake-up the core asked for.
    Wake(Arc<str>),
    /// The registry read everything written before the sync began
    /// (`false`: the sync failed; the core asks again when it needs to).
    RegistrySynced(Arc<str>, bool),
    /// The registry changed: parked lanes are looked at again.
    RegistryChanged,
    /// Maintenance: memory cap, scans for lanes with room (call after every
    /// batch of inputs).
    Maintain,
    /// The partition was revoked (`true`) or assigned back (`false`).
    Suspend(bool),
    /// Shutdown: start nothing new; only deliveries already in flight count.
    Drain,
}

/// What the core wants done. The worker executes these in order.
#[derive(Debug)]
pub enum Action {
    /// Attempt `event` after `delay_ms` (the worker re-reads the endpoint
    /// when it sends).
    Attempt {
        /// The endpoint.
        endpoint: Arc<str>,
        /// The endpoint as prepared when the attempt was decided.
        prepared: Arc<Prepared>,
        /// The event (the first of a batch).
        event: Event,
        /// The rest of its batch, in order, sent in the same request
        /// (empty: one event per request).
        batch: Vec<Event>,
        /// Wait this long first.
        delay_ms: u64,
        /// How the attempt began (echoed back).
        wait: Wait,
    },
    /// Hand this write to the producer, after every earlier write.
    Write {
        /// Echoed back in [`Input::Written`].
        id: u64,
        /// Retry or dead-letter topic.
        target: Target,
        /// The record value (and headers' source).
        envelope: EventEnvelope,
    },
    /// Read the endpoint's records back from the retry partition.
    Scan(ScanRequest),
    /// Ask for the retry partition's end ([`Input::CatchUpTarget`]).
    FetchCatchUpTarget,
    /// Send [`Input::Wake`] for `endpoint` at `at_ms`.
    WakeAt {
        /// The lane to wake.
        endpoint: Arc<str>,
        /// Unix ms.
        at_ms: i64,
    },
    /// Wait until the registry has read its topic to the end, then send
    /// [`Input::RegistrySynced`].
    SyncRegistry(Arc<str>),
    /// Pause or resume the events partition.
    Control(Control),
    /// Abort attempts still waiting out their delay (drain).
    AbortWaits,
    /// Publish an operational event.
    Ops {
        /// Event type (`herald_registry::ops::kind`).
        kind: &'static str,
        /// About this endpoint.
        endpoint: Arc<str>,
        /// Details.
        detail: serde_json::Value,
    },
    /// Disable the endpoint in the registry, once.
    Disable {
        /// The endpoint.
        endpoint: Arc<str>,
        /// `gone` or `failing`.
        reason: &'static str,
        /// Text for operators.
        detail: String,
    },
    /// The partition cannot go on safely (a write failed for good): stop;
    /// the node restarts from committed offsets.
    Fatal(String),
}

/// What one step may read and change besides the core itself.
pub struct Ctx<'a> {
    /// Now, unix ms.
    pub now_ms: i64,
    /// The partition's offset trackers (shared with the commit loop).
    pub trackers: &'a mut Trackers,
    /// The endpoint registry.
    pub directory: &'a mut dyn Directory,
}
