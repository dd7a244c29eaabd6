//! A real Prometheus server for tests: Debian's `prometheus` package (the
//! `prometheus` and `promtool` binaries on `PATH`), run as a child process
//! with its own config and TSDB in the test's run directory, on a loopback
//! port, killed when dropped. Queries go through its HTTP API.
//!
//! Not part of `support/mod.rs` (owned elsewhere): a test includes it with
//! `#[path = "support/prometheus.rs"] mod prometheus;` next to `mod support;`.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::procs::ChildProc;

/// The two binaries of Debian's `prometheus` package.
pub struct Tools {
    /// The server.
    pub prometheus: PathBuf,
    /// Its command-line checker.
    pub promtool: PathBuf,
}

/// Whether a missing Prometheus fails the test (CI, or
/// `HERALD_REQUIRE_PROMETHEUS` set) rather than skipping it.
pub fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("HERALD_REQUIRE_PROMETHEUS").is_some()
}

/// The binaries, found on `PATH`; `None` (with a `SKIPPED` line) when
/// either is missing and [`required`] is false. Panics when they are
/// missing and required.
pub fn tools_or_skip(test: &str) -> Option<Tools> {
    let prometheus = on_path("prometheus");
    let promtool = on_path("promtool");
    match (prometheus, promtool) {
        (Some(prometheus), Some(promtool)) => Some(Tools {
            prometheus,
            promtool,
        }),
        _ if required() => panic!(
            "{test}: `prometheus` and `promtool` must be on PATH (CI or \
             HERALD_REQUIRE_PROMETHEUS is set): apt-get install prometheus"
        ),
        _ => {
            eprintln!(
                "{test}: SKIPPED (real Prometheus tier): install Debian's prometheus \
                 package (apt-get install prometheus) to run it"
            );
            None
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `promtool check rules <file>`: its output, or why it failed.
pub fn check_rules(promtool: &Path, rules: &Path) -> Result<String, String> {
    let out = Command::new(promtool)
        .arg("check")
        .arg("rules")
        .arg(rules)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", promtool.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "promtool check rules {} failed ({}):\n{text}",
            rules.display(),
            out.status
        ))
    }
}

/// A Prometheus server scraping `targets` every second and evaluating
/// `rule_file` every second.
pub struct Prometheus {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The process; killed on drop.
    proc: ChildProc,
}

/// The config file: one job `herald` (the job name the alert rules use),
/// scraped and evaluated every second.
fn config_yaml(targets: &[String], rule_file: &Path) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - \"{}\"\n\
         scrape_configs:\n  - job_name: herald\n    metrics_path: /metrics\n    \
         static_configs:\n      - targets: [{}]\n",
        rule_file.display(),
        targets.join(", ")
    )
}

/// A loopback port that was free a moment ago (Prometheus takes no port 0).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

impl Prometheus {
    /// Writes `dir/prometheus.yml`, starts the server with its TSDB in
    /// `dir/prometheus-data`, and waits (up to `timeout`) until it says it
    /// is ready. Blocking: call it from `block_in_place`.
    pub fn start(
        bin: &Path,
        dir: &Path,
        targets: &[String],
        rule_file: &Path,
        timeout: Duration,
    ) -> Self {
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml(targets, rule_file)).expect("write prometheus.yml");
        // The port is free when picked but may be taken before Prometheus
        // binds it: then it exits, and we try another port.
        let mut last_error = String::new();
        for attempt in 1..=3 {
            let listen = format!("127.0.0.1:{}", free_port());
            let mut cmd = Command::new(bin);
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("prometheus-data").display()
                ))
                .arg(format!("--web.listen-address={listen}"))
                .arg("--log.level=info");
            let mut proc = ChildProc::spawn_command(&format!("prometheus-{attempt}"), dir, cmd);
            match proc.wait_for_line("Server is ready to receive web requests", timeout) {
                Ok(_) => {
                    return Self {
                        base: format!("http://{listen}"),
                        proc,
                    };
                }
                Err(e) => last_error = e,
            }
        }
        panic!("Prometheus did not start: {last_error}");
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.proc.log_path
    }

    /// `GET <base><path_and_query>` of the HTTP API, parsed; `Err` on a
    /// transport error, a non-JSON body or `"status": "error"` (with
    /// Prometheus's `errorType` and `error`).
    pub async fn api(&self, path_and_query: &str) -> Result<Value, String> {
        let url = format!("{}{path_and_query}", self.base);
        let a = herald_testkit::http::get(&url)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let v: Value = serde_json::from_slice(&a.body)
            .map_err(|e| format!("GET {url}: {} is not JSON ({e}): {}", a.status, a.text()))?;
        if v["status"] != "success" {
            return Err(format!(
                "{}: {} (HTTP {})",
                v["errorType"].as_str().unwrap_or("?"),
                v["error"].as_str().unwrap_or("?"),
                a.status
            ));
        }
        Ok(v["data"].clone())
    }

    /// An instant query (`/api/v1/query`) at the current time.
    pub async fn query(&self, promql: &str) -> Result<QueryResult, String> {
        let data = self
            .api(&format!("/api/v1/query?query={}", encode(promql)))
            .await?;
        Ok(QueryResult::from_data(&data))
    }

    /// The values of `label` over series matching `selector`
    /// (`/api/v1/label/<label>/values?match[]=...`), as Grafana's
    /// `label_values(selector, label)` asks for them.
    pub async fn label_values(&self, label: &str, selector: &str) -> Result<Vec<String>, String> {
        let data = self
            .api(&format!(
                "/api/v1/label/{}/values?{}={}",
                encode(label),
                encode("match[]"),
                encode(selector)
            ))
            .await?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }
}

/// Percent-encodes a query-string component.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// What an instant query returned, reduced to what the tests check.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// `vector`, `scalar`, `matrix` or `string`.
    pub result_type: String,
    /// One `(labels, value)` per series (a scalar is one, with no labels).
    pub series: Vec<(String, f64)>,
}

impl QueryResult {
    fn from_data(data: &Value) -> Self {
        let result_type = data["resultType"].as_str().unwrap_or("?").to_string();
        let value = |pair: &Value| -> f64 {
            pair[1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        let series = match result_type.as_str() {
            "scalar" => vec![(String::new(), value(&data["result"]))],
            _ => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| (s["metric"].to_string(), value(&s["value"])))
                .collect(),
        };
        Self {
            result_type,
            series,
        }
    }

    /// No series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Some series has a finite, non-zero value.
    pub fn has_nonzero(&self) -> bool {
        self.series.iter().any(|(_, v)| v.is_finite() && *v != 0.0)
    }

    /// The values, for messages.
    pub fn shown(&self) -> String {
        let parts: Vec<String> = self
            .series
            .iter()
            .map(|(labels, v)| format!("{labels} {v}"))
            .collect();
        format!("[{}]", parts.join(", "))
    }
}
