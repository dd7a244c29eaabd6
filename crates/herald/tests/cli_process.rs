//! Runs the built `herald` binary as separate processes, the way the README's
//! walkthrough does: `herald dev` on port 0, `herald listen` on port 0, then
//! `herald endpoint …` and `herald publish` against the dev server, and
//! finally SIGTERM to `herald dev`, which must drain and exit 0.
//!
//! Synchronisation is by reading the children's stdout line by line (the
//! addresses `herald dev` and `herald listen` print, the block `herald listen`
//! prints per delivery); the timeouts are failure guards only. The one poll
//! is the bounded wait for `/readyz` to answer 200, as a deployment would.
//! Every child is killed if the test fails (see [`Proc`]).
#![cfg(unix)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
/// The secret the walkthrough uses (the Standard Webhooks test vector's).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Failure guard for anything the test waits for; never a synchronisation device.
const PATIENCE: Duration = Duration::from_secs(90);

/// A `herald` child process whose stdout arrives line by line on a channel
/// and whose stderr is collected (drained, so the child never blocks on a
/// full pipe). Dropping it kills the child.
struct Proc {
    name: &'static str,
    child: Option<Child>,
    pid: u32,
    lines: Receiver<String>,
    /// Everything read from stdout so far, for failure messages.
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(name: &'static str, args: &[&str]) -> Proc {
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
    fn line_where(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
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
    fn next_line(&self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(e) => self.fail(&format!("no further stdout line: {e}")),
        }
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "{} (pid {}): {why}\n--- stdout ---\n{}\n--- stderr (tail) ---\n{}",
            self.name,
            self.pid,
            self.stdout.lock().unwrap(),
            tail(&self.stderr.lock().unwrap(), 4000),
        )
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit.
    fn terminate(&mut self) -> ExitStatus {
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
fn signal(pid: u32, name: &str) -> ExitStatus {
    Command::new("sh")
        .args(["-c", r#"kill -s "$1" "$2""#, "sh", name, &pid.to_string()])
        .status()
        .expect("run sh -c kill")
}

/// A `herald` command with no `HERALD_*` variables inherited, so the
/// surrounding environment cannot change what the test exercises.
fn herald() -> Command {
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
fn run(args: &[&str]) -> Output {
    herald()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `herald {}`: {e}", args.join(" ")))
}

/// Runs a client command that must succeed and print one JSON value.
fn run_json(args: &[&str]) -> Value {
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
fn run_failing(args: &[&str]) -> String {
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
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
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
fn address_in(line: &str) -> String {
    let rest = line
        .split_once("http://")
        .unwrap_or_else(|| panic!("no http:// address in {line:?}"))
        .1;
    rest.split(|c: char| c == '/' || c.is_whitespace())
        .next()
        .unwrap()
        .to_owned()
}

/// The value of one series (`name{labels}`) in Prometheus text output.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[test]
fn readme_walkthrough_with_real_processes() {
    // 1. `herald dev`, on free ports.
    let mut dev = Proc::spawn(
        "herald dev",
        &[
            "dev",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ],
    );
    let grpc = address_in(&dev.line_where("the gRPC API address", |l| {
        l.trim_start().starts_with("gRPC API")
    }));
    let http = address_in(&dev.line_where("the metrics address", |l| {
        l.trim_start().starts_with("metrics/health")
    }));
    dev.line_where("the in-memory warning", |l| {
        l.starts_with("WARNING:") && l.contains("nothing is persisted")
    });
    let server = format!("http://{grpc}");
    let server = server.as_str();

    // Readiness, the way an orchestrator probes it: bounded polling of /readyz.
    let mut ready = None;
    for _ in 0..600 {
        match http_get(&http, "/readyz") {
            Ok((200, body)) => {
                ready = Some(body);
                break;
            }
            Ok(_) | Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
    let ready = ready.unwrap_or_else(|| dev.fail("/readyz never answered 200"));
    let ready: Value = serde_json::from_str(&ready).expect("/readyz body is JSON");
    assert_eq!(ready["ready"], true, "{ready}");
    for component in ["kafka", "registry", "dispatcher"] {
        assert_eq!(ready["components"][component]["ready"], true, "{ready}");
    }
    assert_eq!(
        http_get(&http, "/healthz").unwrap(),
        (200, "{\"alive\":true}".to_owned())
    );

    // 2. `herald listen` with the endpoint's secret, on a free port.
    let listen = Proc::spawn(
        "herald listen",
        &["listen", "--port", "0", "--secret", SECRET],
    );
    let first = listen.next_line();
    assert!(
        first.starts_with("listening on http://127.0.0.1:"),
        "{first}"
    );
    let listen_addr = address_in(&first);
    let second = listen.next_line();
    assert!(
        second.starts_with("verifying Standard Webhooks signatures"),
        "{second}"
    );
    let hook = format!("http://{listen_addr}/hook");

    // 3. The README's endpoint: id `demo`, pointing at the listener, with its secret.
    let created = run_json(&[
        "endpoint", "create", "--server", server, "--id", "demo", "--url", &hook, "--secret",
        SECRET, "--output", "json",
    ]);
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(id, "demo", "{created}");
    assert_eq!(created["secret"], SECRET, "{created}");
    assert_eq!(created["url"], hook.as_str(), "{created}");
    assert_eq!(
        (created["enabled"].as_bool(), created["ordered"].as_bool()),
        (Some(true), Some(true)),
        "{created}"
    );

    // Without --id and --secret, both are generated.
    let other = run_json(&[
        "endpoint", "create", "--server", server, "--url", &hook, "--output", "json",
    ]);
    let other_id = other["id"].as_str().expect("id").to_owned();
    assert!(other_id.starts_with("ep_"), "{other}");
    assert!(
        other["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_") && s != SECRET),
        "{other}"
    );

    // get and list show the endpoints, never a secret.
    let got = run_json(&[
        "endpoint", "get", &id, "--server", server, "--output", "json",
    ]);
    assert_eq!(got["id"], id.as_str(), "{got}");
    assert_eq!(got["url"], hook.as_str(), "{got}");
    assert!(
        got.get("secret").is_none(),
        "get must not show the secret: {got}"
    );
    let listed = run_json(&["endpoint", "list", "--server", server, "--output", "json"]);
    let ids: Vec<&str> = listed
        .as_array()
        .expect("list is an array")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert!(
        ids.contains(&id.as_str()) && ids.contains(&other_id.as_str()),
        "{listed}"
    );
    let text = run(&["endpoint", "list", "--server", server]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with("ID ") && text.contains(&id) && text.contains(&hook),
        "{text}"
    );

    // 4. Publish; the listener prints the delivery with a verified signature.
    let published = run_json(&[
        "publish",
        "--server",
        server,
        "--endpoint",
        &id,
        "--type",
        "invoice.paid",
        "--data",
        r#"{"invoice":"in_1001","amount":4200}"#,
        "--output",
        "json",
    ]);
    let event_id = published["event_id"].as_str().expect("event_id").to_owned();
    assert!(event_id.starts_with("msg_"), "{published}");
    assert!(
        published["partition"].as_i64().is_some_and(|p| p >= 0),
        "{published}"
    );
    assert!(
        published["offset"].as_i64().is_some_and(|o| o >= 0),
        "{published}"
    );
    assert_eq!(published["duplicate"], false, "{published}");

    let webhook_id = format!("webhook-id={event_id}");
    let delivery = listen.line_where(&webhook_id, |l| l.contains(&webhook_id));
    assert_eq!(
        delivery,
        format!("--> POST /hook  {webhook_id}  verified ✔")
    );
    let body: Vec<String> = std::iter::from_fn(|| Some(listen.next_line()))
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        body.join("\n"),
        "{\n  \"invoice\": \"in_1001\",\n  \"amount\": 4200\n}"
    );

    // The same idempotency key twice: one event id, the second from the cache.
    let key_args = |data: &'static str| {
        vec![
            "publish",
            "--server",
            server,
            "--endpoint",
            id.as_str(),
            "--type",
            "invoice.paid",
            "--data",
            data,
            "--idempotency-key",
            "order-7",
            "--output",
            "json",
        ]
    };
    let first = run_json(&key_args(r#"{"order":7}"#));
    let again = run_json(&key_args(r#"{"order":7}"#));
    assert_eq!(first["event_id"], again["event_id"], "{first} {again}");
    assert_eq!(
        (first["duplicate"].as_bool(), again["duplicate"].as_bool()),
        (Some(false), Some(true))
    );
    let keyed_id = format!("webhook-id={}", first["event_id"].as_str().unwrap());
    let delivery = listen.line_where(&keyed_id, |l| l.contains(&keyed_id));
    assert!(delivery.ends_with("verified ✔"), "{delivery}");

    // 5. Errors: a non-zero exit and the gRPC code on stderr.
    let err = run_failing(&[
        "publish",
        "--server",
        server,
        "--endpoint",
        "no-such-endpoint",
        "--type",
        "t",
        "--data",
        "{}",
    ]);
    assert!(
        err.contains("NOT_FOUND") && err.contains("no-such-endpoint"),
        "{err}"
    );
    let err = run_failing(&[
        "publish",
        "--server",
        server,
        "--endpoint",
        &id,
        "--type",
        "",
        "--data",
        "{}",
    ]);
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("event_type"),
        "{err}"
    );
    let err = run_failing(&[
        "endpoint",
        "create",
        "--server",
        server,
        "--url",
        "ftp://example.com/hook",
    ]);
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("url"),
        "{err}"
    );
    let err = run_failing(&["endpoint", "get", "no-such-endpoint", "--server", server]);
    assert!(err.contains("NOT_FOUND"), "{err}");

    // The counters Prometheus scrapes saw the publishes.
    let (status, metrics) = http_get(&http, "/metrics").unwrap();
    assert_eq!(status, 200);
    // Three publishes succeeded (one of them answered from the idempotency cache).
    assert_eq!(
        sample(&metrics, r#"herald_events_published_total{outcome="ok"}"#),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"herald_events_published_total{outcome="not_found"}"#
        ),
        Some(1.0),
        "{metrics}"
    );

    // 6. SIGTERM: `herald dev` drains, says so and exits 0.
    let status = dev.terminate();
    dev.line_where("the stop message", |l| l == "Herald dev stopped.");
    assert!(
        status.success(),
        "herald dev exited with {status}; stderr:\n{}",
        tail(&dev.stderr.lock().unwrap(), 4000)
    );
    drop(listen);
}
