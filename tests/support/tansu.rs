//! The persistent standalone broker tier: tansu (a Kafka-protocol broker)
//! as a child process with SQLite storage in the run directory, so a test can
//! kill it and start it again on the same port with everything it had.
//!
//! The binary is found through `HERALD_TANSU`, then the cache `.ci/run`
//! installs it to (`~/.cache/herald-ci/tansu-0.6.0/bin/tansu`), then `PATH`.
//! Without one, [`TansuBroker::binary`] returns `None`: tests print how to
//! install it and pass, unless `HERALD_REQUIRE_TANSU` is set (`.ci/run` sets
//! it, so CI never skips this tier).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::procs::ChildProc;

/// How `.ci/run` installs the broker (for messages).
pub const INSTALL: &str = "cargo install tansu --version 0.6.0 --locked --no-default-features \
     --features libsql,dynostore --root ~/.cache/herald-ci/tansu-0.6.0";

/// A tansu broker process and what it needs to start again.
pub struct TansuBroker {
    /// The running process (None while stopped).
    pub proc: Option<ChildProc>,
    /// `host:port` for `kafka.brokers`.
    pub bootstrap: String,
    binary: PathBuf,
    dir: PathBuf,
    addr: SocketAddr,
    starts: usize,
}

impl TansuBroker {
    /// The tansu binary, if one is installed (see the module docs). Panics
    /// when none is and `HERALD_REQUIRE_TANSU` is set.
    pub fn binary() -> Option<PathBuf> {
        let from_env = std::env::var_os("HERALD_TANSU").map(PathBuf::from);
        let cached = std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/herald-ci/tansu-0.6.0/bin/tansu"));
        let on_path = std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("tansu"))
                .find(|f| f.is_file())
        });
        let found = [from_env, cached, on_path]
            .into_iter()
            .flatten()
            .find(|f| f.is_file());
        if found.is_none() {
            let msg = format!(
                "no tansu broker binary (HERALD_TANSU, ~/.cache/herald-ci/tansu-0.6.0/bin/tansu or PATH); install it with: {INSTALL}"
            );
            if std::env::var_os("HERALD_REQUIRE_TANSU").is_some() {
                panic!("{msg}");
            }
            eprintln!("SKIPPED (standalone-broker tier): {msg}");
        }
        found
    }

    /// Starts tansu with its SQLite file in `dir`, on a free loopback port,
    /// and waits until it accepts connections.
    pub fn start(binary: PathBuf, dir: &Path) -> Self {
        // tansu advertises the port it listens on, so it cannot take port 0;
        // ask the kernel for a free one.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        let mut broker = Self {
            proc: None,
            bootstrap: addr.to_string(),
            binary,
            dir: dir.to_path_buf(),
            addr,
            starts: 0,
        };
        broker.start_again();
        broker
    }

    /// Starts the process (again), on the same port and storage.
    pub fn start_again(&mut self) {
        assert!(self.proc.is_none(), "tansu is already running");
        let url = format!("tcp://{}", self.addr);
        let mut cmd = Command::new(&self.binary);
        cmd.current_dir(&self.dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                // Relative to the working directory: the run directory.
                "--storage-engine",
                "sqlite://tansu.db",
                "--silent",
            ])
            .env("RUST_LOG", "warn");
        self.starts += 1;
        let proc = ChildProc::spawn_command("tansu", &self.dir, cmd);
        self.proc = Some(proc);
        self.wait_accepting(Duration::from_secs(60));
    }

    /// Kills the process (SIGKILL): what it acknowledged stays in its file.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// Kills it and starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill9();
        self.start_again();
    }

    /// Times the process was started.
    pub fn starts(&self) -> usize {
        self.starts
    }

    fn wait_accepting(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            if TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok() {
                return;
            }
            let proc = self.proc.as_mut().expect("started");
            assert!(
                proc.is_running(),
                "tansu exited at start; log: {}",
                proc.log_path.display()
            );
            assert!(
                Instant::now() < deadline,
                "tansu did not accept connections on {} within {timeout:?}; log: {}",
                self.addr,
                proc.log_path.display()
            );
            // Readiness poll of a child process that prints nothing when
            // ready: bounded, backing off.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}
