//! [`Membership::of`] against a real Kafka-protocol broker (the embedded
//! mock cluster): inside the rebalance callbacks it reads the member id and
//! generation the coordinator gave, a second member joining moves the
//! first to the next generation under the same id (so it may resume), and
//! a member that leaves and joins again comes back under a new id (so it
//! may not).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_core::config::KafkaConfig;
use herald_kafka::membership::{may_resume, Membership};
use herald_kafka::DevBroker;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

const TOPIC: &str = "membership-test";

/// Records the membership read in every assign callback.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Option<Membership>>>>);

impl ClientContext for Recorder {}

impl ConsumerContext for Recorder {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.0.lock().unwrap().push(Membership::of(consumer));
        }
    }
}

fn member(brokers: &str, name: &str) -> (BaseConsumer<Recorder>, Recorder) {
    let cfg = KafkaConfig {
        brokers: brokers.to_string(),
        ..KafkaConfig::default()
    };
    let mut c = herald_kafka::group_member_config(&cfg, "membership-group", name);
    c.set("partition.assignment.strategy", "range");
    let recorder = Recorder::default();
    let consumer: BaseConsumer<Recorder> = c.create_with_context(recorder.clone()).unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    (consumer, recorder)
}

/// Polls every consumer until `done` holds (rebalances run inside poll).
fn poll_until(consumers: &[&BaseConsumer<Recorder>], what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let t0 = Instant::now();
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for c in consumers {
            let _ = c.poll(Duration::from_millis(50));
        }
    }
    eprintln!("{what}: {:?}", t0.elapsed());
}

fn seen(r: &Recorder) -> Vec<Option<Membership>> {
    r.0.lock().unwrap().clone()
}

#[test]
fn generations_and_member_ids_follow_the_group() {
    let cfg = KafkaConfig::default();
    let broker = DevBroker::start_with_topics(&cfg, &[(TOPIC, 4)]).expect("mock broker");
    let brokers = broker.bootstrap_servers().to_string();

    let (a, ra) = member(&brokers, "member-a");
    poll_until(&[&a], "a's first assignment", || !seen(&ra).is_empty());
    let first = seen(&ra)[0].clone().expect("a is a member");
    assert!(!first.member_id.is_empty(), "{first:?}");
    assert!(first.generation >= 1, "{first:?}");
    assert_eq!(Membership::of(&a).as_ref(), Some(&first));

    // b joins: a is revoked and assigned again, generation after
    // generation under the same member id (the mock coordinator may form
    // one generation before b's join lands), until both share one.
    let (b, rb) = member(&brokers, "member-b");
    let last = |r: &Recorder| seen(r).last().cloned().flatten();
    poll_until(
        &[&a, &b],
        "a generation with both members",
        || matches!((last(&ra), last(&rb)), (Some(x), Some(y)) if x.generation == y.generation),
    );
    let a_seen: Vec<Membership> = seen(&ra).into_iter().map(Option::unwrap).collect();
    for pair in a_seen.windows(2) {
        assert!(may_resume(Some(&pair[0]), Some(&pair[1])), "{a_seen:?}");
    }
    let shared = last(&ra).unwrap();
    let b_now = last(&rb).unwrap();
    assert_ne!(b_now.member_id, shared.member_id);

    // a leaves and joins again: a new member id, so nothing kept from
    // before may resume (b owned everything in between).
    a.unsubscribe();
    poll_until(&[&a, &b], "b alone in a later generation", || {
        last(&rb).is_some_and(|m| m.generation > shared.generation)
    });
    a.subscribe(&[TOPIC]).unwrap();
    let before = seen(&ra).len();
    poll_until(&[&a, &b], "a's return", || seen(&ra).len() > before);
    let back = last(&ra).expect("a is a member again");
    assert_ne!(back.member_id, shared.member_id);
    assert!(
        back.generation > shared.generation + 1,
        "{back:?} after {shared:?}"
    );
    assert!(!may_resume(Some(&shared), Some(&back)));
}
