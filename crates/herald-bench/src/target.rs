//! The Herald under test: `herald dev` (or `herald ingest` beside a broker
//! process) started as child processes on port 0, or a running server given
//! by address and pid; and what `/proc` says about those processes (CPU
//! seconds, peak RSS).

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

/// Linux reports process times in USER_HZ ticks, 100 a second on every
/// architecture Herald runs on.
const TICKS_PER_SECOND: f64 = 100.0;
/// How long a child may take to say it is up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A process of the system under test.
#[derive(Debug)]
pub struct Proc {
    /// `dev`, `ingest`, `broker`, `registry-node`, `external`.
    pub role: &'static str,
    /// Its pid (for `/proc`).
    pub pid: u32,
    child: Option<Child>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// CPU time and peak memory of one process, read from `/proc`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_secs: f64,
    /// Peak resident set size (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

impl Proc {
    /// Reads `/proc/<pid>`.
    pub fn sample(&self) -> anyhow::Result<ProcSample> {
        sample(self.pid)
    }
}

/// Reads the CPU seconds and peak RSS of `pid`.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat (is the process running?)"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    parse_sample(&stat, &status).ok_or_else(|| anyhow!("unexpected /proc/{pid} format"))
}

/// CPU seconds spent so far by this process's threads whose name starts
/// with `prefix` (from `/proc/self/task`; threads that already exited are
/// not counted).
pub fn threads_cpu_secs(prefix: &str) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").context("cannot list /proc/self/task")? {
        let path = task?.path().join("stat");
        // A thread may exit between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(&path) else {
            continue;
        };
        if let Some(secs) = thread_cpu(&stat, prefix) {
            total += secs;
        }
    }
    Ok(total)
}

/// The CPU seconds of one `/proc/<pid>/task/<tid>/stat` line, if the
/// thread's name starts with `prefix`.
fn thread_cpu(stat: &str, prefix: &str) -> Option<f64> {
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    if !name.starts_with(prefix) {
        return None;
    }
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

fn parse_sample(stat: &str, status: &str) -> Option<ProcSample> {
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let hwm_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(ProcSample {
        cpu_secs: (utime + stime) / TICKS_PER_SECOND,
        peak_rss_mib: hwm_kb / 1024.0,
    })
}

/// A started Herald: where its API is and which processes it is.
#[derive(Debug)]
pub struct Herald {
    /// gRPC API URL.
    pub grpc: String,
    /// The Kafka bootstrap address, when the harness started the broker.
    pub bootstrap: Option<String>,
    /// `/metrics` of a node that dispatches, when known.
    pub metrics: Option<String>,
    /// Its processes (broker last, so it stops last).
    pub procs: Vec<Proc>,
}

impl Herald {
    /// A running Herald the harness did not start.
    pub fn external(grpc: String, pid: Option<u32>) -> Self {
        let procs = pid
            .map(|pid| Proc {
                role: "external",
                pid,
                child: None,
            })
            .into_iter()
            .collect();
        Self {
            grpc,
            bootstrap: None,
            metrics: None,
            procs,
        }
    }

    /// Samples every process that is Herald (not the separate broker).
    pub fn sample(&self) -> anyhow::Result<Vec<(&'static str, ProcSample)>> {
        self.procs
            .iter()
            .map(|p| Ok((p.role, p.sample()?)))
            .collect()
    }
}

/// Polls `metrics` until the node owns at least one events partition and its registry
/// holds at least `endpoints` endpoints. A dispatcher that has not joined its group yet
/// would add its join time to the first events' latency, and one whose registry has not
/// read the endpoints just created holds their events until it has.
pub async fn wait_ready(metrics: &str, endpoints: usize) -> anyhow::Result<()> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = metrics.parse().context("metrics URL")?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut seen = (0.0, 0.0);
    while Instant::now() < deadline {
        if let Ok(resp) = client.get(uri.clone()).await {
            let body = resp.into_body().collect().await?.to_bytes();
            let text = String::from_utf8_lossy(&body);
            seen = (
                gauge_sum(&text, "herald_partitions_assigned"),
                gauge_sum(&text, "herald_endpoints{"),
            );
            if seen.0 > 0.0 && seen.1 >= endpoints as f64 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "the node at {metrics} was not ready within {START_TIMEOUT:?}: it owned {} events \
         partitions and had {} of the {endpoints} endpoints in its registry",
        seen.0,
        seen.1
    )
}

/// The sum of every sample of the metric whose line starts with `prefix`.
fn gauge_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How to start child processes of the `herald` binary.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `herald` executable.
    pub exe: PathBuf,
    /// Extra config file for the nodes (`--config`).
    pub config: Option<PathBuf>,
    /// Where child logs and generated configs go.
    pub dir: PathBuf,
}

