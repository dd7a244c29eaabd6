//! Child processes of the `herald` binary (and of a broker), their log
//! lines, what `/proc` says about them, and a plain `/metrics` scrape.
//! Nothing here is measured.

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

/// A child process, killed when dropped; its stdout and stderr are copied
/// to `DIR/NAME.log` and handed over line by line.
pub struct Child {
    pub pid: u32,
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    pub log: PathBuf,
}

impl Child {
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        let (tx, lines) = mpsc::channel();
        forward(
            child.stdout.take().context("stdout")?,
            file.try_clone()?,
            tx.clone(),
        );
        forward(child.stderr.take().context("stderr")?, file, tx);
        Ok(Self {
            pid: child.id(),
            child,
            lines,
            log,
        })
    }

    /// Waits for a line containing `needle`.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return Ok(l),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "no {needle:?} within {timeout:?} (log: {})",
                        self.log.display()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("exited before {needle:?} (log: {})", self.log.display())
                }
            }
        }
    }

    pub fn sample(&self) -> anyhow::Result<Sample> {
        sample(self.pid)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(out: impl Read + Send + 'static, mut log: std::fs::File, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log, "{line}");
            let _ = tx.send(line);
        }
    });
}

/// CPU seconds, resident and peak resident memory of one process.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Sample {
    pub cpu_secs: f64,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
}

pub fn sample(pid: u32) -> anyhow::Result<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rest = &stat[stat.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> { Ok(f.get(i).context("stat")?.parse()?) };
    let kib = |key: &str| -> anyhow::Result<f64> {
        let v = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))?;
        Ok(v.trim().trim_end_matches("kB").trim().parse()?)
    };
    Ok(Sample {
        // USER_HZ is 100 on every architecture Herald runs on.
        cpu_secs: (ticks(11)? + ticks(12)?) / 100.0,
        rss_mib: kib("VmRSS:")? / 1024.0,
        peak_rss_mib: kib("VmHWM:")? / 1024.0,
    })
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `GET /metrics` on a loopback port (HTTP/1.0, read to the end).
pub fn scrape(port: u16) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// The sum of every series of `name` in a Prometheus text body.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A fresh directory for one invocation's logs and files.
pub fn run_dir(what: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("herald-scale-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The median (the mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The node config the tool's Herald nodes share: a one-broker cluster,
/// no API tokens (loopback only), one master key, plus `extra`.
pub fn node_config(dir: &Path, extra: &str) -> anyhow::Result<PathBuf> {
    let key = master_key(dir)?;
    let text = format!(
        "[kafka]\nreplication_factor = 1\n{extra}\n\n[auth]\ndisabled = true\n\n\
         [[secrets.keys]]\nid = \"scale\"\nfile = {:?}\n",
        key.display().to_string()
    );
    let path = dir.join("node.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The master key file of this run (created once).
pub fn master_key(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("master.key");
    if !path.exists() {
        std::fs::write(&path, herald_registry::keys::generate_key())?;
    }
    Ok(path)
}

/// The `herald` binary: `--herald`, else `target/release/herald` beside
/// this bench binary.
pub fn herald_exe(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe()?;
    let release = me
        .ancestors()
        .find(|a| a.ends_with("release"))
        .map(|r| r.join("herald"))
        .filter(|p| p.is_file());
    release.ok_or_else(|| {
        anyhow!("no target/release/herald: run `cargo build --release -p herald` or pass --herald")
    })
}

/// Removes the run directory (the run went well; on an error it stays,
/// with the logs).
pub fn remove_dir_on_success(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
