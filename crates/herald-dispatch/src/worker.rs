//! The task that owns one assigned partition of the events topic.
//!
//! It receives the partition's records in offset order, puts each event in
//! its endpoint's lane, starts deliveries as the lanes allow, retries failed
//! ones in place (so an ordered lane never overtakes its head), and marks
//! offsets finished in the partition's [`OffsetTracker`]. Deliveries run as
//! futures inside this task: no per-event spawn, no locks shared with other
//! partitions. The tracker mutex is shared only with the consumer's commit
//! path (rarely contended).
//!
//! Stops in two ways: *cancelled* (partition revoked: everything is dropped,
//! unfinished events are re-sent by the next owner) or *drained* (the record
//! channel closed at shutdown: in-flight attempts finish, nothing new starts).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use herald_proto::v1::EventEnvelope;
use herald_registry::Registry;
use herald_telemetry::names;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::attempt::{AttemptContext, Event, Outcome};
use crate::endpoint::Prepared;
use crate::lanes::Lanes;
use crate::offsets::{OffsetTracker, SkipSet};

/// One record of the events topic, detached from the consumer.
#[derive(Debug)]
pub struct Record {
    /// Offset in the partition.
    pub offset: i64,
    /// Record key (the endpoint id).
    pub key: Option<Bytes>,
    /// Record value (an `EventEnvelope`).
    pub payload: Option<Bytes>,
}

/// Settings of a partition worker.
#[derive(Clone)]
pub struct WorkerSettings {
    /// Attempt machinery shared by the node.
    pub attempts: Arc<AttemptContext>,
    /// The endpoint registry.
    pub registry: Registry,
    /// In-flight limit for unordered endpoints without their own.
    pub default_in_flight: u32,
    /// Most events held in lanes before the worker stops reading.
    pub max_buffered: usize,
}

/// Runs the worker for `partition` until cancelled or drained.
pub async fn run_worker(
    partition: i32,
    settings: WorkerSettings,
    mut records: mpsc::Receiver<Record>,
    tracker: Arc<Mutex<OffsetTracker>>,
    skip: SkipSet,
    cancel: CancellationToken,
) {
    let mut w = Worker {
        partition,
        drain: CancellationToken::new(),
        settings,
        lanes: Lanes::new(),
        tracker,
        skip,
        prepared: HashMap::new(),
        prepared_version: u64::MAX,
        parked: HashSet::new(),
        inflight: FuturesUnordered::new(),
    };
    let mut registry_changes = w.settings.registry.progress();
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some((endpoint, event, outcome)) = w.inflight.next(), if !w.inflight.is_empty() => {
                w.on_done(endpoint, event, outcome, draining);
            }
            rec = records.recv(), if !draining && w.lanes.buffered() < w.settings.max_buffered => match rec {
                Some(r) => w.on_record(r),
                None => {
                    draining = true;
                    w.drain.cancel();
                }
            },
            Ok(()) = registry_changes.changed(), if !w.parked.is_empty() => w.unpark(),
        }
        if draining && w.inflight.is_empty() {
            break;
        }
    }
    let left = w.lanes.buffered();
    metrics::gauge!(names::LANE_EVENTS).decrement(left as f64);
    metrics::gauge!(names::LANES_OPEN).decrement(w.lanes.open() as f64);
    tracing::debug!(partition, unfinished = left, "partition worker stopped");
}

type InFlight = std::pin::Pin<Box<dyn std::future::Future<Output = (Arc<str>, Event, Outcome)> + Send>>;

struct Worker {
    partition: i32,
    settings: WorkerSettings,
    /// Fired when the worker starts draining: aborts attempts still waiting out a backoff.
    drain: CancellationToken,
    lanes: Lanes<Event>,
    tracker: Arc<Mutex<OffsetTracker>>,
    /// Offsets the previous owner already finished.
    skip: SkipSet,
    /// Prepared endpoints, valid for `prepared_version` of the registry.
    prepared: HashMap<Arc<str>, Option<Arc<Prepared>>>,
    prepared_version: u64,
    /// Endpoints whose lanes wait because the endpoint is disabled.
    parked: HashSet<Arc<str>>,
    inflight: FuturesUnordered<InFlight>,
}

