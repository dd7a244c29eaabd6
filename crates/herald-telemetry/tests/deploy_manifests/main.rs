//! The Dockerfile, the compose stack and the Kubernetes manifests in
//! `deploy/` run the binary that this repository builds, the way it can run:
//!
//! - every command (`ENTRYPOINT`/`CMD`, compose `command:`, Kubernetes
//!   `command:`/`args:`) is a real `herald` subcommand with real flags, as
//!   the clap definitions in `crates/*/src` declare them ([`cli`]);
//! - every configuration a container gets (its `--config` file through the
//!   mounts, its `HERALD_*` variables, its flags) loads and validates with
//!   the real loader, `herald_core::config::ConfigLoader`;
//! - every `HERALD_*` variable set is read by something (a config key, a
//!   `secrets.keys[].env`, a flag's `env`), and every master key the config
//!   names is set;
//! - every declared port (`EXPOSE`, compose `ports:`, `containerPort`) is
//!   one the process listens on (`grpc.listen` on ingest nodes,
//!   `http.listen` everywhere), and probes, health checks, scrape targets,
//!   Services and the PodMonitor reach those ports;
//! - every node gets longer to stop than it may need (producer
//!   `message.timeout.ms` for ingest, `dispatch.drain_timeout_ms` for
//!   dispatchers, plus [`MARGIN`]), and a dispatcher rollout waits a drain
//!   and a rebalance between steps (`minReadySeconds`);
//! - the KEDA ScaledObject in `deploy/kubernetes/autoscaling/` scales the
//!   dispatch Deployment on the consumer group and topic its config names,
//!   never beyond the events topic's partition count;
//! - each kustomization lists exactly the manifests beside it.
//!
//! Files only: no Docker, no cluster, no `herald` binary.

mod autoscaling;
mod cli;
mod compose;
mod dockerfile;
mod kube;
mod node;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_core::config::ConfigLoader;
use serde_yaml_ng::Value;

use crate::kube::{Object, KUBERNETES};
use crate::node::{Checked, Container};

/// Time to stop beyond the waits Herald bounds itself: the final offset
/// commit, leaving the consumer group, flushing logs, exiting.
pub const MARGIN: Duration = Duration::from_secs(10);

const AUTOSCALING: &str = "deploy/kubernetes/autoscaling";
const MONITORING: &str = "deploy/kubernetes/monitoring";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

pub fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A YAML scalar as text (`"6"`, `6` and `true` alike); empty for others.
pub fn yaml_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn fail_on(errors: Vec<String>, what: &str) {
    assert!(
        errors.is_empty(),
        "{what}: {} problem(s):\n  - {}",
        errors.len(),
        errors.join("\n  - ")
    );
}

