//! `deploy/compose/docker-compose.yml` read as Docker Compose does (anchors
//! and `<<` merge keys applied), turned into [`Container`]s, plus its own
//! checks: health-check URLs and the Prometheus scrape targets.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_yaml_ng::Value;

use crate::dockerfile::Dockerfile;
use crate::node::Container;
use crate::{read, repo_root, yaml_str};

pub const COMPOSE: &str = "deploy/compose/docker-compose.yml";
pub const PROMETHEUS: &str = "deploy/prometheus/prometheus.yml";

/// Docker's stop timeout when `stop_grace_period` is not set.
const DOCKER_DEFAULT_STOP: Duration = Duration::from_secs(10);

/// The compose file with merges applied.
pub fn load() -> Value {
    let mut v: Value = serde_yaml_ng::from_str(&read(COMPOSE))
        .unwrap_or_else(|e| panic!("{COMPOSE}: not YAML: {e}"));
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{COMPOSE}: merge keys: {e}"));
    v
}

/// Services that run the herald image (built from deploy/Dockerfile, or
/// using the image such a service builds), by name.
pub fn herald_services(doc: &Value, image: &Dockerfile) -> BTreeMap<String, (Container, Value)> {
    let services = doc["services"].as_mapping().expect("services");
    let built: Vec<String> = services
        .values()
        .filter(|s| {
            s["build"]["dockerfile"]
                .as_str()
                .is_some_and(|d| d.ends_with("deploy/Dockerfile"))
        })
        .filter_map(|s| s["image"].as_str().map(str::to_string))
        .collect();
    let mut out = BTreeMap::new();
    for (name, s) in services {
        let name = yaml_str(name);
        let is_herald = s["build"]["dockerfile"]
            .as_str()
            .is_some_and(|d| d.ends_with("deploy/Dockerfile"))
            || s["image"]
                .as_str()
                .is_some_and(|i| built.iter().any(|b| b == i));
        if !is_herald {
            continue;
        }
        out.insert(name.clone(), (container(&name, s, image), s.clone()));
    }
    out
}

