//! The Kubernetes manifests under `deploy/kubernetes/`: every object of a
//! directory, the Deployments' containers as [`Container`]s (with `--config`
//! resolved through their ConfigMap mounts and the grace period net of a
//! preStop sleep), label selectors and ports, and the dispatcher rollout
//! rules (`strategy`, `minReadySeconds`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_yaml_ng::Value;

use crate::cli::Cli;
use crate::compose::config_path;
use crate::dockerfile::{self, Dockerfile};
use crate::node::{self, Checked, Container};
use crate::{repo_root, yaml_str};

pub const KUBERNETES: &str = "deploy/kubernetes";

/// Kubernetes' `terminationGracePeriodSeconds` when unset.
const KUBE_DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// One object of a manifest.
#[derive(Debug, Clone)]
pub struct Object {
    /// `deploy/kubernetes/dispatch.yaml`
    pub file: String,
    pub doc: Value,
}

impl Object {
    pub fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or_default()
    }
    pub fn namespace(&self) -> &str {
        self.doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
    }
    /// `deploy/kubernetes/dispatch.yaml: Deployment herald-dispatch`
    pub fn origin(&self) -> String {
        format!("{}: {} {}", self.file, self.kind(), self.name())
    }
}

/// The `.yaml` files of `dir` (relative to the repository), not recursive.
pub fn yaml_files(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join(dir))
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .map(|p| format!("{dir}/{}", p.file_name().expect("a name").to_string_lossy()))
        .collect();
    files.sort();
    files
}

/// Every object in the `.yaml` files of `dir` except kustomization.yaml.
pub fn load_dir(dir: &str) -> Vec<Object> {
    let mut out = Vec::new();
    for file in yaml_files(dir) {
        if file.ends_with("/kustomization.yaml") {
            continue;
        }
        let text = crate::read(&file);
        // Documents are separated by `---` lines.
        let mut docs = vec![String::new()];
        for line in text.lines() {
            if line.trim_end() == "---" {
                docs.push(String::new());
            } else {
                let last = docs.last_mut().expect("one document");
                last.push_str(line);
                last.push('\n');
            }
        }
        for d in docs {
            let doc: Value =
                serde_yaml_ng::from_str(&d).unwrap_or_else(|e| panic!("{file}: not YAML: {e}"));
            if !doc.is_null() {
                out.push(Object {
                    file: file.clone(),
                    doc,
                });
            }
        }
    }
    out
}

/// `herald.toml` (or any key) of the ConfigMap `name`.
pub fn configmap_file<'a>(
    objs: &'a [Object],
    name: &str,
    key: &str,
) -> Option<(&'a Object, String)> {
    let cm = objs
        .iter()
        .find(|o| o.kind() == "ConfigMap" && o.name() == name)?;
    cm.doc["data"][key].as_str().map(|t| (cm, t.to_string()))
}

/// The one ConfigMap holding a `herald.toml`: (object, text).
pub fn herald_toml(objs: &[Object]) -> (&Object, String) {
    let found: Vec<_> = objs
        .iter()
        .filter(|o| o.kind() == "ConfigMap" && o.doc["data"]["herald.toml"].is_string())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{KUBERNETES}: expected one ConfigMap with a herald.toml key, found {}",
        found.len()
    );
    let cm = found[0];
    (cm, yaml_str(&cm.doc["data"]["herald.toml"]))
}