impl Worker {
    fn tracker(&self) -> std::sync::MutexGuard<'_, OffsetTracker> {
        self.tracker.lock().expect("tracker lock")
    }

    fn on_record(&mut self, r: Record) {
        if self.skip.should_skip(r.offset) {
            self.tracker().received_finished(r.offset);
            return;
        }
        let decoded = r
            .payload
            .as_ref()
            .ok_or_else(|| "record has no value".to_string())
            .and_then(|p| EventEnvelope::decode(p.clone()).map_err(|e| e.to_string()))
            .and_then(|env| {
                let key_ok = r.key.as_deref() == Some(env.endpoint_id.as_bytes());
                if key_ok && !env.endpoint_id.is_empty() {
                    Ok(env)
                } else {
                    Err("record key does not match the envelope's endpoint id".to_string())
                }
            });
        let envelope = match decoded {
            Ok(e) => e,
            Err(why) => {
                tracing::error!(partition = self.partition, offset = r.offset, error = %why, "undecodable event record; skipped");
                metrics::counter!(names::EVENTS_SKIPPED, "reason" => "undecodable").increment(1);
                self.tracker().received_finished(r.offset);
                return;
            }
        };
        self.tracker().received(r.offset);
        let attempts = envelope.attempt.as_ref().map_or(0, |a| a.attempts);
        let endpoint: Arc<str> = envelope.endpoint_id.as_str().into();
        self.lanes.push(&endpoint, Event { offset: r.offset, envelope, attempts });
        metrics::gauge!(names::LANE_EVENTS).increment(1.0);
        self.pump(&endpoint);
    }

    /// The endpoint prepared for delivery; `None` when it was deleted.
    fn prepared(&mut self, endpoint: &Arc<str>) -> Option<Arc<Prepared>> {
        let version = self.settings.registry.version();
        if version != self.prepared_version {
            self.prepared.clear();
            self.prepared_version = version;
        }
        if let Some(p) = self.prepared.get(endpoint) {
            return p.clone();
        }
        let p = self.settings.registry.get(endpoint).map(|e| Arc::new(Prepared::new(e)));
        self.prepared.insert(endpoint.clone(), p.clone());
        p
    }

    /// Starts as many of `endpoint`'s queued events as its lane allows.
    fn pump(&mut self, endpoint: &Arc<str>) {
        let lanes_before = self.lanes.open();
        match self.prepared(endpoint) {
            None => {
                // Deleted endpoint: its queued events are settled unsent.
                while let Some(ev) = self.lanes.next_ready(endpoint, usize::MAX) {
                    tracing::warn!(event_id = %ev.envelope.event_id, endpoint_id = %endpoint, "endpoint was deleted; event dropped");
                    metrics::counter!(names::EVENTS_SKIPPED, "reason" => "endpoint_deleted").increment(1);
                    self.settle(endpoint, ev.offset);
                }
            }
            Some(p) if !p.endpoint.enabled => {
                self.parked.insert(endpoint.clone());
            }
            Some(p) => {
                self.parked.remove(endpoint);
                let limit = p.endpoint.effective_in_flight(self.settings.default_in_flight);
                while let Some(ev) = self.lanes.next_ready(endpoint, limit) {
                    self.launch(endpoint.clone(), p.clone(), ev, Duration::ZERO);
                }
            }
        }
        let lanes_after = self.lanes.open();
        metrics::gauge!(names::LANES_OPEN).increment(lanes_after as f64 - lanes_before as f64);
    }

    fn launch(&mut self, endpoint: Arc<str>, prepared: Arc<Prepared>, event: Event, delay: Duration) {
        let ctx = self.settings.attempts.clone();
        let drain = self.drain.clone();
        self.inflight.push(Box::pin(async move {
            let (event, outcome) = ctx.run(prepared, event, delay, drain).await;
            (endpoint, event, outcome)
        }));
    }

    fn settle(&mut self, endpoint: &Arc<str>, offset: i64) {
        self.tracker().finished(offset);
        self.lanes.settled(endpoint);
        metrics::gauge!(names::LANE_EVENTS).decrement(1.0);
    }

    fn on_done(&mut self, endpoint: Arc<str>, event: Event, outcome: Outcome, draining: bool) {
        match outcome {
            Outcome::Delivered => {
                self.settle(&endpoint, event.offset);
                if !draining {
                    self.pump(&endpoint);
                }
            }
            Outcome::Aborted => {}
            Outcome::Retry(_) | Outcome::Final(_) if draining => {}
            Outcome::Retry(delay) => self.retry(endpoint, event, delay),
            Outcome::Final(reason) => {
                // Dead-letter topics come with the retry issue; until then a
                // final failure is retried at the longest backoff, never dropped.
                tracing::warn!(event_id = %event.envelope.event_id, endpoint_id = %endpoint, error = %reason,
                    "final failure; retrying at the longest backoff until dead-lettering is configured");
                let delay = self.settings.attempts.backoff.max;
                self.retry(endpoint, event, delay);
            }
        }
    }

    /// Tries `event` again after `delay`, with the endpoint's current settings.
    fn retry(&mut self, endpoint: Arc<str>, event: Event, delay: Duration) {
        match self.prepared(&endpoint) {
            Some(p) => self.launch(endpoint, p, event, delay),
            None => {
                metrics::counter!(names::EVENTS_SKIPPED, "reason" => "endpoint_deleted").increment(1);
                self.settle(&endpoint, event.offset);
                self.pump(&endpoint);
            }
        }
    }

    /// Re-checks lanes parked on a disabled endpoint after a registry change.
    fn unpark(&mut self) {
        let parked: Vec<Arc<str>> = self.parked.iter().cloned().collect();
        for ep in parked {
            self.pump(&ep);
        }
    }
}
