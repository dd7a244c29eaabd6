//! One run of one case, start to finish: the raw baseline, Herald started,
//! endpoints registered, events published while the receivers keep the
//! ledger, then the figures read off the ledger, the acks and `/proc`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use herald_signing::Secret;
use indicatif::{ProgressBar, ProgressStyle};

use crate::publish::{self, Acks, Registration};
use crate::receiver::Receivers;
use crate::report::{Percentiles, RunFigures};
use crate::scenario::{Case, TargetKind};
use crate::target::{Herald, Launcher};
use crate::workload::{unix_nanos, Workload};
use crate::{baseline, target};

/// How long the `idle` scenario lets a node settle before measuring.
const IDLE_SETTLE: Duration = Duration::from_secs(3);

/// What every run shares.
#[derive(Debug, Clone)]
pub struct Context {
    /// Starts Herald's processes.
    pub launcher: Launcher,
    /// A running Herald instead (`--server`, `--pid`).
    pub external: Option<(String, Option<u32>)>,
    /// Receiver ports.
    pub ports: usize,
    /// Body size.
    pub payload_bytes: usize,
    /// Measure the raw baseline.
    pub baseline: bool,
    /// Requests the baseline sends.
    pub baseline_requests: u64,
    /// Baseline concurrency (None: one per healthy endpoint).
    pub baseline_concurrency: Option<usize>,
    /// Give up waiting for deliveries after this long.
    pub timeout: Duration,
    /// Register endpoints unordered.
    pub unordered: bool,
    /// Receivers answer after this long (a stand-in for network distance).
    pub receiver_delay: Duration,
    /// Show a progress bar.
    pub progress: bool,
}

