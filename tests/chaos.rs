//! No loss and per-endpoint order across `kill -9`, restarts and rebalances.
//!
//! Real processes, through the shared fleet harness (`support::fleet`): a
//! mock Kafka broker (`herald-it-node mock-broker`) and two dispatchers
//! (`herald-it-node dispatch`, one consumer group); ingest runs in
//! the test process (gRPC `PublishBatch`), as does the recording receiver.
//! While 20,000+ events for 120 endpoints are published and delivered, a
//! dispatcher is killed with SIGKILL and restarted at seeded points; some
//! endpoints fail everything for the first part of the run, and a few are
//! created mid-run through the ingest node and published to at once.
//! `HERALD_IT_CHAOS=full` runs the long variant by hand: 3 dispatchers, 500
//! endpoints, 50,000 events, 6 kills. Afterwards every
//! acknowledged event must have been answered 2xx by the receiver or be in
//! the dead-letter topic, no ordered endpoint may have been sent an event
//! before its predecessor was delivered (or dead-lettered), and the number of
//! duplicate deliveries is printed. Then both dispatchers are restarted one
//! after the other with SIGTERM while more events are published: each must
//! drain and exit 0, every event is delivered in order, and the re-sends of
//! that phase are printed.
//!
//! `HERALD_IT_CHAOS_BROKER=tansu` runs it on the persistent standalone
//! broker (tansu, found as `tests/fleet.rs` finds it) instead of the mock
//! cluster's process, where commits are not refused during a rebalance.
//!
//! Progress goes to stderr; the config and every child's log are in the run
//! directory printed at the start (kept after a pass with `HERALD_IT_KEEP=1`).

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::node::Roles;
use herald_proto::v1 as pb;
use herald_testkit::{Reply, TestReceiver};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::dlq::DlqTail;
use support::fleet::{BrokerKind, Fleet};
use support::ledger::{self, Ledger};
use support::procs;
use support::tansu::TansuBroker;
use support::{publish_in_order, TestNode};

const PARTITIONS: i32 = 4;
const BATCH: usize = 500;
/// Events per endpoint published during the SIGTERM rolling restart.
const ROLL_PER_ENDPOINT: usize = 20;
/// Failure guard of the whole run's waits.
const RUN_GUARD: Duration = Duration::from_secs(240);

/// The broker process: the mock cluster, or tansu with
/// `HERALD_IT_CHAOS_BROKER=tansu`.
fn broker_kind() -> BrokerKind {
    match std::env::var("HERALD_IT_CHAOS_BROKER").as_deref() {
        Ok("tansu") => BrokerKind::Tansu(TansuBroker::binary().expect(
            "HERALD_IT_CHAOS_BROKER=tansu needs the tansu binary (HERALD_TANSU, or the one .ci/run caches)",
        )),
        Ok("mock") | Err(_) => BrokerKind::Mock,
        Ok(other) => panic!("HERALD_IT_CHAOS_BROKER={other}: expected tansu or mock"),
    }
}

/// Retries up to 250 ms wait in memory, longer ones in the retry topic; the
/// schedule (200 s of 1 s retries after the first few) outlasts the outage,
/// so nothing should be dead-lettered, but the test accepts dead letters.
fn config_toml() -> String {
    let tail = vec!["\"1s\""; 200].join(", ");
    // HERALD_IT_STATIC=1 runs the dispatchers as static members (stable
    // range assignment), to compare duplicate figures.
    let static_membership = std::env::var_os("HERALD_IT_STATIC").is_some();
    let dispatch = format!(
        "max_buffered_per_lane = 200\ndrain_timeout_ms = 2000\nstatic_membership = {static_membership}"
    );
    procs::config_text(
        PARTITIONS,
        &[
            ("dispatch", &dispatch),
            // Outage endpoints open their circuit; it probes every 2 s.
            ("endpoint_health", "cool_down = \"2s\""),
            (
                "retry",
                &format!("schedule = [\"20ms\", \"50ms\", \"100ms\", \"250ms\", \"500ms\", {tail}]\nin_memory_max = \"250ms\""),
            ),
        ],
    )
}

