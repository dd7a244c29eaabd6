//! Herald as real processes: the `herald-it-node` binary (the `herald`
//! command line) run as a mock Kafka broker or as a dispatcher, so tests can
//! `kill -9` them.
//!
//! Every child is killed when its [`ChildProc`] is dropped (test passed,
//! failed or panicked). Its stdout and stderr are read by background threads
//! (a child never stalls on a full pipe), copied to a log file under the
//! system temp directory, and kept in memory so a test can wait for a line.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use herald_core::config::ConfigLoader;
use herald_core::Config;

/// The `herald` command line built for these tests.
pub const NODE_BIN: &str = env!("CARGO_BIN_EXE_herald-it-node");

/// A directory for this test run's configs and logs.
pub fn run_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "herald-it-{test}-{}",
        herald_testkit::fixtures::unique("run")
    ));
    std::fs::create_dir_all(&dir).expect("create the test run directory");
    dir
}

/// Lines a child printed so far, and a condition variable bumped per line.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    more: Condvar,
}

/// A child process that is killed (SIGKILL) when dropped.
pub struct ChildProc {
    /// Short name for messages (`dispatch-a`, `broker`).
    pub name: String,
    /// Where its output goes.
    pub log_path: PathBuf,
    child: Child,
    lines: Arc<Lines>,
}

impl ChildProc {
    /// Starts `herald-it-node <args>` with `envs`, logging to `dir/<name>.log`
    /// (appending, so a restarted process keeps one log).
    pub fn spawn(name: &str, dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(NODE_BIN);
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self::spawn_command(name, dir, cmd)
    }

