//! `scale partitions`: real `herald dispatch` processes sharing an events
//! topic of P partitions.
//!
//! `herald mock-broker` creates Herald's topics with P partitions each (the
//! events, retry, dead-letter and attempts topics: 4 × P), then `--members`
//! dispatchers start at the same moment. Each one's `/metrics` is read every
//! 100 ms. Reported, per run:
//! - the time from starting the dispatchers until the first one owns a
//!   partition, and until every one owns some and together they own all P
//!   (`herald_partitions_assigned`);
//! - each dispatcher's RSS and peak RSS then, its CPU over the next
//!   `--settle-secs` with no traffic (librdkafka's per-partition statistics
//!   and fetches are what is left), and the size of its `/metrics`;
//! - the broker's RSS.
//!
//! The mock broker makes a joining member wait until `session.timeout.ms`
//! runs out, so compare runs with different P at the same
//! `--session-timeout-ms` rather than reading the absolute times.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::procs::{self, median, metric_sum, Child, Sample};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Partitions of the events topic (and of the retry, dead-letter and
    /// attempts topics).
    #[arg(long, default_value_t = 10_000)]
    partitions: usize,
    /// Dispatchers in the group.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Runs (each with a fresh broker); the report shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Idle seconds measured after the assignment settled.
    #[arg(long, default_value_t = 30)]
    settle_secs: u64,
    /// `kafka.session_timeout_ms` of the dispatchers.
    #[arg(long, default_value_t = 6_000)]
    session_timeout_ms: u64,
    /// Give up waiting for the assignment after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// The `herald` binary (default: target/release/herald).
    #[arg(long)]
    herald: Option<PathBuf>,
    /// Write the figures here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
struct Run {
    first_assigned_secs: f64,
    all_assigned_secs: f64,
    assigned: Vec<f64>,
    rebalances: Vec<f64>,
    dispatchers: Vec<Sample>,
    idle_cpu_pct: Vec<f64>,
    metrics_bytes: Vec<usize>,
    metrics_series: Vec<usize>,
    broker: Sample,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let exe = procs::herald_exe(a.herald.clone())?;
    let mut runs = Vec::new();
    for r in 1..=a.runs {
        let run = one(&a, &exe)?;
        eprintln!(
            "run {r}: first partition after {:.2} s, all {} after {:.2} s; shares {:?}; \
             RSS {:?} MiB; idle CPU {:?} % of a core; /metrics {:?} bytes; broker RSS {:.0} MiB",
            run.first_assigned_secs,
            a.partitions,
            run.all_assigned_secs,
            run.assigned,
            run.dispatchers
                .iter()
                .map(|s| s.rss_mib.round())
                .collect::<Vec<_>>(),
            run.idle_cpu_pct
                .iter()
                .map(|c| (c * 10.0).round() / 10.0)
                .collect::<Vec<_>>(),
            run.metrics_bytes,
            run.broker.rss_mib
        );
        runs.push(run);
    }
    let m = |f: &dyn Fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "{} partitions, {} dispatchers, session timeout {} ms ({} runs, medians): \
         first partition {:.2} s, all assigned {:.2} s; per dispatcher RSS {:.1} MiB \
         (peak {:.1}), idle CPU {:.1} % of a core, /metrics {:.0} bytes in {:.0} series; \
         broker RSS {:.0} MiB",
        a.partitions,
        a.members,
        a.session_timeout_ms,
        runs.len(),
        m(&|r| r.first_assigned_secs),
        m(&|r| r.all_assigned_secs),
        m(&|r| mean(&r.dispatchers.iter().map(|s| s.rss_mib).collect::<Vec<_>>())),
        m(&|r| mean(
            &r.dispatchers
                .iter()
                .map(|s| s.peak_rss_mib)
                .collect::<Vec<_>>()
        )),
        m(&|r| mean(&r.idle_cpu_pct)),
        m(&|r| mean(
            &r.metrics_bytes
                .iter()
                .map(|&b| b as f64)
                .collect::<Vec<_>>()
        )),
        m(&|r| mean(
            &r.metrics_series
                .iter()
                .map(|&b| b as f64)
                .collect::<Vec<_>>()
        )),
        m(&|r| r.broker.rss_mib),
    );
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&runs)?)?;
    }
    Ok(())
}