/// How big a run is: the CI variant by default; `HERALD_IT_CHAOS=full` is the
/// long one (3 dispatchers, 500 endpoints, 50,000 events, 6 kills), run by hand.
#[derive(Debug, Clone, Copy)]
struct Scale {
    dispatchers: usize,
    endpoints: usize,
    per_endpoint: usize,
    kills: usize,
    /// The last `late` endpoints are created mid-run, through the ingest
    /// node, and published to at once (the dispatchers' registries may lag).
    late: usize,
}

impl Scale {
    fn from_env() -> Self {
        match std::env::var("HERALD_IT_CHAOS").as_deref() {
            Ok("full") => Scale {
                dispatchers: 3,
                endpoints: 500,
                per_endpoint: 100,
                kills: 6,
                late: 25,
            },
            _ => Scale {
                dispatchers: 2,
                endpoints: 120,
                per_endpoint: 170,
                kills: 4,
                late: 6,
            },
        }
    }

    fn is_late(&self, i: usize) -> bool {
        i >= self.endpoints - self.late
    }

    /// A late endpoint's first event has this sequence number.
    fn late_from(&self) -> usize {
        self.per_endpoint / 3
    }
}

/// Order violations of every ordered endpoint (dead-lettered ids excused).
fn order_violations(
    scale: &Scale,
    entries: &[ledger::Entry],
    order: &BTreeMap<String, Vec<String>>,
    dead: &HashSet<String>,
) -> Vec<String> {
    (0..scale.endpoints)
        .filter(|&i| !unordered(i))
        .flat_map(|i| {
            let ep = ep_id(i);
            ledger::order_violations(entries, &format!("/{ep}"), &order[&ep], dead)
        })
        .collect()
}

fn ep_id(i: usize) -> String {
    format!("c-{i:03}")
}

/// Every sixth endpoint fails everything while the outage lasts.
fn in_outage(i: usize) -> bool {
    i % 6 == 1
}

/// A few endpoints are unordered (order is not checked for them).
fn unordered(i: usize) -> bool {
    i % 15 == 7
}

/// Duplicate deliveries (a 2xx for an id already answered 2xx) by where
/// they landed in the ledger: before `marks[0]`, between `marks[k-1]` and
/// `marks[k]`, ... (one more window than marks).
fn duplicates_per_window(entries: &[ledger::Entry], marks: &[usize]) -> Vec<usize> {
    let mut seen = HashSet::new();
    let mut windows = vec![0; marks.len() + 1];
    for (i, e) in entries.iter().enumerate() {
        if e.ok() && !seen.insert(e.id.as_str()) {
            windows[marks.partition_point(|&m| m <= i)] += 1;
        }
    }
    windows
}