    /// Starts `cmd` (any program) the same way: killed on drop, output
    /// logged to `dir/<name>.log` and kept for [`ChildProc::wait_for_line`].
    pub fn spawn_command(name: &str, dir: &Path, mut cmd: Command) -> Self {
        let log_path = dir.join(format!("{name}.log"));
        let log = Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("open the child's log file"),
        ));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG");
        let shown = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
        let pid = child.id();
        writeln!(log.lock().unwrap(), "==== {name} (pid {pid}): {shown}").ok();
        let lines = Arc::new(Lines::default());
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        for (stream, tag) in [
            (Box::new(out) as Box<dyn std::io::Read + Send>, "out"),
            (Box::new(err), "err"),
        ] {
            let (log, lines) = (log.clone(), lines.clone());
            std::thread::spawn(move || pump(stream, tag, pid, &log, &lines));
        }
        Self {
            name: name.to_string(),
            log_path,
            child,
            lines,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a line containing `needle` was printed (at any time since
    /// start); returns it. Fails after `timeout`, or if the process exits.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lines.lock().unwrap();
        let mut checked = 0;
        loop {
            if let Some(l) = lines[checked..].iter().find(|l| l.contains(needle)) {
                return Ok(l.clone());
            }
            checked = lines.len();
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before printing {needle:?}; log: {}",
                    self.name,
                    self.log_path.display()
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "{} did not print {needle:?} within {timeout:?}; log: {}",
                    self.name,
                    self.log_path.display()
                ));
            }
            // Woken by every new line; the short cap only re-checks whether
            // the process died (which prints nothing).
            let wait = (deadline - now).min(Duration::from_millis(500));
            lines = self.lines.more.wait_timeout(lines, wait).unwrap().0;
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit; it must exit 0. A
    /// watchdog sends SIGKILL after `timeout` (the test then fails).
    pub fn terminate(&mut self, timeout: Duration) -> Result<(), String> {
        let pid = self.pid().to_string();
        // Through the shell's `kill` builtin: no procps needed on CI machines.
        let signal = |sig: &str, pid: &str| {
            std::process::Command::new("sh")
                .args(["-c", r#"kill -s "$1" "$2""#, "sh", sig, pid])
                .status()
                .map_err(|e| format!("kill -s {sig} {pid}: {e}"))
        };
        let status = signal("TERM", &pid)?;
        if !status.success() {
            return Err(format!("kill -TERM {pid} failed: {status}"));
        }
        let (done, exited) = std::sync::mpsc::channel::<()>();
        let watchdog_pid = pid.clone();
        std::thread::spawn(move || {
            if exited.recv_timeout(timeout).is_err() {
                let _ = signal("KILL", &watchdog_pid);
            }
        });
        let status = self.child.wait().map_err(|e| e.to_string());
        let _ = done.send(());
        let status = status?;
        if !status.success() {
            return Err(format!(
                "{} exited with {status} after SIGTERM (killed after {timeout:?}?); log: {}",
                self.name,
                self.log_path.display()
            ));
        }
        Ok(())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Whether the process printed a line containing `needle` so far.
    pub fn printed(&self, needle: &str) -> bool {
        self.lines
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn pump(
    stream: Box<dyn std::io::Read + Send>,
    tag: &str,
    pid: u32,
    log: &Mutex<File>,
    lines: &Lines,
) {
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if let Ok(mut f) = log.lock() {
            let _ = writeln!(f, "[{pid} {tag}] {line}");
        }
        lines.lines.lock().unwrap().push(line);
        lines.more.notify_all();
    }
}

/// A mock Kafka cluster in its own process (`herald-it-node mock-broker`).
pub struct BrokerProc {
    /// The process.
    pub proc: ChildProc,
    /// `host:port` to put in `kafka.brokers`.
    pub bootstrap: String,
}

impl BrokerProc {
    /// Starts a mock broker with the topics of the config file at `config`.
    pub fn start(dir: &Path, config: &Path) -> Self {
        let mut proc = ChildProc::spawn(
            "broker",
            dir,
            &[
                "mock-broker",
                "--config",
                config.to_str().expect("utf-8 path"),
            ],
            &[],
        );
        let line = proc
            .wait_for_line("bootstrap: ", Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("mock broker: {e}"));
        let bootstrap = line
            .split("bootstrap: ")
            .nth(1)
            .expect("bootstrap line")
            .trim()
            .to_string();
        Self { proc, bootstrap }
    }
}

/// A config file's text: `sections` (name, body lines) merged over a base
/// for tests: the topics' partition count, a 6 s session timeout (group
/// joins take about that long on the mock broker), 100 ms commits and
/// loopback deliveries allowed (test receivers listen on 127.0.0.1).
pub fn config_text(partitions: i32, sections: &[(&str, &str)]) -> String {
    let mut merged: Vec<(String, String)> = vec![
        (
            "kafka".into(),
            format!("events_partitions = {partitions}\nreplication_factor = 1\nsession_timeout_ms = 6000\n"),
        ),
        ("dispatch".into(), "commit_interval_ms = 100\n".into()),
        ("delivery".into(), "allow_cidrs = [\"127.0.0.0/8\"]\n".into()),
        // Tests call the API without tokens; tests/auth.rs covers authentication.
        ("auth".into(), "disabled = true\n".into()),
    ];
    let key = herald_testkit::fixtures::master_key_file();
    merged.push((
        "[secrets.keys]".into(),
        format!("id = \"test\"\nfile = {:?}\n", key.display().to_string()),
    ));
    for (name, body) in sections {
        match merged.iter_mut().find(|(n, _)| n == name) {
            Some((_, b)) => {
                b.push_str(body.trim());
                b.push('\n');
            }
            None => merged.push((name.to_string(), format!("{}\n", body.trim()))),
        }
    }
    merged
        .into_iter()
        // A name in brackets is an array of tables, written `[[name]]`.
        .map(|(name, body)| format!("[{name}]\n{body}\n"))
        .collect()
}

/// Writes `toml` to `dir/herald.toml`; returns its path.
pub fn write_config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("herald.toml");
    std::fs::write(&path, toml).expect("write the config file");
    path
}

/// The [`Config`] of the file at `path`, pointed at `brokers`, with
/// loopback listeners on port 0, `node_id`, and logs at `warn` (for a node
/// started in the test process).
pub fn load_config(path: &Path, brokers: &str, node_id: &str) -> Config {
    let text = std::fs::read_to_string(path).expect("read the config file");
    let mut loader = ConfigLoader::new();
    loader
        .file(&path.display().to_string(), &text)
        .expect("the test config parses");
    let mut cfg = loader.build().expect("the test config is valid");
    cfg.kafka.brokers = brokers.to_string();
    cfg.node.id = node_id.to_string();
    cfg.grpc.listen = "127.0.0.1:0".parse().unwrap();
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.log.level = "warn".into();
    herald::logging::init(&cfg.log);
    cfg
}