/// The herald containers of a Deployment (those whose image is `herald`
/// or `herald:TAG`), each with its raw YAML.
pub fn containers(dep: &Object, objs: &[Object], image: &Dockerfile) -> Vec<(Container, Value)> {
    let spec = &dep.doc["spec"]["template"]["spec"];
    let pod_grace = match spec["terminationGracePeriodSeconds"].as_u64() {
        Some(s) => (
            Duration::from_secs(s),
            "terminationGracePeriodSeconds".to_string(),
        ),
        None => (
            KUBE_DEFAULT_GRACE,
            "terminationGracePeriodSeconds (unset: Kubernetes' default)".to_string(),
        ),
    };
    let mut out = Vec::new();
    for c in spec["containers"].as_sequence().into_iter().flatten() {
        let img = yaml_str(&c["image"]);
        let repo = img.split(':').next().unwrap_or_default();
        if Path::new(repo).file_name().is_none_or(|n| n != "herald") {
            continue;
        }
        let origin = format!("{}: container {}", dep.origin(), yaml_str(&c["name"]));
        let args: Option<Vec<String>> = c["args"]
            .as_sequence()
            .map(|a| a.iter().map(yaml_str).collect());
        let mut argv = Vec::new();
        match c["command"].as_sequence() {
            Some(cmd) => {
                // `command` replaces the image's ENTRYPOINT.
                let cmd: Vec<String> = cmd.iter().map(yaml_str).collect();
                argv.push(format!("<command: {:?}>", cmd));
                if cmd
                    .first()
                    .is_some_and(|p| Path::new(p).file_name().is_some_and(|n| n == "herald"))
                {
                    argv = cmd[1..].to_vec();
                }
                argv.extend(args.unwrap_or_default());
            }
            None => {
                argv.extend(image.entrypoint_args.clone());
                argv.extend(args.unwrap_or_else(|| image.cmd.clone()));
            }
        }
        let env = c["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    yaml_str(&e["name"]),
                    e["value"].as_str().map(str::to_string),
                )
            })
            .collect();
        let ports = c["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["name"].as_str().map(str::to_string),
                    p["containerPort"].as_u64().unwrap_or(0) as u16,
                )
            })
            .collect();
        // The grace period counts from the start of the preStop hook:
        // herald gets SIGTERM only after it.
        let pre_stop = pre_stop_sleep(c);
        let grace = if pre_stop.is_zero() {
            pod_grace.clone()
        } else {
            (
                pod_grace.0.saturating_sub(pre_stop),
                format!(
                    "{} ({}s) minus the preStop sleep ({}s)",
                    pod_grace.1,
                    pod_grace.0.as_secs(),
                    pre_stop.as_secs()
                ),
            )
        };
        let (config_file, config_error) = match config_path(&argv) {
            None => (None, None),
            Some(path) => match mounted(c, spec, objs, &path) {
                Ok(f) => (Some(f), None),
                Err(e) => (None, Some(e)),
            },
        };
        out.push((
            Container {
                origin,
                argv,
                env,
                ports,
                config_file,
                config_error,
                grace,
            },
            c.clone(),
        ));
    }
    out
}

/// How long the container's preStop hook sleeps (`sleep: {seconds}` or
/// `exec: ["sleep", "N"]`); zero without one.
fn pre_stop_sleep(c: &Value) -> Duration {
    let hook = &c["lifecycle"]["preStop"];
    if let Some(s) = hook["sleep"]["seconds"].as_u64() {
        return Duration::from_secs(s);
    }
    let cmd: Vec<String> = hook["exec"]["command"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(yaml_str)
        .collect();
    match cmd.as_slice() {
        [sleep, n] if sleep.ends_with("sleep") => Duration::from_secs(
            n.parse()
                .unwrap_or_else(|_| panic!("preStop `sleep {n}`: not whole seconds")),
        ),
        [] => Duration::ZERO,
        other => panic!("a preStop hook {other:?}: this test understands only `sleep N`"),
    }
}

/// The ConfigMap key behind the container path `path`: (label, text).
fn mounted(
    c: &Value,
    pod: &Value,
    objs: &[Object],
    path: &str,
) -> Result<(String, String), String> {
    for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
        let mount = yaml_str(&m["mountPath"]);
        let sub = m["subPath"].as_str();
        let key_path = match sub {
            Some(s) if path == mount => s.to_string(),
            Some(_) => continue,
            None => match path.strip_prefix(&format!("{}/", mount.trim_end_matches('/'))) {
                Some(rest) => rest.to_string(),
                None => continue,
            },
        };
        let vname = yaml_str(&m["name"]);
        let vol = pod["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|v| v["name"].as_str() == Some(vname.as_str()))
            .ok_or_else(|| format!("the volume {vname:?} mounted at {mount} is not in the pod"))?;
        let cm_name = vol["configMap"]["name"]
            .as_str()
            .ok_or_else(|| format!("{path} is on volume {vname:?}, which is not a ConfigMap (this test reads only ConfigMaps)"))?;
        // `items` maps keys to other paths.
        let key = vol["configMap"]["items"]
            .as_sequence()
            .and_then(|items| {
                items
                    .iter()
                    .find(|i| i["path"].as_str() == Some(key_path.as_str()))
                    .map(|i| yaml_str(&i["key"]))
            })
            .unwrap_or(key_path.clone());
        return match configmap_file(objs, cm_name, &key) {
            Some((cm, text)) => Ok((format!("{} (ConfigMap {cm_name}, key {key})", cm.file), text)),
            None => Err(format!("{path} is key {key:?} of ConfigMap {cm_name:?}, which has no such key (or does not exist)")),
        };
    }
    Err(format!("no volumeMount holds {path}"))
}

/// Whether `labels` satisfy a `matchLabels`/Service selector.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(sel) = selector.as_mapping() else {
        return false;
    };
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Named ports of a container: name → port.
pub fn named_ports(c: &Container) -> BTreeMap<String, u16> {
    c.ports
        .iter()
        .filter_map(|(n, p)| n.clone().map(|n| (n, *p)))
        .collect()
}

