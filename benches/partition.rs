//! Measures the dispatcher's sans-I/O partition core
//! (`herald_dispatch::machine::Partition`) with 10,000 endpoints, each event
//! going record arrived → `Action::Attempt` → `Input::Attempted` (delivered)
//! → offset finished and lane retired. The core is driven the way the
//! partition worker drives it, through the crate's public API, with a
//! registry view whose endpoints are already prepared (the worker's warm
//! cache) and 1 KiB envelopes (decoded by the core on every record).
//! Timings are per round of events; criterion's throughput line gives the
//! per-event rate. Scenarios:
//! - `10k_lanes_open`: one event for each of 10,000 endpoints arrives, so
//!   10,000 lanes are open with their head in flight, then every attempt
//!   ends;
//! - `10k_lanes_2_deep`: two events per endpoint (20,000), the second
//!   queued behind the first and started when the first is delivered;
//! - `one_lane_at_a_time`: each event is delivered before the next arrives,
//!   cycling through the 10,000 endpoints (a lane opens and retires per
//!   event);
//! - `100_lanes_open`: `10k_lanes_open` with 100 endpoints, for reference:
//!   the same work per event with the core's tables small enough to stay
//!   in the CPU caches.

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herald_core::breaker::BreakerConfig;
use herald_core::Endpoint;
use herald_dispatch::attempt::{Event, Outcome};
use herald_dispatch::endpoint::Prepared;
use herald_dispatch::machine::{
    Action, CatchUp, Config, Ctx, Directory, Input, Known, Partition, Record, Topic, Trackers, Wait,
};
use herald_proto::v1::EndpointRecord;
use prost::Message as _;

use common::{envelope, json_payload, NOW_MS, PAYLOAD_LEN};

/// Distinct endpoints (and so lanes).
const ENDPOINTS: usize = 10_000;

/// Endpoints of the small reference run (the same work with the core's
/// tables small enough to stay in cache).
const FEW_ENDPOINTS: usize = 100;

/// A registry view with every endpoint prepared up front, like the worker's
/// cache once warm (one hash lookup and an `Arc` clone per call).
struct WarmDirectory {
    known: HashMap<Arc<str>, Known>,
}

impl Directory for WarmDirectory {
    fn lookup(&mut self, endpoint: &str) -> Known {
        self.known.get(endpoint).cloned().unwrap_or(Known::Unknown)
    }

    fn version(&self) -> u64 {
        1
    }
}

/// An attempt the core asked for, held until the bench "delivers" it.
struct Pending {
    endpoint: Arc<str>,
    event: Event,
    wait: Wait,
}

/// The core plus what the worker owns around it.
struct Driver {
    core: Partition,
    trackers: Trackers,
    directory: WarmDirectory,
    /// Per endpoint: record key and encoded envelope.
    records: Vec<(Bytes, Bytes)>,
    /// How many endpoints (`records.len()`).
    endpoints: usize,
    /// Next events-topic offset (keeps growing across rounds, as in Kafka).
    next_offset: i64,
    pending: Vec<Pending>,
}

/// The node defaults (`herald_core::Config::default()`), mapped the way the
/// dispatcher maps them, except for the memory cap: raised above the 20,000
/// events a round holds so the partition never pauses.
fn core_config() -> Config {
    let node = herald_core::Config::default();
    Config {
        partition: 0,
        in_memory_max_ms: node.retry.in_memory_max.as_millis() as i64,
        default_in_flight: node.dispatch.default_max_in_flight,
        max_buffered: 4 * ENDPOINTS,
        max_lane: node.dispatch.max_buffered_per_lane,
        breaker: BreakerConfig {
            failures_to_open: node.endpoint_health.failures_to_open,
            cool_down_ms: node.endpoint_health.cool_down.as_millis() as i64,
        },
        disable_after_ms: node.endpoint_health.disable_after.as_millis() as i64,
        policy: node.retry.policy(),
        seed: 7,
    }
}

impl Driver {
    fn new(endpoints: usize) -> Self {
        let cfg = core_config();
        let payload = Bytes::from(json_payload(PAYLOAD_LEN, 4));
        let mut known = HashMap::with_capacity(endpoints);
        let mut records = Vec::with_capacity(endpoints);
        for i in 0..endpoints {
            let id = format!("ep_{i:05}");
            let endpoint = Endpoint::from_record(EndpointRecord {
                id: id.clone(),
                url: format!("https://hooks.example.com/herald/{id}"),
                secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
                created_at_ms: NOW_MS,
                updated_at_ms: NOW_MS,
                ..Default::default()
            })
            .expect("valid endpoint");
            let prepared = Prepared::new(Arc::new(endpoint), &cfg.policy);
            known.insert(Arc::from(id.as_str()), Known::Ready(Arc::new(prepared)));
            let env = envelope(&format!("msg_bench{i:05}"), &id, payload.clone());
            records.push((Bytes::from(id), Bytes::from(env.encode_to_vec())));
        }
        Self {
            core: Partition::new(cfg, CatchUp::None),
            trackers: Trackers::default(),
            directory: WarmDirectory { known },
            records,
            endpoints,
            next_offset: 0,
            pending: Vec::with_capacity(2 * endpoints),
        }
    }