fn cli() -> cli::Cli {
    cli::Cli::load(&repo_root())
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// The reader of the clap definitions understands today's CLI; if this
/// fails, fix `cli.rs` before trusting the other tests.
#[test]
fn cli_model_reads_the_clap_definitions() {
    let cli = cli();
    let subs = cli.subcommands();
    for s in [
        "serve", "ingest", "dispatch", "dev", "listen", "endpoint", "publish",
    ] {
        assert!(
            subs.contains(&s.to_string()),
            "subcommand {s} not found in {subs:?}"
        );
    }
    let inv = cli
        .check(&argv(&[
            "dispatch",
            "--config",
            "/etc/herald/herald.toml",
            "--brokers=k:9092",
        ]))
        .expect("a dispatch command");
    assert_eq!(inv.path, ["dispatch"]);
    assert_eq!(
        inv.value("config").as_deref(),
        Some("/etc/herald/herald.toml")
    );
    assert_eq!(inv.value("brokers").as_deref(), Some("k:9092"));
    let err = cli
        .check(&argv(&["dispatch", "--conifg", "x"]))
        .unwrap_err();
    assert!(
        err.contains("--conifg") && err.contains("--config"),
        "{err}"
    );
    assert!(cli
        .check(&argv(&["dispatcher"]))
        .unwrap_err()
        .contains("not a herald subcommand"));
    assert!(cli
        .check(&argv(&["dispatch", "--config"]))
        .unwrap_err()
        .contains("needs a value"));
    let listen = cli
        .check(&argv(&["listen", "--host", "0.0.0.0"]))
        .expect("listen");
    assert_eq!(
        listen.value("port").as_deref(),
        Some("8080"),
        "listen's default port"
    );
    assert!(listen
        .env_names()
        .contains(&"HERALD_LISTEN_SECRET".to_string()));
    // A nested subcommand with a global flag of its parent.
    let create = cli
        .check(&argv(&[
            "endpoint",
            "create",
            "--id",
            "x",
            "--url",
            "http://r/",
            "--server",
            "http://i:50051",
        ]))
        .expect("endpoint create");
    assert_eq!(create.path, ["endpoint", "create"]);
    assert!(cli
        .check(&argv(&["endpoint"]))
        .unwrap_err()
        .contains("needs a subcommand"));

    // The environment probe agrees with the loader's rules.
    assert!(node::config_reads("HERALD_KAFKA_BROKERS"));
    assert!(node::config_reads("HERALD_ENDPOINT_HEALTH_COOL_DOWN"));
    assert!(
        !node::config_reads("HERALD_MASTER_KEY_K1"),
        "not a config key"
    );
    assert!(
        !node::config_reads("HERALD_AUTH_DISABLED"),
        "[auth] is file-only"
    );
}

#[test]
fn dockerfile_runs_a_real_command_and_exposes_its_ports() {
    let cli = cli();
    let image = dockerfile::load();
    let f = dockerfile::DOCKERFILE;
    let mut errors = Vec::new();
    let program = image.entrypoint.first().cloned().unwrap_or_default();
    let bin = herald_bin_name();
    if Path::new(&program)
        .file_name()
        .is_none_or(|n| n.to_string_lossy() != bin)
    {
        errors.push(format!(
            "{f}: ENTRYPOINT runs {program:?}, but the binary is {bin:?}"
        ));
    }
    if !image.text.contains(&format!("--bin {bin}")) {
        errors.push(format!("{f}: the builder does not build `--bin {bin}`"));
    }
    let c = Container {
        origin: format!(
            "{f}: ENTRYPOINT {:?} + CMD {:?}",
            image.entrypoint, image.cmd
        ),
        argv: image
            .entrypoint_args
            .iter()
            .chain(&image.cmd)
            .cloned()
            .collect(),
        env: Vec::new(),
        ports: image.expose.iter().map(|p| (None, *p)).collect(),
        config_file: None,
        config_error: None,
        // The stop timeout is the platform's (compose, Kubernetes): checked there.
        grace: (
            Duration::from_secs(3600),
            "the platform's stop timeout".into(),
        ),
    };
    if let Some(checked) = node::check(&cli, &c, &mut errors) {
        for port in &checked.listens {
            if !image.expose.contains(port) {
                errors.push(format!(
                    "{f}: `herald {}` listens on {port} with the default config, but EXPOSE lists {:?}",
                    checked.invocation.path.join(" "),
                    image.expose
                ));
            }
        }
    }
    fail_on(errors, f);
}

/// The binary `crates/herald` builds: its `[[bin]] name`, else the package name.
fn herald_bin_name() -> String {
    let manifest: toml::Table =
        toml::from_str(&read("crates/herald/Cargo.toml")).expect("crates/herald/Cargo.toml");
    manifest
        .get("bin")
        .and_then(|b| b.as_array())
        .and_then(|b| b.first())
        .and_then(|b| b.get("name"))
        .or_else(|| manifest["package"].get("name"))
        .and_then(|n| n.as_str())
        .expect("a binary name")
        .to_string()
}

#[test]
fn compose_stack_runs_real_commands_with_loadable_config() {
    let cli = cli();
    let image = dockerfile::load();
    let doc = compose::load();
    let services = compose::herald_services(&doc, &image);
    let f = compose::COMPOSE;
    assert!(
        !services.is_empty(),
        "{f}: no service runs the herald image"
    );
    let mut errors = Vec::new();
    let mut checked: BTreeMap<String, Checked> = BTreeMap::new();
    for (name, (c, raw)) in &services {
        let Some(ch) = node::check(&cli, c, &mut errors) else {
            continue;
        };
        for (port, path) in compose::healthcheck_urls(raw) {
            let ok_path = ["/healthz", "/readyz"].contains(&path.as_str());
            match &ch.server {
                Some((_, cfg)) if port != cfg.http.listen.port() || !ok_path => errors.push(format!(
                    "{f}: service {name}: the health check asks port {port}{path}, but /healthz and /readyz are on http.listen, port {}",
                    cfg.http.listen.port()
                )),
                None if !ch.listens.contains(&port) => errors.push(format!(
                    "{f}: service {name}: the health check asks port {port}, but it listens on {:?}",
                    ch.listens
                )),
                _ => {}
            }
        }
        checked.insert(name.clone(), ch);
    }

    // Prometheus scrapes every server service on its http.listen port,
    // labelled with the role it runs.
    let p = compose::PROMETHEUS;
    let targets = compose::scrape_targets();
    for (host, port, role) in &targets {
        if services.contains_key(host) && !checked.contains_key(host) {
            continue; // its own problems are reported above
        }
        match checked
            .get(host)
            .and_then(|c| c.server.as_ref().map(|s| (c, s)))
        {
            None => errors.push(format!(
                "{p}: target {host}:{port} is not a Herald server service of {f}"
            )),
            Some((c, (_, cfg))) => {
                if *port != cfg.http.listen.port() {
                    errors.push(format!(
                        "{p}: target {host}:{port}, but {host} serves /metrics on http.listen port {}",
                        cfg.http.listen.port()
                    ));
                }
                let sub = &c.invocation.path[0];
                if role != sub {
                    errors.push(format!("{p}: target {host}:{port} has role {role:?}, but {host} runs `herald {sub}`"));
                }
            }
        }
    }
    for (name, c) in &checked {
        if c.server.is_some() && !targets.iter().any(|(h, _, _)| h == name) {
            errors.push(format!(
                "{p}: the herald job does not scrape the compose service {name}"
            ));
        }
    }
    fail_on(errors, f);
}

#[test]
fn kubernetes_manifests_run_real_commands_with_loadable_config() {
    let cli = cli();
    let objs = kube::load_dir(KUBERNETES);
    let mut errors = Vec::new();
    let pods = kube::checked_pods(&cli, &objs, &mut errors);
    assert!(
        !pods.is_empty() || !errors.is_empty(),
        "{KUBERNETES}: no Deployment"
    );

    let namespaces: Vec<&str> = objs
        .iter()
        .filter(|o| o.kind() == "Namespace")
        .map(Object::name)
        .collect();
    for o in objs.iter().filter(|o| o.kind() != "Namespace") {
        if !namespaces.contains(&o.namespace()) {
            errors.push(format!(
                "{}: namespace {:?} is not the Namespace of {KUBERNETES} ({namespaces:?})",
                o.origin(),
                o.namespace()
            ));
        }
    }

    for (dep, c, raw, ch) in pods
        .iter()
        .filter_map(|(d, c, r, ch)| ch.as_ref().map(|ch| (d, c, r, ch)))
    {
        let o = &c.origin;
        let Some((roles, cfg)) = &ch.server else {
            continue;
        };
        let http = cfg.http.listen.port();
        // Kubernetes finds ports by name: every one it listens on is declared.
        for port in &ch.listens {
            if !c.ports.iter().any(|(_, p)| p == port) {
                errors.push(format!(
                    "{o}: listens on {port} but declares no containerPort for it"
                ));
            }
        }
        for (probe, path) in [
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ] {
            let get = &raw[probe]["httpGet"];
            if get.is_null() {
                errors.push(format!("{o}: no {probe} httpGet {path}"));
                continue;
            }
            match kube::resolve_port(&get["port"], c) {
                Ok(p) if p == http => {}
                Ok(p) => errors.push(format!(
                    "{o}: {probe} asks port {p}, but {path} is on http.listen port {http}"
                )),
                Err(e) => errors.push(format!("{o}: {probe}: {e}")),
            }
            if get["path"].as_str() != Some(path) {
                errors.push(format!(
                    "{o}: {probe} asks {:?}; it should ask {path}",
                    yaml_str(&get["path"])
                ));
            }
        }
        let ann = &dep.doc["spec"]["template"]["metadata"]["annotations"];
        if yaml_str(&ann["prometheus.io/port"]) != http.to_string() {
            errors.push(format!(
                "{}: annotation prometheus.io/port is {:?}, but /metrics is on http.listen port {http}",
                dep.origin(),
                yaml_str(&ann["prometheus.io/port"])
            ));
        }
        if roles.dispatch {
            kube::check_dispatch_rollout(dep, cfg, &mut errors);
        }
    }

    // Services reach declared ports of the pods they select.
    for svc in objs.iter().filter(|o| o.kind() == "Service") {
        let selected: Vec<_> = pods
            .iter()
            .filter(|(dep, ..)| {
                kube::selects(
                    &svc.doc["spec"]["selector"],
                    &dep.doc["spec"]["template"]["metadata"]["labels"],
                )
            })
            .collect();
        if selected.is_empty() {
            errors.push(format!("{}: selects no Herald pod", svc.origin()));
        }
        for port in svc.doc["spec"]["ports"].as_sequence().into_iter().flatten() {
            let target = if port["targetPort"].is_null() {
                &port["port"]
            } else {
                &port["targetPort"]
            };
            for (_, c, ..) in &selected {
                if let Err(e) = kube::resolve_port(target, c) {
                    errors.push(format!(
                        "{}: port {:?}: {e} ({})",
                        svc.origin(),
                        yaml_str(&port["name"]),
                        c.origin
                    ));
                }
            }
        }
    }

    // The PodMonitor's port is declared by every Herald pod it selects.
    for pm in kube::load_dir(MONITORING)
        .iter()
        .filter(|o| o.kind() == "PodMonitor")
    {
        for ep in pm.doc["spec"]["podMetricsEndpoints"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            let port = yaml_str(&ep["port"]);
            for (dep, c, _, ch) in pods
                .iter()
                .filter_map(|(d, c, r, ch)| ch.as_ref().map(|ch| (d, c, r, ch)))
            {
                if !kube::selects(
                    &pm.doc["spec"]["selector"]["matchLabels"],
                    &dep.doc["spec"]["template"]["metadata"]["labels"],
                ) {
                    continue;
                }
                let http = ch.server.as_ref().map(|(_, cfg)| cfg.http.listen.port());
                if kube::named_ports(c).get(&port).copied() != http {
                    errors.push(format!(
                        "{}: scrapes port {port:?}, which in {} is {:?}, not http.listen ({http:?})",
                        pm.origin(),
                        c.origin,
                        kube::named_ports(c).get(&port)
                    ));
                }
            }
        }
    }
    fail_on(errors, KUBERNETES);
}

#[test]
fn autoscaling_scales_dispatchers_on_their_own_lag() {
    let cli = cli();
    let objs = kube::load_dir(KUBERNETES);
    let mut errors = Vec::new();
    let pods = kube::checked_pods(&cli, &objs, &mut errors);
    let scaled: Vec<Object> = kube::load_dir(AUTOSCALING)
        .into_iter()
        .filter(|o| o.kind() == "ScaledObject")
        .collect();
    assert!(!scaled.is_empty(), "{AUTOSCALING}: no ScaledObject");
    for so in &scaled {
        autoscaling::check(so, &pods, &mut errors);
    }
    fail_on(errors, AUTOSCALING);
}

#[test]
fn kustomizations_list_every_manifest_beside_them() {
    let mut errors = Vec::new();
    for dir in [KUBERNETES, MONITORING, AUTOSCALING] {
        let k = format!("{dir}/kustomization.yaml");
        let doc: Value = serde_yaml_ng::from_str(&read(&k)).unwrap_or_else(|e| panic!("{k}: {e}"));
        let listed: BTreeSet<String> = doc["resources"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|r| format!("{dir}/{}", yaml_str(r)))
            .collect();
        let present: BTreeSet<String> = kube::yaml_files(dir)
            .into_iter()
            .filter(|f| *f != k)
            .collect();
        for missing in present.difference(&listed) {
            errors.push(format!("{k}: does not list {missing}"));
        }
        for extra in listed.difference(&present) {
            errors.push(format!("{k}: lists {extra}, which does not exist"));
        }
    }
    fail_on(errors, "kustomizations");
}

/// Each herald.toml in deploy/ loads on its own too (a node started
/// without the stack's environment).
#[test]
fn deploy_config_files_load_with_the_real_loader() {
    let mut errors = Vec::new();
    let mut files: Vec<(String, String)> = vec![(
        "deploy/compose/herald.toml".into(),
        read("deploy/compose/herald.toml"),
    )];
    let objs = kube::load_dir(KUBERNETES);
    let (cm, text) = kube::herald_toml(&objs);
    files.push((format!("{} (herald.toml)", cm.origin()), text));
    for (label, text) in files {
        let mut l = ConfigLoader::new();
        let loaded = match l.file(&label, &text) {
            Ok(l) => l.build().map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = loaded {
            errors.push(format!("{label}: {e}"));
        }
    }
    fail_on(errors, "deploy config files");
}