/// A probe's or Service's port (a number or a name) as a number.
pub fn resolve_port(port: &Value, c: &Container) -> Result<u16, String> {
    match port {
        Value::Number(n) => n
            .as_u64()
            .map(|n| n as u16)
            .ok_or_else(|| format!("{n:?} is not a port")),
        Value::String(s) => match s.parse() {
            Ok(n) => Ok(n),
            Err(_) => named_ports(c).get(s).copied().ok_or_else(|| {
                format!(
                    "port name {s:?} is not among the container's ports {:?}",
                    named_ports(c)
                )
            }),
        },
        other => Err(format!("{other:?} is not a port")),
    }
}

/// Every Deployment's herald containers; `None` where the common checks
/// failed (already reported).
pub type Pod = (Object, Container, Value, Option<Checked>);

pub fn checked_pods(cli: &Cli, objs: &[Object], errors: &mut Vec<String>) -> Vec<Pod> {
    let image = dockerfile::load();
    let mut out = Vec::new();
    for dep in objs.iter().filter(|o| o.kind() == "Deployment") {
        let cs = containers(dep, objs, &image);
        if cs.is_empty() {
            errors.push(format!(
                "{}: no container runs the herald image",
                dep.origin()
            ));
        }
        for (c, raw) in cs {
            let ch = node::check(cli, &c, errors);
            out.push((dep.clone(), c, raw, ch));
        }
    }
    out
}

/// A dispatcher rollout replaces one pod at a time, and waits for the
/// rebalance its new pod caused to settle before stopping the next old one.
pub fn check_dispatch_rollout(dep: &Object, cfg: &herald_core::Config, errors: &mut Vec<String>) {
    let o = dep.origin();
    let spec = &dep.doc["spec"];
    let ru = &spec["strategy"]["rollingUpdate"];
    if yaml_str(&spec["strategy"]["type"]) != "RollingUpdate"
        || !["0", "0%"].contains(&yaml_str(&ru["maxUnavailable"]).as_str())
    {
        errors.push(format!(
            "{o}: a dispatcher rollout must be RollingUpdate with maxUnavailable 0 (a new pod joins before an old one leaves)"
        ));
    }
    if !["1", "0"].contains(&yaml_str(&ru["maxSurge"]).as_str()) {
        errors.push(format!("{o}: maxSurge {:?}: more than one new dispatcher at a time means overlapping rebalances", yaml_str(&ru["maxSurge"])));
    }
    // Readiness says "subscribed"; the partitions come with the rebalance
    // that follows (every member rejoins within a session timeout), and
    // the partitions revoked from others finish or abandon their in-flight
    // deliveries within the drain timeout.
    let need =
        (cfg.dispatch.drain_timeout_ms + u64::from(cfg.kafka.session_timeout_ms)).div_ceil(1000);
    let have = spec["minReadySeconds"].as_u64().unwrap_or(0);
    if have < need {
        errors.push(format!(
            "{o}: minReadySeconds is {have}, below dispatch.drain_timeout_ms + kafka.session_timeout_ms = {need}s: \
             the next old dispatcher would stop before the rebalance that gave the new one its partitions settled"
        ));
    }
}
