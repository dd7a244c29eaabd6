//! `scale registry`: how long a new node takes to load an endpoint registry
//! of N endpoints, and how much memory it holds for it.
//!
//! 1. A broker: one the caller runs (`--brokers`), tansu with SQLite storage
//!    started here (`--tansu PATH`), `herald mock-broker` (`--mock-broker`;
//!    it keeps about 5 MiB per partition, so a large registry is cut, and
//!    the loaded count shows by how much), or librdkafka's mock cluster in
//!    this process with the registry topic spread over N partitions
//!    (`--in-process-broker N`: a fast broker that keeps N × 5 MiB; the
//!    node's own work per endpoint is the same as with one partition).
//! 2. A `herald ingest` node on the empty registry: the base memory (it also
//!    creates Herald's topics).
//! 3. N endpoint records written straight to the registry topic, sealed
//!    under the nodes' master key exactly as `EndpointService` seals them
//!    (one secret, a URL, a description), in large lz4 batches.
//! 4. `--runs` new `herald ingest` nodes, one after another: from process
//!    start to the log line "endpoint registry loaded", the endpoint count
//!    that line reports, peak RSS (VmHWM) then, and RSS 3 s later.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use herald_core::config::{MasterKeyConfig, SecretsConfig};
use herald_core::Endpoint;
use herald_proto::v1::EndpointRecord;
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::message::DeliveryResult;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::ClientContext;

use crate::procs::{self, median, Child};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Endpoints to write to the registry.
    #[arg(long, default_value_t = 100_000)]
    endpoints: usize,
    /// New nodes to start, one after another (the report shows medians).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// A running broker (host:port) whose `herald.endpoints` is empty.
    #[arg(long, conflicts_with_all = ["tansu", "mock_broker", "in_process_broker"])]
    brokers: Option<String>,
    /// Start this tansu binary with SQLite storage in the run directory.
    #[arg(long, value_name = "PATH")]
    tansu: Option<PathBuf>,
    /// Start `herald mock-broker` (keeps ~5 MiB per partition).
    #[arg(long)]
    mock_broker: bool,
    /// Run librdkafka's mock cluster in this process, with the registry
    /// topic in this many partitions (each keeps ~5 MiB).
    #[arg(long, value_name = "PARTITIONS")]
    in_process_broker: Option<i32>,
    /// The `herald` binary (default: target/release/herald).
    #[arg(long)]
    herald: Option<PathBuf>,
    /// Write the figures here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One new node's load.
#[derive(Debug, serde::Serialize)]
struct Load {
    secs: f64,
    endpoints: Option<u64>,
    peak_rss_mib: f64,
    rss_after_mib: f64,
    cpu_secs: f64,
    /// CPU the broker spent meanwhile (when this tool started it).
    broker_cpu_secs: Option<f64>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let exe = procs::herald_exe(a.herald.clone())?;
    let dir = procs::run_dir("registry")?;
    let config = procs::node_config(&dir, "events_partitions = 4")?;
    let (broker, bootstrap) = start_broker(&a, &exe, &dir, &config)?;
    let broker_cpu = || -> Option<f64> {
        let pid = match &broker {
            Broker::External => return None,
            Broker::Child(c) => c.pid,
            // Only the mock cluster's threads work in this process meanwhile.
            Broker::InProcess(_) => std::process::id(),
        };
        procs::sample(pid).ok().map(|s| s.cpu_secs)
    };
    eprintln!("broker {bootstrap}; logs in {}", dir.display());