impl Launcher {
    /// `herald dev` on port 0.
    pub fn dev(&self) -> anyhow::Result<Herald> {
        let mut cmd = self.command("dev")?;
        cmd.args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ]);
        let (proc, lines) = self.spawn(cmd, "dev")?;
        let grpc = wait_for(&lines, "gRPC API", |l| word_after(l, "gRPC API"))?;
        let metrics = wait_for(&lines, "metrics/health", |l| {
            word_after(l, "metrics/health")
        })?;
        let bootstrap = wait_for(&lines, "Kafka (in-memory", |l| word_after(l, "embedded)"))?;
        Ok(Herald {
            grpc,
            bootstrap: Some(bootstrap),
            metrics: Some(metrics),
            procs: vec![proc],
        })
    }

    /// A broker process and `herald ingest` beside it.
    pub fn ingest_only(&self) -> anyhow::Result<Herald> {
        let (broker, lines) = self.spawn(self.command("mock-broker")?, "broker")?;
        let bootstrap = wait_for(&lines, "bootstrap:", |l| word_after(l, "bootstrap:"))?;
        let (ingest, grpc) = self.node("ingest", &bootstrap, "ingest")?;
        Ok(Herald {
            grpc: grpc.ok_or_else(|| anyhow!("herald ingest reported no gRPC address"))?,
            bootstrap: Some(bootstrap),
            metrics: None,
            procs: vec![ingest, broker],
        })
    }

    /// A broker process with `herald ingest` and `herald dispatch` beside
    /// it (a split deployment on one machine).
    pub fn split(&self) -> anyhow::Result<Herald> {
        let (broker, lines) = self.spawn(self.command("mock-broker")?, "broker")?;
        let bootstrap = wait_for(&lines, "bootstrap:", |l| word_after(l, "bootstrap:"))?;
        let (ingest, grpc) = self.node("ingest", &bootstrap, "ingest")?;
        let cmd = self.node_command("dispatch", &bootstrap, "dispatch")?;
        let (dispatch, lines) = self.spawn(cmd, "dispatch")?;
        let http = wait_for(&lines, "herald started", |l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let h = v.get("http").or_else(|| v.get("fields")?.get("http"))?;
            Some(h.as_str()?.to_owned())
        })?;
        Ok(Herald {
            grpc: grpc.ok_or_else(|| anyhow!("herald ingest reported no gRPC address"))?,
            bootstrap: Some(bootstrap),
            metrics: Some(format!("http://{http}/metrics")),
            procs: vec![ingest, dispatch, broker],
        })
    }

    /// Starts `herald ingest` against `bootstrap` and waits until its
    /// endpoint registry is loaded; returns it, how long that took, and how
    /// many endpoints it loaded (from its log line, when readable).
    pub fn registry_node(&self, bootstrap: &str) -> anyhow::Result<(Proc, Duration, Option<u64>)> {
        let started = Instant::now();
        let cmd = self.node_command("ingest", bootstrap, "bench-registry")?;
        let (proc, lines) = self.spawn(cmd, "registry-node")?;
        let loaded = wait_for(&lines, "endpoint registry loaded", |l| {
            Some(loaded_endpoints(l))
        })?;
        Ok((proc, started.elapsed(), loaded))
    }

    /// `herald SUB` against `bootstrap` on port 0, logging JSON at info.
    fn node_command(&self, sub: &str, bootstrap: &str, node_id: &str) -> anyhow::Result<Command> {
        let mut cmd = self.command(sub)?;
        cmd.args(["--grpc-listen", "127.0.0.1:0"]);
        cmd.args(["--http-listen", "127.0.0.1:0"]);
        cmd.args(["--brokers", bootstrap, "--log-format", "json"]);
        cmd.args(["--log-level", "info", "--node-id", node_id]);
        cmd.args(["--config", &self.node_config()?.display().to_string()]);
        Ok(cmd)
    }

    fn node(
        &self,
        role: &'static str,
        bootstrap: &str,
        sub: &str,
    ) -> anyhow::Result<(Proc, Option<String>)> {
        let cmd = self.node_command(sub, bootstrap, role)?;
        let (proc, lines) = self.spawn(cmd, role)?;
        let grpc = wait_for(&lines, "herald started", |l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let g = v.get("grpc").or_else(|| v.get("fields")?.get("grpc"))?;
            let g = g.as_str()?;
            Some(
                g.strip_prefix("Some(")
                    .and_then(|g| g.strip_suffix(')'))
                    .map(|a| format!("http://{a}")),
            )
        })?;
        Ok((proc, grpc))
    }

    /// The config of nodes beside a one-broker cluster, plus the user's file.
    fn node_config(&self) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("node.toml");
        let mut text = String::from(
            "[kafka]\nevents_partitions = 4\nreplication_factor = 1\n\n\
             [delivery]\nallow_cidrs = [\"127.0.0.0/8\"]\n\n\
             # The harness's publishers send no token (a loopback node it started).\n\
             [auth]\ndisabled = true\n",
        );
        text.push_str(&self.secrets_section()?);
        if let Some(user) = &self.config {
            text = std::fs::read_to_string(user)
                .with_context(|| format!("cannot read {}", user.display()))?;
        }
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// The `[[secrets.keys]]` entry every node of this invocation shares.
    /// One key file for all of them: `herald dev` would otherwise seal
    /// under a random key of its own, and a second node reading its
    /// registry (`many-endpoints`) could open none of the records.
    fn secrets_section(&self) -> anyhow::Result<String> {
        let key = self.dir.join("master.key");
        if !key.exists() {
            std::fs::write(&key, herald_registry::keys::generate_key())?;
        }
        Ok(format!(
            "\n[[secrets.keys]]\nid = \"bench\"\nfile = {:?}\n",
            key.display().to_string()
        ))
    }

    fn command(&self, sub: &str) -> anyhow::Result<Command> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg(sub);
        if sub == "dev" || sub == "mock-broker" {
            match &self.config {
                Some(c) => {
                    cmd.arg("--config").arg(c);
                }
                None if sub == "dev" => {
                    let path = self.dir.join("dev.toml");
                    std::fs::write(&path, self.secrets_section()?)?;
                    cmd.arg("--config").arg(path);
                }
                None => {}
            }
            cmd.args(["--log-level", "warn"]);
        }
        Ok(cmd)
    }

    /// Spawns with stdout (the dev banner) and stderr (the log) both read
    /// line by line and copied to `DIR/ROLE.log`.
    fn spawn(
        &self,
        mut cmd: Command,
        role: &'static str,
    ) -> anyhow::Result<(Proc, mpsc::Receiver<String>)> {
        let log = std::fs::File::create(self.dir.join(format!("{role}.log")))?;
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().context("child stdout")?;
        let err = child.stderr.take().context("child stderr")?;
        forward_lines(out, log.try_clone()?, tx.clone());
        forward_lines(err, log, tx);
        Ok((proc_of(role, child), rx))
    }
}

