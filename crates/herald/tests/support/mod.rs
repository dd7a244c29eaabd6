//! What the CLI process tests share: running the built `herald` binary as
//! child processes whose stdout is read line by line ([`Proc`]), one-shot
//! client commands ([`run`], [`run_json`], [`run_failing`]), `herald dev` on
//! free ports ([`Dev`]) and a bare HTTP/1.1 GET for the health endpoints.
//!
//! Synchronisation is by reading the children's stdout (the addresses
//! `herald dev` and `herald listen` print, the block `herald listen` prints
//! per delivery); the timeouts are failure guards only. Every child is killed
//! if a test fails. Each test binary uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const HERALD: &str = env!("CARGO_BIN_EXE_herald");
/// The secret the walkthrough uses (the Standard Webhooks test vector's).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Failure guard for anything the test waits for; never a synchronisation device.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A `herald` child process whose stdout arrives line by line on a channel
/// and whose stderr is collected (drained, so the child never blocks on a
/// full pipe). Dropping it kills the child.
pub struct Proc {
    name: &'static str,
    child: Option<Child>,
    pid: u32,
    lines: Receiver<String>,
    /// Everything read from stdout so far, for failure messages.
    stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
}

impl Proc {
    pub fn spawn(name: &'static str, args: &[&str]) -> Proc {
        let mut child = herald()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `herald {}`: {e}", args.join(" ")));
        let pid = child.id();
        let (tx, lines) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(String::new()));
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let seen = Arc::clone(&stdout);
        thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                let mut all = seen.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
                drop(all);
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("piped stderr");
        let collected = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                collected
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            name,
            child: Some(child),
            pid,
            lines,
            stdout,
            stderr,
        }
    }

    /// Reads stdout lines until one satisfies `wanted`, and returns it.
    pub fn line_where(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("no line with {what} within {PATIENCE:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(&format!("stdout closed before a line with {what}"))
                }
            }
        }
    }

    /// The next stdout line, whatever it is.
    pub fn next_line(&self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(e) => self.fail(&format!("no further stdout line: {e}")),
        }
    }

    pub fn fail(&self, why: &str) -> ! {
        panic!(
            "{} (pid {}): {why}\n--- stdout ---\n{}\n--- stderr (tail) ---\n{}",
            self.name,
            self.pid,
            self.stdout.lock().unwrap(),
            tail(&self.stderr.lock().unwrap(), 4000),
        )
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = signal(self.pid, "TERM");
        assert!(status.success(), "kill -TERM {} failed: {status}", self.pid);
        let mut child = self.child.take().expect("child still owned");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(PATIENCE) {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => self.fail(&format!("waiting for exit failed: {e}")),
            Err(_) => {
                let _ = signal(self.pid, "KILL");
                self.fail(&format!("did not exit within {PATIENCE:?} of SIGTERM"))
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `SIG<name>` to `pid` with the POSIX shell's `kill` builtin (always
/// present, unlike a `kill` binary; std has no signal API besides SIGKILL).
pub fn signal(pid: u32, name: &str) -> ExitStatus {
    Command::new("sh")
        .args(["-c", r#"kill -s "$1" "$2""#, "sh", name, &pid.to_string()])
        .status()
        .expect("run sh -c kill")
}

/// A `herald` command with no `HERALD_*` variables inherited, so the
/// surrounding environment cannot change what the test exercises.
pub fn herald() -> Command {
    let mut cmd = Command::new(HERALD);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HERALD_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("NO_COLOR", "1").env_remove("RUST_LOG");
    cmd
}

/// Runs a client command to completion (its own timeouts bound it).
pub fn run(args: &[&str]) -> Output {
    herald()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `herald {}`: {e}", args.join(" ")))
}

/// Runs a client command that must succeed and print one JSON value.
pub fn run_json(args: &[&str]) -> Value {
    let out = run(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`herald {}` failed ({}):\n{stdout}\n{stderr}",
        args.join(" "),
        out.status
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "`herald {}` printed no JSON ({e}):\n{stdout}",
            args.join(" ")
        )
    })
}

/// Runs a client command that must fail; returns its stderr.
pub fn run_failing(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "`herald {}` should have failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// `GET path` on `addr` over plain HTTP/1.1: (status, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// The `host:port` after `http://` in `line`.
pub fn address_in(line: &str) -> String {
    let rest = line
        .split_once("http://")
        .unwrap_or_else(|| panic!("no http:// address in {line:?}"))
        .1;
    rest.split(|c: char| c == '/' || c.is_whitespace())
        .next()
        .unwrap()
        .to_owned()
}

pub fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// `herald dev` on free ports, ready (its `/readyz` answered 200).
pub struct Dev {
    pub proc: Proc,
    /// `http://host:port` of the gRPC API, for `--server`.
    pub server: String,
    /// `host:port` of the metrics and health endpoints.
    pub http: String,
}

impl Dev {
    /// Starts `herald dev` and waits (bounded) until it is ready.
    pub fn start() -> Dev {
        let proc = Proc::spawn(
            "herald dev",
            &[
                "dev",
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ],
        );
        let grpc = address_in(&proc.line_where("the gRPC API address", |l| {
            l.trim_start().starts_with("gRPC API")
        }));
        let http = address_in(&proc.line_where("the metrics address", |l| {
            l.trim_start().starts_with("metrics/health")
        }));
        // Readiness, the way an orchestrator probes it: bounded polling.
        let deadline = Instant::now() + PATIENCE;
        while !matches!(http_get(&http, "/readyz"), Ok((200, _))) {
            if Instant::now() > deadline {
                proc.fail("/readyz never answered 200");
            }
            thread::sleep(Duration::from_millis(50));
        }
        Dev {
            proc,
            server: format!("http://{grpc}"),
            http,
        }
    }
}