/// Runs `case` once.
pub async fn run_case(ctx: &Context, case: &Case, run: usize) -> anyhow::Result<RunFigures> {
    let secret = Secret::generate();
    let w = Workload {
        prefix: format!("bench{}-{}-{run}", std::process::id(), slug(&case.name)),
        endpoints: case.endpoints.max(1),
        payload_bytes: ctx.payload_bytes,
        dead_every: case.dead_every,
        fanout: case.fanout.max(1),
    };
    // Endpoints that receive traffic: the baseline posts to as many.
    let healthy = w.receiving();
    let mut fig = RunFigures {
        scenario: case.name.clone(),
        run,
        ..Default::default()
    };

    if ctx.baseline && case.deliver {
        let rx = Receivers::start(ctx.ports, w.endpoints, &secret, 0, ctx.receiver_delay).await?;
        let requests = ctx.baseline_requests;
        let conc = ctx.baseline_concurrency.unwrap_or(healthy).max(1);
        let b = baseline::run(
            &rx,
            healthy.max(1),
            requests,
            ctx.payload_bytes,
            conc,
            &secret,
        )
        .await?;
        rx.stop();
        fig.raw_rate = Some(b.per_second);
        // The yardstick for Herald's CPU per 1,000 deliveries: the plain
        // client's own CPU for the same requests.
        fig.extra.insert(
            "raw_client_cpu_ms_per_1k".into(),
            b.client_cpu_secs * 1e6 / b.requests.max(1) as f64,
        );
    }

    let rx = Receivers::start(
        ctx.ports,
        w.endpoints,
        &secret,
        case.fail_per_mille,
        ctx.receiver_delay,
    )
    .await?;
    let dead_url = dead_url().await?;
    let herald = start_herald(ctx, case).await?;
    let ch = publish::connect(&herald.grpc).await?;
    let reg = Registration {
        secret: secret.to_whsec(),
        ordered: !ctx.unordered,
        concurrency: 64,
        retry_schedule_ms: case.retry_schedule_ms.clone(),
        batch_max_events: case.batch_max_events,
    };
    let url = |i: usize| {
        if case.refuse_all || (case.dead_every.is_some() && i == crate::workload::DEAD_ENDPOINT) {
            dead_url.clone()
        } else {
            rx.url_for(i)
        }
    };
    let took = publish::register(&ch, &w, 0..case.registered.max(w.endpoints), &reg, url).await?;
    if case.registered > w.endpoints {
        fig.extra
            .insert("endpoints_registered".into(), case.registered as f64);
        let per_sec = case.registered as f64 / took.as_secs_f64().max(1e-9);
        fig.extra.insert("endpoint_creates_per_sec".into(), per_sec);
        if let Some(bootstrap) = &herald.bootstrap {
            let (node, load, loaded) = ctx.launcher.registry_node(bootstrap)?;
            fig.extra
                .insert("registry_load_secs".into(), load.as_secs_f64());
            // What the new node found: fewer than registered means the
            // broker dropped registry records (the embedded broker keeps
            // about 5 MiB per partition, docs/topics.md).
            if let Some(n) = loaded {
                fig.extra
                    .insert("registry_endpoints_loaded".into(), n as f64);
            }
            let s = node.sample()?;
            fig.extra
                .insert("registry_node_peak_rss_mib".into(), s.peak_rss_mib);
        }
    }

    if let Some(m) = &herald.metrics {
        target::wait_ready(m, w.endpoints).await?;
    }
    let idle = case.idle.filter(|_| !case.refuse_all);
    if idle.is_some() {
        // Idle means settled: the window opens once the setup's own
        // traffic (endpoint creates, the group's join) has died down.
        tokio::time::sleep(IDLE_SETTLE).await;
        fig.extra
            .insert("idle_settle_secs".into(), IDLE_SETTLE.as_secs_f64());
    }
    let before = herald.sample()?;
    if let Some(quiet) = idle {
        tokio::time::sleep(quiet).await;
        let cpu = cpu_since(&herald, &before)?;
        fig.herald_cpu_secs = cpu;
        fig.extra.insert(
            "idle_cpu_pct_of_core".into(),
            cpu / quiet.as_secs_f64() * 100.0,
        );
        fill_rss(&mut fig, &herald)?;
        rx.stop();
        return Ok(fig);
    }

    let acks = Arc::new(Acks::default());
    let bar = progress_bar(ctx.progress, case, run);
    let ticker = {
        let (bar, acks, ledger, deliver) =
            (bar.clone(), acks.clone(), rx.ledger.clone(), case.deliver);
        tokio::spawn(async move {
            loop {
                let n = if deliver {
                    ledger.delivered.load(Relaxed)
                } else {
                    acks.accepted.load(Relaxed)
                };
                bar.set_position(n);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let start_ns = unix_nanos();
    let started = Instant::now();
    let published = publish::publish(
        &herald.grpc,
        &w,
        case.publishers,
        case.events,
        case.pace,
        acks.clone(),
    )
    .await;
    let publish_secs = started.elapsed().as_secs_f64();
    let result = published.and(if case.deliver {
        wait_delivered(&rx, &acks, started, ctx.timeout).await
    } else {
        Ok(())
    });
    ticker.abort();
    bar.finish_and_clear();
    result?;
    if let Some(hold) = case.idle.filter(|_| case.refuse_all) {
        // Every attempt fails: let the node retry, back off and open
        // circuits for a while, then read its memory.
        tokio::time::sleep(hold).await;
        fig.extra
            .insert("failing_endpoints".into(), w.endpoints as f64);
    }

    // One sample of every process: the total and each role's share agree.
    let roles = cpu_by_role(&herald, &before)?;
    let cpu: f64 = roles.iter().map(|(_, s)| s).sum();
    fill_rss(&mut fig, &herald)?;
    let ledger = &rx.ledger;
    let accepted = acks.accepted.load(Relaxed);
    fig.published = accepted;
    fig.publish_rate = accepted as f64 / publish_secs.max(1e-9);
    fig.herald_cpu_secs = cpu;
    if case.deliver {
        let delivered = ledger.delivered.load(Relaxed);
        let last = ledger.last_delivery_ns.load(Relaxed);
        let secs = last.saturating_sub(start_ns) as f64 / 1e9;
        fig.delivered = delivered;
        fig.delivery_rate = Some(delivered as f64 / secs.max(1e-9));
        fig.latency_ms = Percentiles::of_sorted_us(&ledger.latencies_us());
        // Without the first second (new connections to every endpoint, a
        // cold registry cache): where a run's tail comes from.
        let warm = ledger.latencies_us_published_from(start_ns + 1_000_000_000);
        if let Some(p) = Percentiles::of_sorted_us(&warm) {
            fig.extra.insert("after_1s_p99_ms".into(), p.p99);
            fig.extra.insert("after_1s_max_ms".into(), p.max);
        }
        if let Some(t) = ledger.slowest_published_ns() {
            fig.extra.insert(
                "slowest_published_at_s".into(),
                t.saturating_sub(start_ns) as f64 / 1e9,
            );
        }
        let requests = ledger.requests.load(Relaxed);
        fig.attempts_per_event = Some(requests as f64 / delivered.max(1) as f64);
        fig.duplicates = ledger.duplicates.load(Relaxed);
        fig.order_violations = ledger.order_violations.load(Relaxed);
        fig.undelivered = acks
            .accepted_healthy
            .load(Relaxed)
            .saturating_sub(delivered);
        fig.cpu_ms_per_1k = Some(cpu * 1e6 / delivered.max(1) as f64);
        // Several Herald processes (a split deployment): each role's share.
        if roles.len() > 1 {
            for (role, secs) in roles {
                fig.extra.insert(
                    format!("cpu_ms_per_1k.{role}"),
                    secs * 1e6 / delivered.max(1) as f64,
                );
            }
        }
        let rejected = ledger.rejected.load(Relaxed);
        if rejected > 0 {
            fig.extra
                .insert("receiver_rejected".into(), rejected as f64);
        }
    } else {
        fig.cpu_ms_per_1k = Some(cpu * 1e6 / accepted.max(1) as f64);
    }
    let refused = acks.rejected.load(Relaxed);
    if refused > 0 {
        fig.extra.insert("publish_refused".into(), refused as f64);
    }
    rx.stop();
    drop(herald);
    Ok(fig)
}

async fn start_herald(ctx: &Context, case: &Case) -> anyhow::Result<Herald> {
    if let Some((server, pid)) = &ctx.external {
        return Ok(Herald::external(server.clone(), *pid));
    }
    let l = ctx.launcher.clone();
    let target = case.target;
    tokio::task::spawn_blocking(move || match target {
        TargetKind::Dev => l.dev(),
        TargetKind::IngestOnly => l.ingest_only(),
        TargetKind::Split => l.split(),
    })
    .await
    .context("start task")?
}

/// Waits until the receivers have every healthy acknowledged event, or the
/// timeout (measured from the first publish) passes.
async fn wait_delivered(
    rx: &Receivers,
    acks: &Acks,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tick.tick().await;
        let want = acks.accepted_healthy.load(Relaxed);
        if rx.ledger.delivered.load(Relaxed) >= want {
            return Ok(());
        }
        if started.elapsed() > timeout {
            // Reported as `undelivered`, not an error: the figures still count.
            return Ok(());
        }
    }
}

/// Herald's CPU seconds since `before` (the separate broker process excluded).
fn cpu_since(h: &Herald, before: &[(&'static str, target::ProcSample)]) -> anyhow::Result<f64> {
    Ok(cpu_by_role(h, before)?.iter().map(|(_, s)| s).sum())
}

/// Each Herald process's CPU seconds since `before`, by role (the separate
/// broker process excluded).
fn cpu_by_role(
    h: &Herald,
    before: &[(&'static str, target::ProcSample)],
) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let now = h.sample()?;
    Ok(now
        .iter()
        .zip(before)
        .filter(|((role, _), _)| *role != "broker")
        .map(|((role, a), (_, b))| (*role, a.cpu_secs - b.cpu_secs))
        .collect())
}

fn fill_rss(fig: &mut RunFigures, h: &Herald) -> anyhow::Result<()> {
    for (role, s) in h.sample()? {
        fig.peak_rss_mib.insert(role.to_owned(), s.peak_rss_mib);
    }
    Ok(())
}

/// A loopback URL nothing listens on (a port bound and released).
async fn dead_url() -> anyhow::Result<String> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    drop(l);
    Ok(format!("http://{addr}/dead"))
}

fn progress_bar(show: bool, case: &Case, run: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(case.events);
    let style = ProgressStyle::with_template(
        "{msg:32} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(format!("{} #{run}", case.name));
    bar
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}