fn proc_of(role: &'static str, child: Child) -> Proc {
    Proc {
        role,
        pid: child.id(),
        child: Some(child),
    }
}

/// Reads `out` on a thread, forwarding each line to `tx` and copying it to
/// `log` (and draining the pipe so the child never blocks on a full one).
fn forward_lines(
    out: impl Read + Send + 'static,
    mut log: std::fs::File,
    tx: mpsc::Sender<String>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log, "{line}");
            // Nobody listens any more: keep draining.
            let _ = tx.send(line);
        }
    });
}

/// Waits for a line containing `needle` and returns what `pick` makes of it.
fn wait_for<T>(
    lines: &mpsc::Receiver<String>,
    needle: &str,
    pick: impl Fn(&str) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(needle) => {
                if let Some(v) = pick(&l) {
                    return Ok(v);
                }
                bail!("cannot read the line {l:?}");
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("no {needle:?} line within {START_TIMEOUT:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the process exited before printing {needle:?} (see its log)")
            }
        }
    }
}

/// The `endpoints` field of the node's JSON "endpoint registry loaded" line.
fn loaded_endpoints(line: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("endpoints")
        .or_else(|| v.get("fields")?.get("endpoints"))?
        .as_u64()
}

/// The first whitespace-separated word after `marker` in `line`.
fn word_after(line: &str, marker: &str) -> Option<String> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next().map(str::to_owned)
}

/// A fresh directory for one invocation's logs and configs.
pub fn run_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("herald-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Removes `dir` (the run went well).
pub fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_with_spaces_in_the_name() {
        let stat = "42 (herald dev) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        let status = "Name:\therald\nVmPeak:\t  999 kB\nVmHWM:\t   20480 kB\nVmRSS:\t 1 kB\n";
        let s = parse_sample(stat, status).unwrap();
        assert_eq!(s.cpu_secs, 3.0);
        assert_eq!(thread_cpu(stat, "herald"), Some(3.0));
        assert_eq!(thread_cpu(stat, "tokio"), None);
        assert_eq!(s.peak_rss_mib, 20.0);
        assert!(parse_sample("garbage", status).is_none());
    }

    #[test]
    fn own_process_can_be_sampled() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.peak_rss_mib > 0.0);
    }

    #[test]
    fn the_loaded_endpoint_count_is_read_from_the_log_line() {
        let l =
            r#"{"level":"INFO","fields":{"message":"endpoint registry loaded","endpoints":4321}}"#;
        assert_eq!(loaded_endpoints(l), Some(4321));
        assert_eq!(loaded_endpoints("endpoint registry loaded"), None);
    }

    #[test]
    fn banner_words_are_found() {
        let l = "  gRPC API        http://127.0.0.1:4000   (herald endpoint|publish ...)";
        assert_eq!(word_after(l, "gRPC API").unwrap(), "http://127.0.0.1:4000");
        assert_eq!(word_after("x", "gRPC API"), None);
    }
}
