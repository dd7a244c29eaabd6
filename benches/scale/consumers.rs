//! `scale consumers`: plain librdkafka consumers (no Herald) in one group on
//! an in-process mock cluster, to separate the group protocol's cost from
//! the dispatcher's. `--topics` topics of P partitions each (Herald
//! subscribes to two: events and retry), `--members` consumers with
//! `--assignor` (`range`, Herald's, or `cooperative-sticky`), each polling
//! on its own thread. Reported: time from subscribing until every member
//! owns partitions and together they own all of them, and the process's
//! RSS growth per consumer (it includes the mock broker's group state).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;

use crate::procs::{self, median};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Partitions per topic.
    #[arg(long, default_value_t = 10_000)]
    partitions: i32,
    /// Topics the group subscribes to (Herald: 2).
    #[arg(long, default_value_t = 2)]
    topics: usize,
    /// Consumers in the group.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// `partition.assignment.strategy`.
    #[arg(long, default_value = "cooperative-sticky")]
    assignor: String,
    /// `session.timeout.ms` (the mock broker makes joiners wait for it).
    #[arg(long, default_value_t = 6_000)]
    session_timeout_ms: u64,
    /// Runs; the report shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut secs = Vec::new();
    let mut per_consumer = Vec::new();
    for r in 1..=a.runs {
        let (s, mib) = one(&a)?;
        eprintln!("run {r}: all assigned after {s:.2} s; RSS growth {mib:.1} MiB per consumer");
        secs.push(s);
        per_consumer.push(mib);
    }
    println!(
        "{} × {} partitions, {} consumers, {} ({} runs, medians): all assigned after {:.2} s, \
         {:.1} MiB RSS per consumer",
        a.topics,
        a.partitions,
        a.members,
        a.assignor,
        a.runs,
        median(&secs),
        median(&per_consumer)
    );
    Ok(())
}

fn one(a: &Args) -> anyhow::Result<(f64, f64)> {
    let cluster = MockCluster::new(1)?;
    let topics: Vec<String> = (0..a.topics).map(|t| format!("scale-{t}")).collect();
    for t in &topics {
        cluster.create_topic(t, a.partitions, 1)?;
    }
    let bootstrap = cluster.bootstrap_servers();
    let me = std::process::id();
    let rss_before = procs::sample(me)?.rss_mib;
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<Arc<AtomicUsize>> = (0..a.members).map(|_| Arc::default()).collect();
    let started = Instant::now();
    let threads: Vec<_> = counts
        .iter()
        .map(|count| {
            let (count, stop, topics) = (count.clone(), stop.clone(), topics.clone());
            let mut cfg = ClientConfig::new();
            cfg.set("bootstrap.servers", &bootstrap)
                .set("group.id", format!("scale-{me}"))
                .set("partition.assignment.strategy", &a.assignor)
                .set("session.timeout.ms", a.session_timeout_ms.to_string())
                .set(
                    "heartbeat.interval.ms",
                    (a.session_timeout_ms / 4).to_string(),
                )
                .set("enable.auto.commit", "false");
            std::thread::spawn(move || -> anyhow::Result<()> {
                let c: BaseConsumer = cfg.create()?;
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                c.subscribe(&names)?;
                while !stop.load(Relaxed) {
                    let _ = c.poll(Duration::from_millis(50));
                    count.store(c.assignment()?.count(), Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    let total = a.partitions as usize * a.topics;
    let deadline = started + Duration::from_secs(600);
    let secs = loop {
        let n: Vec<usize> = counts.iter().map(|c| c.load(Relaxed)).collect();
        if n.iter().sum::<usize>() == total && n.iter().all(|&x| x > 0) {
            break started.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            stop.store(true, Relaxed);
            bail!("members own {n:?} of {total} partitions after 600 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_secs(5));
    let rss_after = procs::sample(me)?.rss_mib;
    stop.store(true, Relaxed);
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    }
    drop(cluster);
    Ok((secs, (rss_after - rss_before) / a.members as f64))
}
