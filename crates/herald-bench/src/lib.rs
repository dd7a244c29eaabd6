//! The load harness behind `herald bench`: it starts Herald (or points at a
//! running one), local receivers on port 0 and publishers, runs named
//! scenarios for a fixed number of events, and measures the machine's raw
//! limit in the same run (a plain hyper client posting the same bodies to
//! the same kind of receivers), so every figure can be read as a ratio.
//!
//! # Layout
//!
//! - [`scenario`]: the named scenarios and the cases they expand to.
//! - [`workload`]: endpoint ids, who publishes to whom, the JSON bodies.
//! - [`receiver`]: the receivers (signature checked, body parsed) and the
//!   ledger (deliveries, duplicates, order violations, latencies).
//! - [`publish`]: endpoint registration and the publishers.
//! - [`baseline`]: the raw hyper client.
//! - [`target`]: Herald's processes and what `/proc` says about them.
//! - [`run`]: one run of one case; [`report`]: medians, table, JSON.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod baseline;
pub mod publish;
pub mod receiver;
pub mod report;
pub mod run;
pub mod scenario;
pub mod target;
pub mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

pub use scenario::Scenario;

/// `herald bench` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Scenarios to run, each `--runs` times (interleaved).
    #[arg(value_enum, default_values_t = [Scenario::Steady])]
    pub scenarios: Vec<Scenario>,
    /// Runs of each scenario; the report shows medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Events per run (default: the scenario's own, e.g. 200,000 for steady).
    #[arg(long)]
    pub events: Option<u64>,
    /// Endpoints receiving traffic.
    #[arg(long, default_value_t = 1_000)]
    pub endpoints: usize,
    /// Endpoints registered by `many-endpoints`.
    #[arg(long, default_value_t = 100_000)]
    pub registered: usize,
    /// Events per PublishBatch (default: the scenario's own).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Concurrent publishers, each with its own connection and endpoints.
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Events per second for `paced`.
    #[arg(long, default_value_t = 500)]
    pub rate: u64,
    /// Endpoints each event reaches in `fanout` (applications of this many
    /// endpoints, each subscribed to every event type).
    #[arg(long, default_value_t = 10)]
    pub fanout: usize,
    /// Payload size in bytes (JSON).
    #[arg(long, default_value_t = 1024)]
    pub payload_bytes: usize,
    /// Receiver ports (as if that many hosts).
    #[arg(long, default_value_t = 4)]
    pub ports: usize,
    /// Quiet seconds measured by `idle`.
    #[arg(long, default_value_t = 10)]
    pub idle_secs: u64,
    /// Give up waiting for a run's deliveries after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Register endpoints unordered (Herald's default is ordered).
    #[arg(long)]
    pub unordered: bool,
    /// The receivers hold each answer back this long, as a receiver one
    /// round trip of that many milliseconds away would (an ordered
    /// endpoint then gets at most 1000/DELAY deliveries per second).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub receiver_delay_ms: u64,
    /// Skip the raw hyper baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Requests the raw baseline sends per run.
    #[arg(long, default_value_t = 100_000)]
    pub baseline_requests: u64,
    /// Raw baseline concurrency (default: one per endpoint, as Herald's
    /// ordered lanes).
    #[arg(long)]
    pub baseline_concurrency: Option<usize>,
    /// Config file for the Herald nodes the harness starts.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Use a running Herald (gRPC URL) instead of starting `herald dev`; it
    /// must allow loopback targets (`delivery.allow_cidrs`).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// With `--server`: the pid whose CPU and memory to measure.
    #[arg(long, requires = "server")]
    pub pid: Option<u32>,
    /// The `herald` binary whose nodes are started (default: this one), e.g.
    /// an older build to compare against.
    #[arg(long, value_name = "PATH")]
    pub herald: Option<PathBuf>,
    /// Write every run's figures and the medians here, as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the benchmark; `herald_exe` is the `herald` binary to start nodes
/// with. Prints the table (and writes JSON when asked).
pub async fn run(args: BenchArgs, herald_exe: PathBuf) -> anyhow::Result<()> {
    if args.runs == 0 {
        anyhow::bail!("--runs must be at least 1");
    }
    if args.endpoints == 0 || args.ports == 0 {
        anyhow::bail!("--endpoints and --ports must be at least 1");
    }
    let dir = target::run_dir()?;
    let ctx = run::Context {
        launcher: target::Launcher {
            exe: herald_exe,
            config: args.config.clone(),
            dir: dir.clone(),
        },
        external: args.server.clone().map(|s| (s, args.pid)),
        ports: args.ports,
        payload_bytes: args.payload_bytes,
        baseline: !args.no_baseline,
        baseline_requests: args.baseline_requests.max(1),
        baseline_concurrency: args.baseline_concurrency,
        timeout: Duration::from_secs(args.timeout_secs),
        unordered: args.unordered,
        receiver_delay: Duration::from_millis(args.receiver_delay_ms),
        progress: !args.quiet,
    };
    let knobs = scenario::Knobs {
        events: args.events,
        endpoints: args.endpoints,
        batch: args.batch,
        publishers: args.publishers,
        rate: args.rate,
        registered: args.registered,
        idle_secs: args.idle_secs,
        fanout: args.fanout,
    };
    let cases: Vec<scenario::Case> = args
        .scenarios
        .iter()
        .flat_map(|s| scenario::cases(*s, &knobs))
        .collect();
    eprintln!(
        "herald bench: {} case(s) × {} run(s); child logs in {}",
        cases.len(),
        args.runs,
        dir.display()
    );
    let mut runs = Vec::new();
    for r in 1..=args.runs {
        for case in &cases {
            let fig = run::run_case(&ctx, case, r)
                .await
                .with_context(|| format!("{} run {r} (logs in {})", case.name, dir.display()))?;
            eprintln!("{}", one_line(&fig));
            runs.push(fig);
        }
    }
    let summaries: Vec<report::Summary> = cases
        .iter()
        .map(|c| {
            let mine: Vec<_> = runs
                .iter()
                .filter(|f| f.scenario == c.name)
                .cloned()
                .collect();
            report::Summary::of(&c.name, &mine)
        })
        .collect();
    println!("{}", report::table(&summaries));
    for l in report::extras(&summaries, &runs) {
        println!("{l}");
    }
    if let Some(l) = report::dead_vs_steady(&summaries) {
        println!("{l}");
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({ "runs": runs, "medians": summaries });
        let text = serde_json::to_string_pretty(&doc)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    target::remove_dir(&dir);
    Ok(())
}

/// A short line per finished run, so long invocations show progress.
fn one_line(f: &report::RunFigures) -> String {
    let mut s = format!(
        "{} #{}: published {} ({:.0}/s)",
        f.scenario, f.run, f.published, f.publish_rate
    );
    if let Some(d) = f.delivery_rate {
        s += &format!(", delivered {} ({d:.0}/s)", f.delivered);
    }
    if let Some(raw) = f.raw_rate {
        s += &format!(", raw {raw:.0}/s");
    }
    if let Some(l) = f.latency_ms {
        s += &format!(", p99 {:.1} ms", l.p99);
    }
    if f.undelivered > 0 {
        s += &format!(", UNDELIVERED {}", f.undelivered);
    }
    s
}