    /// Hands the core one input and collects the attempts it asks for;
    /// any other action means the scenario went off the happy path.
    fn step(&mut self, input: Input) {
        let mut ctx = Ctx {
            now_ms: NOW_MS,
            trackers: &mut self.trackers,
            directory: &mut self.directory,
        };
        self.core.handle(input, &mut ctx);
        for action in self.core.poll_actions() {
            match action {
                Action::Attempt {
                    endpoint,
                    event,
                    delay_ms: 0,
                    wait,
                    ..
                } => self.pending.push(Pending {
                    endpoint,
                    event,
                    wait,
                }),
                other => panic!("unexpected action on the happy path: {other:?}"),
            }
        }
    }

    /// The record of endpoint `i`'s next event arrives.
    fn arrive(&mut self, i: usize) {
        let (key, payload) = &self.records[i];
        let record = Record {
            topic: Topic::Events,
            offset: self.next_offset,
            key: Some(key.clone()),
            payload: Some(payload.clone()),
        };
        self.next_offset += 1;
        self.step(Input::Record(record));
    }

    /// Every pending attempt ends delivered (in the order they started),
    /// including attempts those completions start; returns how many.
    fn deliver_all(&mut self) -> usize {
        let mut delivered = 0;
        while !self.pending.is_empty() {
            let batch = std::mem::take(&mut self.pending);
            for p in batch {
                self.deliver(p);
                delivered += 1;
            }
        }
        delivered
    }

    /// One attempt ends with a 2xx; its attempt state is updated as the
    /// attempt task does before it reports back.
    fn deliver(&mut self, mut p: Pending) {
        let state = p
            .event
            .envelope
            .attempt
            .get_or_insert_with(Default::default);
        state.attempts += 1;
        state.first_attempt_ms = NOW_MS;
        state.last_attempt_ms = NOW_MS;
        state.last_status = 200;
        self.step(Input::Attempted {
            endpoint: p.endpoint,
            event: p.event,
            batch: Vec::new(),
            outcome: Outcome::Delivered,
            wait: p.wait,
        });
    }

    /// One event per endpoint arrives, then all are delivered.
    fn round_all_open(&mut self) -> usize {
        for i in 0..self.endpoints {
            self.arrive(i);
        }
        self.step(Input::Maintain);
        debug_assert_eq!(self.core.lane_count(), self.endpoints);
        let n = self.deliver_all();
        self.step(Input::Maintain);
        n
    }

    /// Two events per endpoint arrive (the second queues behind the
    /// first's in-flight attempt), then all are delivered.
    fn round_two_deep(&mut self) -> usize {
        for _ in 0..2 {
            for i in 0..self.endpoints {
                self.arrive(i);
            }
        }
        self.step(Input::Maintain);
        let n = self.deliver_all();
        self.step(Input::Maintain);
        n
    }

    /// Each event is delivered before the next one arrives.
    fn round_one_at_a_time(&mut self) -> usize {
        let mut n = 0;
        for i in 0..self.endpoints {
            self.arrive(i);
            n += self.deliver_all();
        }
        self.step(Input::Maintain);
        n
    }

    /// Everything received was finished and every lane retired.
    fn check_idle(&self) {
        assert_eq!(self.core.lane_count(), 0, "lanes left open");
        assert_eq!(self.core.held(), 0, "events left held");
        assert_eq!(
            self.trackers.events.unfinished_len(),
            0,
            "offsets unfinished"
        );
        assert_eq!(self.trackers.events.committable(), Some(self.next_offset));
    }
}

fn bench_partition(c: &mut Criterion) {
    let mut g = c.benchmark_group("partition");
    // A round of 10,000-20,000 events takes tens of milliseconds: fewer samples.
    g.sample_size(10);

    type Round = fn(&mut Driver) -> usize;
    let scenarios: [(&str, Round, usize, usize); 4] = [
        ("10k_lanes_open", Driver::round_all_open, ENDPOINTS, 1),
        ("10k_lanes_2_deep", Driver::round_two_deep, ENDPOINTS, 2),
        (
            "one_lane_at_a_time",
            Driver::round_one_at_a_time,
            ENDPOINTS,
            1,
        ),
        ("100_lanes_open", Driver::round_all_open, FEW_ENDPOINTS, 1),
    ];
    for (name, round, endpoints, per_endpoint) in scenarios {
        let events = endpoints * per_endpoint;
        let mut d = Driver::new(endpoints);
        // One checked round first: the scenario stays on the happy path
        // and leaves nothing behind.
        assert_eq!(round(&mut d), events);
        d.check_idle();
        g.throughput(Throughput::Elements(events as u64));
        g.bench_function(name, |b| b.iter(|| black_box(round(&mut d))));
        d.check_idle();
    }
    g.finish();
}

criterion_group!(benches, bench_partition);
criterion_main!(benches);