    let node = |id: &str| -> anyhow::Result<Child> {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["ingest", "--brokers", &bootstrap, "--node-id", id])
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(["--log-format", "json", "--log-level", "info"])
            .arg("--config")
            .arg(&config);
        Child::spawn(id, cmd, &dir)
    };
    let load = |id: &str| -> anyhow::Result<Load> {
        let broker_before = broker_cpu();
        let started = Instant::now();
        let n = node(id)?;
        let line = n.wait_line("endpoint registry loaded", Duration::from_secs(900));
        let secs = started.elapsed().as_secs_f64();
        let broker_cpu_secs = broker_cpu().zip(broker_before).map(|(a, b)| a - b);
        let line = line?;
        let at_load = n.sample()?;
        std::thread::sleep(Duration::from_secs(3));
        let after = n.sample()?;
        Ok(Load {
            secs,
            endpoints: loaded_count(&line),
            peak_rss_mib: at_load.peak_rss_mib,
            rss_after_mib: after.rss_mib,
            cpu_secs: at_load.cpu_secs,
            broker_cpu_secs,
        })
    };

    // An empty registry loads at once and is never logged as loaded; the
    // base is the node once it is ready.
    let base = {
        let n = node("scale-base")?;
        n.wait_line("herald started", Duration::from_secs(120))?;
        std::thread::sleep(Duration::from_secs(3));
        n.sample()?
    };
    eprintln!(
        "empty registry: RSS {:.1} MiB, peak {:.1} MiB",
        base.rss_mib, base.peak_rss_mib
    );

    let fill = fill(&bootstrap, &dir, a.endpoints)?;
    eprintln!(
        "wrote {} records ({:.0} B each before compression) in {:.1} s",
        a.endpoints, fill.bytes_per_record, fill.secs
    );

    let mut loads = Vec::new();
    for r in 1..=a.runs {
        let l = load(&format!("scale-load-{r}"))?;
        eprintln!(
            "load #{r}: {:.2} s, {} endpoints, peak RSS {:.1} MiB, RSS 3 s later {:.1} MiB, \
             CPU {:.2} s (broker {})",
            l.secs,
            l.endpoints.map_or("?".into(), |n| n.to_string()),
            l.peak_rss_mib,
            l.rss_after_mib,
            l.cpu_secs,
            l.broker_cpu_secs
                .map_or("not measured".into(), |c| format!("{c:.2} s"))
        );
        loads.push(l);
    }
    let m = |f: fn(&Load) -> f64| median(&loads.iter().map(f).collect::<Vec<_>>());
    let loaded = loads.iter().filter_map(|l| l.endpoints).min().unwrap_or(0);
    let per = |mib: f64, base: f64| (mib - base) * 1024.0 * 1024.0 / loaded.max(1) as f64;
    let (secs, peak, after, cpu) = (
        m(|l| l.secs),
        m(|l| l.peak_rss_mib),
        m(|l| l.rss_after_mib),
        m(|l| l.cpu_secs),
    );
    println!(
        "registry of {} endpoints ({} loaded): load {secs:.2} s (median of {}), \
         CPU {cpu:.2} s, peak RSS {peak:.1} MiB, RSS after {after:.1} MiB; \
         empty-registry node {:.1} MiB; per endpoint {:.0} B resident, {:.0} B at peak",
        a.endpoints,
        loaded,
        loads.len(),
        base.rss_mib,
        per(after, base.rss_mib),
        per(peak, base.peak_rss_mib),
    );
    if loaded < a.endpoints as u64 {
        println!(
            "WARNING: the node loaded {loaded} of {} endpoints (a broker that drops records?)",
            a.endpoints
        );
    }
    if let Some(path) = &a.json {
        let doc = serde_json::json!({
            "endpoints": a.endpoints, "base": base, "fill_secs": fill.secs,
            "bytes_per_record": fill.bytes_per_record, "loads": loads,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    procs::remove_dir_on_success(&dir);
    Ok(())
}

/// The broker the nodes read from.
enum Broker {
    External,
    Child(Child),
    InProcess(#[allow(dead_code)] MockCluster<'static, DefaultProducerContext>),
}

fn start_broker(
    a: &Args,
    exe: &PathBuf,
    dir: &std::path::Path,
    config: &std::path::Path,
) -> anyhow::Result<(Broker, String)> {
    if let Some(b) = &a.brokers {
        return Ok((Broker::External, b.clone()));
    }
    if let Some(partitions) = a.in_process_broker {
        let cluster = MockCluster::new(1)?;
        // Herald's topics as `herald ingest` expects them (events_partitions
        // = 4 in the node config), the registry spread wider.
        for (name, n) in [
            ("herald.events", 4),
            ("herald.endpoints", partitions),
            ("herald.retry", 4),
            ("herald.dlq", 4),
            ("herald.ops", 1),
            ("herald.attempts", 4),
        ] {
            cluster.create_topic(name, n, 1)?;
        }
        let bootstrap = cluster.bootstrap_servers();
        return Ok((Broker::InProcess(cluster), bootstrap));
    }
    if let Some(tansu) = &a.tansu {
        let port = procs::free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = std::process::Command::new(tansu);
        cmd.current_dir(dir)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db", "--silent"])
            .env("RUST_LOG", "warn");
        let child = Child::spawn("tansu", cmd, dir)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("tansu is not listening (log: {})", child.log.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        return Ok((Broker::Child(child), format!("127.0.0.1:{port}")));
    }
    if a.mock_broker {
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["mock-broker", "--log-level", "warn", "--config"])
            .arg(config);
        let child = Child::spawn("mock-broker", cmd, dir)?;
        let line = child.wait_line("bootstrap:", Duration::from_secs(60))?;
        let addr = line
            .split_whitespace()
            .last()
            .context("bootstrap line")?
            .to_owned();
        return Ok((Broker::Child(child), addr));
    }
    bail!("give --brokers, --tansu PATH, --mock-broker or --in-process-broker N")
}

/// The `endpoints` field of the node's JSON "endpoint registry loaded" line.
fn loaded_count(line: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("endpoints")
        .or_else(|| v.get("fields")?.get("endpoints"))?
        .as_u64()
}

struct Filled {
    secs: f64,
    bytes_per_record: f64,
}

/// Counts failed deliveries of the fill producer.
#[derive(Default)]
struct Failures(AtomicU64);

impl ClientContext for Failures {}

impl ProducerContext for Failures {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if r.is_err() {
            self.0.fetch_add(1, Relaxed);
        }
    }
}

/// Writes `n` sealed endpoint records to `herald.endpoints`.
fn fill(bootstrap: &str, dir: &std::path::Path, n: usize) -> anyhow::Result<Filled> {
    let secrets = SecretsConfig {
        keys: vec![MasterKeyConfig {
            id: "scale".into(),
            file: Some(procs::master_key(dir)?),
            env: None,
        }],
        ..SecretsConfig::default()
    };
    let ring = herald_registry::keys::load(&secrets)?.context("no master key")?;
    let producer: ThreadedProducer<Failures> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "50")
        .set("batch.size", "900000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Failures::default())?;
    let secret = herald_signing::Secret::generate().to_whsec();
    let now = herald_core::time::now_ms();
    let started = Instant::now();
    let mut bytes = 0usize;
    for i in 0..n {
        let rec = EndpointRecord {
            id: format!("scale-ep-{i:07}"),
            url: format!("https://hooks{}.example.com/webhooks/herald/{i}", i % 97),
            secrets: vec![secret.clone()],
            description: "herald scale".into(),
            created_at_ms: now,
            updated_at_ms: now,
            ..Default::default()
        };
        let ep = Endpoint::from_record(rec).map_err(|e| anyhow::anyhow!("{e}"))?;
        let value = ring.seal_endpoint(&ep).encode_to_vec();
        bytes += value.len();
        let mut record = BaseRecord::to("herald.endpoints")
            .key(ep.id.as_str())
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    if !matches!(
                        e,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ) {
                        bail!("cannot write registry record {i}: {e}");
                    }
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(600))?;
    let failed = producer.context().0.load(Relaxed);
    if failed > 0 {
        bail!("{failed} registry records were not acknowledged");
    }
    Ok(Filled {
        secs: started.elapsed().as_secs_f64(),
        bytes_per_record: bytes as f64 / n.max(1) as f64,
    })
}