fn dispatcher_name(i: usize) -> String {
    format!("dispatch-{}", (b'a' + i as u8) as char)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_loss_across_sigkill_and_rebalance() {
    let started = Instant::now();
    let seed = std::env::var("HERALD_IT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xc4a05u64);
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = procs::run_dir("chaos");
    eprintln!(
        "seed {seed} (HERALD_IT_SEED); run directory (config, child logs): {}",
        dir.display()
    );
    // The broker and the dispatchers are processes (the shared fleet
    // harness); ingest runs in the test process.
    let kind = broker_kind();
    // tansu answers more slowly under this load: give every wait longer.
    let guard = match kind {
        BrokerKind::Tansu(_) => RUN_GUARD * 3,
        BrokerKind::Mock => RUN_GUARD,
    };
    let mut fleet =
        tokio::task::block_in_place(|| Fleet::start(kind, &dir, &config_toml(), 0, 0, guard));
    let brokers = fleet.broker.bootstrap().to_string();
    let cfg = procs::load_config(&fleet.config, &brokers, "chaos-ingest");
    let ingest = TestNode::start_with(
        cfg,
        Roles {
            ingest: true,
            dispatch: false,
        },
    )
    .await;

    // The receiver: 2xx, except for outage endpoints until the outage ends.
    let outage = Arc::new(AtomicBool::new(true));
    let ledger = Ledger::new();
    let policy = {
        let outage = outage.clone();
        ledger.policy(move |r, _| {
            let i: usize = r.path.trim_start_matches("/c-").parse().unwrap_or(0);
            if in_outage(i) && outage.load(Ordering::SeqCst) {
                Reply::status(503)
            } else {
                Reply::status(200)
            }
        })
    };
    let receiver = TestReceiver::with_policy(policy).await.unwrap();
    let scale = Scale::from_env();
    eprintln!("{scale:?}");
    let create = |i: usize| {
        let mut endpoints = ingest.endpoints.clone();
        let url = receiver.url_for(&ep_id(i));
        async move {
            endpoints
                .create_endpoint(pb::CreateEndpointRequest {
                    id: ep_id(i),
                    url,
                    ordered: Some(!unordered(i)),
                    max_in_flight: if unordered(i) { 4 } else { 0 },
                    ..Default::default()
                })
                .await
                .expect("create endpoint");
        }
    };
    for i in (0..scale.endpoints).filter(|&i| !scale.is_late(i)) {
        create(i).await;
    }
    let dlq = DlqTail::start(&brokers, "herald.dlq", PARTITIONS, ledger.clone());

    // First dispatcher; the second joins under load (a rebalance between two
    // live dispatchers).
    tokio::task::block_in_place(|| {
        fleet.add_node("dispatch");
        fleet.wait_assigned(0);
    });
    eprintln!(
        "[{:>5.1}s] {} assigned partitions",
        started.elapsed().as_secs_f64(),
        dispatcher_name(0)
    );

    // Publish batches of (seq, endpoint), one after the other, so each
    // endpoint's events are in order. The second dispatcher joins under load
    // (a rebalance between two live dispatchers); kills happen before seeded
    // batches, while earlier ones are being delivered, and the outage ends
    // after the second kill.
    let items: Vec<(String, String)> = (0..scale.per_endpoint)
        .flat_map(|seq| {
            (0..scale.endpoints)
                .filter(move |&i| seq >= scale.late_from() || !scale.is_late(i))
                .map(move |i| (ep_id(i), format!(r#"{{"endpoint":{i},"seq":{seq}}}"#)))
        })
        .collect();
    let late_ids: HashSet<String> = (0..scale.endpoints)
        .filter(|&i| scale.is_late(i))
        .map(ep_id)
        .collect();
    let first_late_batch = items
        .iter()
        .position(|(ep, _)| late_ids.contains(ep))
        .map(|i| i / BATCH);
    let total = items.len();
    let batches: Vec<&[(String, String)]> = items.chunks(BATCH).collect();
    // Kill plan: `scale.kills` batches spread over the run, victims in turn from
    // a seeded first one, each killed once a seeded share of its batch has
    // been delivered (so deliveries are in flight).
    let kills: BTreeMap<usize, (usize, f64)> = {
        let span = (batches.len() - 5) / scale.kills;
        let first = rng.random_range(0..scale.dispatchers);
        (0..scale.kills)
            .map(|k| {
                let at = 3 + k * span + rng.random_range(0..span.saturating_sub(4).max(1));
                (
                    at,
                    ((first + k) % scale.dispatchers, rng.random_range(0.1..0.5)),
                )
            })
            .collect()
    };
    eprintln!(
        "{} batches of {BATCH}; kills during batches {kills:?} (batch: (dispatcher, share delivered))",
        batches.len()
    );
    let mut client = ingest.events.clone();
    let mut published = Vec::with_capacity(total);
    let mut kill_no = 0;
    // Ledger length at each kill: re-sends after kill k land between mark k
    // and mark k+1.
    let mut kill_marks = Vec::new();
    let mut counter = ledger::Delivered::default();
    for (b, batch) in batches.iter().enumerate() {
        if b == 1 {
            tokio::task::block_in_place(|| {
                for _ in 1..scale.dispatchers {
                    fleet.add_node("dispatch");
                }
            });
        }
        if Some(b) == first_late_batch {
            // Created through the ingest node and published to at once.
            for i in (0..scale.endpoints).filter(|&i| scale.is_late(i)) {
                create(i).await;
            }
            eprintln!(
                "[{:>5.1}s] {} endpoints created and published to at once",
                started.elapsed().as_secs_f64(),
                scale.late
            );
        }
        let Some(&(victim, share)) = kills.get(&b) else {
            published.extend(publish_in_order(&mut client, batch, BATCH).await);
            continue;
        };
        // Kill only members that took part: wait for its assignment first.
        tokio::task::block_in_place(|| fleet.wait_assigned(victim));
        let before = counter.count(&ledger.entries());
        published.extend(publish_in_order(&mut client, batch, BATCH).await);
        let want = before + (share * BATCH as f64) as usize;
        ledger
            .wait_until(|e| counter.count(e) >= want, guard)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "before kill {kill_no}: {e}; {:#?}",
                    ledger::summary(&ledger.entries())
                )
            });
        let pid = fleet.dispatch[victim].proc.as_ref().expect("running").pid();
        fleet.kill9("dispatch", victim);
        kill_marks.push(ledger.entries().len());
        eprintln!(
            "[{:>5.1}s] kill -9 {} (pid {pid}) during batch {b}: {} published, {} delivered",
            started.elapsed().as_secs_f64(),
            dispatcher_name(victim),
            published.len(),
            counter.count(&ledger.entries()),
        );
        tokio::task::block_in_place(|| fleet.start_node("dispatch", victim));
        kill_no += 1;
        if kill_no == 2 {
            outage.store(false, Ordering::SeqCst);
            eprintln!("[{:>5.1}s] outage over", started.elapsed().as_secs_f64());
        }
    }
    outage.store(false, Ordering::SeqCst);
    tokio::task::block_in_place(|| {
        for i in 0..scale.dispatchers {
            fleet.wait_assigned(i);
        }
    });
    assert_eq!(published.len(), total);
    eprintln!(
        "[{:>5.1}s] all {total} events acknowledged",
        started.elapsed().as_secs_f64()
    );
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((ep, _), r) in items.iter().zip(&published) {
        order
            .entry(ep.clone())
            .or_default()
            .push(r.event_id.clone());
    }
    let acked: HashSet<&str> = published.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(acked.len(), total, "distinct event ids");

    // Wait until every acknowledged event was delivered or dead-lettered.
    let support::dlq::Settled {
        waited,
        entries,
        dead,
        lost,
    } = support::dlq::settle(&ledger, &dlq, &acked, guard).await;
    let delivered = ledger::delivered(&entries);
    if let Err(e) = waited {
        let mut per_ep: BTreeMap<&str, usize> = BTreeMap::new();
        let ep_of: HashMap<&str, &str> = order
            .iter()
            .flat_map(|(ep, ids)| ids.iter().map(move |id| (id.as_str(), ep.as_str())))
            .collect();
        for id in &lost {
            *per_ep.entry(ep_of[id.as_str()]).or_default() += 1;
        }
        panic!(
            "{e}: {} of {total} acknowledged events were neither delivered nor dead-lettered; per endpoint: {per_ep:?}; logs in {}",
            lost.len(),
            dir.display()
        );
    }
    assert!(lost.is_empty());
    eprintln!(
        "[{:>5.1}s] every event delivered ({}) or dead-lettered ({})",
        started.elapsed().as_secs_f64(),
        delivered.len(),
        dead.len()
    );

    // Order per ordered endpoint, excusing dead-lettered events only.
    let violations = order_violations(&scale, &entries, &order, &dead);
    assert!(
        violations.is_empty(),
        "{} order violations (logs in {}), first ones: {:#?}",
        violations.len(),
        dir.display(),
        &violations[..violations.len().min(10)]
    );
    assert!(
        entries.iter().all(|e| acked.contains(e.id.as_str())),
        "the receiver got an id nobody published"
    );

    let ok_answers = entries.iter().filter(|e| e.ok()).count();
    let duplicates = ok_answers - delivered.len();
    eprintln!(
        "[{:>5.1}s] {total} events, {} requests, {} failed answers, {duplicates} duplicate deliveries (2xx beyond the first per webhook-id), {} dead letters, {} kills",
        started.elapsed().as_secs_f64(),
        entries.len(),
        entries.len() - ok_answers,
        dead.len(),
        scale.kills
    );
    let windows = duplicates_per_window(&entries, &kill_marks);
    eprintln!(
        "duplicates per window: before the first kill (joins) {}, after each kill {:?}",
        windows[0],
        &windows[1..]
    );
    assert_eq!(windows.iter().sum::<usize>(), duplicates);
    // Rolling restart: while more events are published, each dispatcher in
    // turn gets SIGTERM (it drains, commits, leaves the group and exits 0)
    // and is started again. A graceful stop re-sends only what was in flight
    // at the drain deadline; the re-sends of this phase are printed.
    let mark = ledger.entries().len();
    let roll_items: Vec<(String, String)> = (scale.per_endpoint
        ..scale.per_endpoint + ROLL_PER_ENDPOINT)
        .flat_map(|seq| {
            (0..scale.endpoints)
                .map(move |i| (ep_id(i), format!(r#"{{"endpoint":{i},"seq":{seq}}}"#)))
        })
        .collect();
    let mut roll_published = Vec::with_capacity(roll_items.len());
    for (b, batch) in roll_items.chunks(BATCH).enumerate() {
        if b % 2 == 1 && b / 2 < fleet.dispatch.len() {
            let victim = b / 2;
            tokio::task::block_in_place(|| fleet.terminate("dispatch", victim));
            eprintln!(
                "[{:>5.1}s] SIGTERM {}: drained and exited 0",
                started.elapsed().as_secs_f64(),
                dispatcher_name(victim)
            );
            tokio::task::block_in_place(|| {
                fleet.start_node("dispatch", victim);
                fleet.wait_assigned(victim);
            });
        }
        roll_published.extend(publish_in_order(&mut client, batch, BATCH).await);
    }
    let mut waiting: HashSet<String> = roll_published.iter().map(|r| r.event_id.clone()).collect();
    let mut seen = mark;
    ledger
        .wait_until(
            |entries| {
                for e in &entries[seen..] {
                    if e.ok() {
                        waiting.remove(&e.id);
                    }
                }
                seen = entries.len();
                waiting.is_empty()
            },
            guard,
        )
        .await
        .unwrap_or_else(|e| panic!("after the rolling restart: {e}; logs in {}", dir.display()));
    let entries = ledger.entries();
    let mut delivered_so_far: HashSet<&str> = delivered.iter().copied().collect();
    let mut rolling_resends = 0;
    for e in entries[mark..].iter().filter(|e| e.ok()) {
        if !delivered_so_far.insert(e.id.as_str()) {
            rolling_resends += 1;
        }
    }
    for ((ep, _), r) in roll_items.iter().zip(&roll_published) {
        order
            .get_mut(ep)
            .expect("endpoint")
            .push(r.event_id.clone());
    }
    let violations = order_violations(&scale, &entries, &order, &dead);
    assert!(
        violations.is_empty(),
        "{} order violations after the rolling restart, first ones: {:#?}",
        violations.len(),
        &violations[..violations.len().min(10)]
    );
    eprintln!(
        "[{:>5.1}s] rolling restart: {} more events, all delivered in order; {rolling_resends} re-sent deliveries during it",
        started.elapsed().as_secs_f64(),
        roll_published.len()
    );

    for (i, node) in fleet.dispatch.iter().enumerate() {
        let Some(addr) = node.http.clone() else {
            continue;
        };
        if let Ok(a) = herald_testkit::http::get(&format!("http://{addr}/metrics")).await {
            let text = a.text();
            let m = |name: &str| support::metric_sum(&text, name).unwrap_or(0.0);
            eprintln!(
                "{} (last incarnation): delivered {}, retry writes {}, dead letters {}, rebalance callbacks {}, commits {}",
                dispatcher_name(i),
                m("herald_events_delivered_total"),
                m("herald_retry_writes_total"),
                m("herald_dead_letters_total"),
                m("herald_rebalances_total"),
                m("herald_offset_commits_total"),
            );
        }
    }
    drop(dlq);
    ingest.shutdown().await;
    drop(fleet);
    // Passed: the logs are not needed (unless HERALD_IT_KEEP is set).
    if std::env::var_os("HERALD_IT_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn duplicates_are_attributed_to_the_window_they_land_in() {
    let e = |id: &str, status: u16| ledger::Entry {
        path: "/ep".into(),
        id: id.into(),
        status,
    };
    let entries = [
        e("a", 200),
        e("a", 200), // window 0
        e("b", 500),
        e("b", 200), // first 2xx of b: not a duplicate
        e("a", 200), // window 1 (index 4 >= mark 3)
        e("b", 200), // window 2 (index 5 >= mark 5)
    ];
    assert_eq!(duplicates_per_window(&entries, &[3, 5]), vec![1, 1, 1]);
    assert_eq!(duplicates_per_window(&entries, &[]), vec![3]);
}