fn one(a: &Args, exe: &PathBuf) -> anyhow::Result<Run> {
    let dir = procs::run_dir("partitions")?;
    let config = procs::node_config(
        &dir,
        &format!(
            "events_partitions = {}\nsession_timeout_ms = {}",
            a.partitions, a.session_timeout_ms
        ),
    )?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["mock-broker", "--log-level", "warn", "--config"])
        .arg(&config);
    let broker = Child::spawn("mock-broker", cmd, &dir)?;
    let line = broker.wait_line("bootstrap:", Duration::from_secs(120))?;
    let bootstrap = line
        .split_whitespace()
        .last()
        .context("bootstrap line")?
        .to_owned();

    let ports: Vec<u16> = (0..a.members)
        .map(|_| procs::free_port())
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    let nodes: Vec<Child> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let id = format!("scale-d{i}");
            let mut cmd = std::process::Command::new(exe);
            cmd.args(["dispatch", "--brokers", &bootstrap, "--node-id", &id])
                .args(["--http-listen", &format!("127.0.0.1:{port}")])
                .args(["--log-format", "json", "--log-level", "warn"])
                .arg("--config")
                .arg(&config);
            Child::spawn(&id, cmd, &dir)
        })
        .collect::<anyhow::Result<_>>()?;

    let deadline = started + Duration::from_secs(a.timeout_secs);
    let mut first = None;
    let all = loop {
        let assigned: Vec<f64> = ports
            .iter()
            .map(|&p| {
                procs::scrape(p)
                    .map(|t| metric_sum(&t, "herald_partitions_assigned"))
                    .unwrap_or(0.0)
            })
            .collect();
        let sum: f64 = assigned.iter().sum();
        if first.is_none() && sum > 0.0 {
            first = Some(started.elapsed());
        }
        if sum as usize == a.partitions && assigned.iter().all(|&n| n > 0.0) {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            bail!(
                "after {}s the dispatchers own {assigned:?} of {} partitions (logs in {})",
                a.timeout_secs,
                a.partitions,
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    let before: Vec<Sample> = nodes
        .iter()
        .map(Child::sample)
        .collect::<anyhow::Result<_>>()?;
    std::thread::sleep(Duration::from_secs(a.settle_secs));
    let after: Vec<Sample> = nodes
        .iter()
        .map(Child::sample)
        .collect::<anyhow::Result<_>>()?;
    let mut assigned = Vec::new();
    let mut rebalances = Vec::new();
    let mut metrics_bytes = Vec::new();
    let mut metrics_series = Vec::new();
    for &p in &ports {
        let text = procs::scrape(p)?;
        assigned.push(metric_sum(&text, "herald_partitions_assigned"));
        rebalances.push(metric_sum(&text, "herald_rebalances_total"));
        metrics_bytes.push(text.len());
        metrics_series.push(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .count(),
        );
    }
    let idle_cpu_pct = before
        .iter()
        .zip(&after)
        .map(|(b, a2)| (a2.cpu_secs - b.cpu_secs) / a.settle_secs as f64 * 100.0)
        .collect();
    let run = Run {
        first_assigned_secs: first.unwrap_or(all).as_secs_f64(),
        all_assigned_secs: all.as_secs_f64(),
        assigned,
        rebalances,
        dispatchers: after,
        idle_cpu_pct,
        metrics_bytes,
        metrics_series,
        broker: broker.sample()?,
    };
    drop(nodes);
    drop(broker);
    procs::remove_dir_on_success(&dir);
    Ok(run)
}