fn container(name: &str, s: &Value, image: &Dockerfile) -> Container {
    let origin = format!("{COMPOSE}: service {name}");
    let mut argv = image.entrypoint_args.clone();
    match &s["command"] {
        Value::Sequence(items) => argv.extend(items.iter().map(yaml_str)),
        Value::String(line) => argv.extend(line.split_whitespace().map(str::to_string)),
        _ => argv.extend(image.cmd.clone()),
    }
    let env = match &s["environment"] {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| (yaml_str(k), Some(yaml_str(v))))
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .map(|i| {
                let i = yaml_str(i);
                match i.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (i, None),
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    let ports = s["ports"]
        .as_sequence()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| match p {
                    Value::Mapping(_) => p["target"].as_u64().map(|t| (None, t as u16)),
                    _ => {
                        let spec = yaml_str(p);
                        let spec = spec.split('/').next().unwrap_or_default().to_string();
                        spec.rsplit(':')
                            .next()
                            .and_then(|t| t.parse().ok())
                            .map(|t| (None, t))
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let (config_file, config_error) = match config_path(&argv) {
        None => (None, None),
        Some(path) => match mounted_file(s, &path) {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e)),
        },
    };
    let grace = match s["stop_grace_period"].as_str() {
        Some(g) => (
            parse_duration(g)
                .unwrap_or_else(|| panic!("{origin}: stop_grace_period {g:?} is not a duration")),
            "stop_grace_period".to_string(),
        ),
        None => (
            DOCKER_DEFAULT_STOP,
            "stop_grace_period (unset: Docker's default)".to_string(),
        ),
    };
    Container {
        origin,
        argv,
        env,
        ports,
        config_file,
        config_error,
        grace,
    }
}

/// The value after `--config` (or `--config=`), if any.
pub fn config_path(argv: &[String]) -> Option<String> {
    argv.iter().enumerate().find_map(|(i, a)| {
        if a == "--config" {
            argv.get(i + 1).cloned()
        } else {
            a.strip_prefix("--config=").map(str::to_string)
        }
    })
}

/// The host file behind the container path `path`, through a bind mount.
fn mounted_file(s: &Value, path: &str) -> Result<(String, String), String> {
    let compose_dir = repo_root().join(Path::new(COMPOSE).parent().expect("a dir"));
    for v in s["volumes"].as_sequence().into_iter().flatten() {
        let (src, dst) = match v {
            Value::Mapping(_) => (yaml_str(&v["source"]), yaml_str(&v["target"])),
            _ => {
                let spec = yaml_str(v);
                let mut parts = spec.split(':');
                (
                    parts.next().unwrap_or_default().to_string(),
                    parts.next().unwrap_or_default().to_string(),
                )
            }
        };
        let rest = if path == dst {
            Some(String::new())
        } else {
            path.strip_prefix(&format!("{}/", dst.trim_end_matches('/')))
                .map(|r| format!("/{r}"))
        };
        let Some(rest) = rest else { continue };
        if !(src.starts_with('.') || src.starts_with('/')) {
            return Err(format!(
                "{path} is in the named volume {src:?}, which this test can't read"
            ));
        }
        let host = compose_dir.join(format!("{src}{rest}"));
        let label = format!(
            "deploy/compose/{}",
            format!("{src}{rest}").trim_start_matches("./")
        );
        return std::fs::read_to_string(&host)
            .map(|t| (label.clone(), t))
            .map_err(|e| format!("{path} is mounted from {label}, which can't be read: {e}"));
    }
    Err(format!("no volume mounts {path} into the container"))
}

/// `30s`, `1m30s`, `500ms`, `2m` as Compose writes durations.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let secs = match unit.as_str() {
            "h" => n * 3600.0,
            "m" => n * 60.0,
            "s" => n,
            "ms" => n / 1000.0,
            "us" => n / 1e6,
            _ => return None,
        };
        total += Duration::from_secs_f64(secs);
        any = true;
    }
    if !num.is_empty() {
        return None;
    }
    any.then_some(total)
}

/// `http://host:port/path` URLs inside a health check's `test`.
pub fn healthcheck_urls(service: &Value) -> Vec<(u16, String)> {
    let words: Vec<String> = match &service["healthcheck"]["test"] {
        Value::Sequence(items) => items.iter().map(yaml_str).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    };
    words
        .iter()
        .flat_map(|w| w.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|w| {
            let rest = w.strip_prefix("http://")?;
            let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
            let port = hostport.rsplit_once(':')?.1.parse().ok()?;
            Some((port, format!("/{path}")))
        })
        .collect()
}

/// `(target host, port, role label)` of the `herald` scrape job.
pub fn scrape_targets() -> Vec<(String, u16, String)> {
    let doc: Value = serde_yaml_ng::from_str(&read(PROMETHEUS))
        .unwrap_or_else(|e| panic!("{PROMETHEUS}: not YAML: {e}"));
    let mut out = Vec::new();
    for job in doc["scrape_configs"].as_sequence().into_iter().flatten() {
        if job["job_name"].as_str() != Some("herald") {
            continue;
        }
        for sc in job["static_configs"].as_sequence().into_iter().flatten() {
            let role = yaml_str(&sc["labels"]["role"]);
            for t in sc["targets"].as_sequence().into_iter().flatten() {
                let t = yaml_str(t);
                let (host, port) = t
                    .rsplit_once(':')
                    .unwrap_or_else(|| panic!("{PROMETHEUS}: target {t:?} has no port"));
                out.push((
                    host.to_string(),
                    port.parse()
                        .unwrap_or_else(|_| panic!("{PROMETHEUS}: target {t:?}: bad port")),
                    role.clone(),
                ));
            }
        }
    }
    out
}
