//! One Herald container as a deploy file describes it, and the checks every
//! such container must pass whatever the platform: its command is a real
//! `herald` command, its configuration loads with the real loader (file,
//! then `HERALD_*` variables, then flags, layered like `herald`'s
//! `settings.rs`), every `HERALD_*` variable it sets is read by something,
//! every master key its config names is set, its declared ports are the
//! ones it listens on, and it is given time to stop cleanly.

use std::time::Duration;

use herald_core::config::{ConfigLoader, Source};
use herald_core::Config;

use crate::cli::{Cli, Invocation};
use crate::{read, MARGIN};

/// A container running the herald image.
#[derive(Debug, Clone)]
pub struct Container {
    /// File and object, for messages: `deploy/compose/docker-compose.yml: service ingest`.
    pub origin: String,
    /// Arguments after the `herald` entrypoint.
    pub argv: Vec<String>,
    /// Environment: name and value (`None` when it comes from a Secret).
    pub env: Vec<(String, Option<String>)>,
    /// Ports it declares (container side), with their names where the platform has them.
    pub ports: Vec<(Option<String>, u16)>,
    /// The file `--config` names, resolved through the mounts: (label, text).
    pub config_file: Option<(String, String)>,
    /// Why `--config` could not be resolved, if it could not.
    pub config_error: Option<String>,
    /// How long the platform waits between SIGTERM and SIGKILL, and the setting's name.
    pub grace: (Duration, String),
}

/// What a server container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub ingest: bool,
    pub dispatch: bool,
}

/// A container that passed the common checks, with what they learned.
#[derive(Debug, Clone)]
pub struct Checked {
    pub invocation: Invocation,
    /// `Some` for `serve`, `ingest` and `dispatch`.
    pub server: Option<(Roles, Config)>,
    /// Ports the process listens on (container side).
    pub listens: Vec<u16>,
}

/// The roles of a server subcommand; `None` for every other subcommand.
pub fn roles(subcommand: &str) -> Option<Roles> {
    match subcommand {
        "serve" => Some(Roles {
            ingest: true,
            dispatch: true,
        }),
        "ingest" => Some(Roles {
            ingest: true,
            dispatch: false,
        }),
        "dispatch" => Some(Roles {
            ingest: false,
            dispatch: true,
        }),
        _ => None,
    }
}

/// Checks `c`; problems are pushed to `errors`, each naming `c.origin`.
pub fn check(cli: &Cli, c: &Container, errors: &mut Vec<String>) -> Option<Checked> {
    let o = &c.origin;
    let inv = match cli.check(&c.argv) {
        Ok(inv) => inv,
        Err(e) => {
            errors.push(format!("{o}: command {:?}: {e}", c.argv));
            return None;
        }
    };
    let sub = inv.path[0].as_str();
    if matches!(sub, "dev" | "mock-broker") {
        errors.push(format!(
            "{o}: `herald {sub}` keeps everything in memory; deploy files run serve, ingest or dispatch"
        ));
    }
    let clap_env = inv.env_names();
    let Some(roles) = roles(sub) else {
        // A client command (`listen` in the demo stack): clap reads its env.
        for (name, _) in c.env.iter().filter(|(n, _)| n.starts_with("HERALD_")) {
            if !clap_env.contains(name) {
                errors.push(format!(
                    "{o}: environment variable {name} is read by nothing: `herald {}` reads {}",
                    inv.path.join(" "),
                    if clap_env.is_empty() {
                        "none".to_string()
                    } else {
                        clap_env.join(", ")
                    }
                ));
            }
        }
        let mut listens = Vec::new();
        if let Some(port) = inv.value("port").and_then(|p| p.parse().ok()) {
            listens.push(port);
        }
        check_ports(c, &listens, errors);
        return Some(Checked {
            invocation: inv,
            server: None,
            listens,
        });
    };

    if inv.flags.contains_key("config") && c.config_file.is_none() {
        errors.push(format!(
            "{o}: --config {}: {}",
            inv.value("config").unwrap_or_default(),
            c.config_error
                .clone()
                .unwrap_or_else(|| "not mounted".into())
        ));
        return None;
    }
    let cfg = match load(c, &inv) {
        Ok(cfg) => cfg,
        Err(e) => {
            errors.push(format!("{o}: the configuration does not load: {e}"));
            return None;
        }
    };

    // Every HERALD_* variable is read: by the config loader, as a master
    // key named by secrets.keys[].env, or by clap.
    let key_envs: Vec<String> = cfg
        .secrets
        .keys
        .iter()
        .filter_map(|k| k.env.clone())
        .collect();
    for (name, _) in c.env.iter().filter(|(n, _)| n.starts_with("HERALD_")) {
        if !(config_reads(name) || key_envs.contains(name) || clap_env.contains(name)) {
            errors.push(format!(
                "{o}: environment variable {name} is read by nothing: not a config key \
                 (HERALD_<SECTION>_<KEY>, docs/configuration.md), not a secrets.keys[].env \
                 of its config ({}), not a flag's env",
                if key_envs.is_empty() {
                    "none".into()
                } else {
                    key_envs.join(", ")
                }
            ));
        }
    }
    // ... and every master key the config reads from the environment is set.
    for k in &cfg.secrets.keys {
        if let Some(env) = &k.env {
            if !c.env.iter().any(|(n, _)| n == env) {
                errors.push(format!(
                    "{o}: secrets.keys id {:?} reads environment variable {env}, which is not set",
                    k.id
                ));
            }
        }
    }

    let mut listens = vec![cfg.http.listen.port()];
    if roles.ingest {
        listens.push(cfg.grpc.listen.port());
    }
    check_ports(c, &listens, errors);

    let need = stop_time(roles, &cfg);
    if c.grace.0 < need {
        errors.push(format!(
            "{o}: {} is {}s, but {} needs at least {}s ({})",
            c.grace.1,
            c.grace.0.as_secs(),
            inv.path.join(" "),
            need.as_secs(),
            stop_time_reason(roles, &cfg)
        ));
    }
    Some(Checked {
        invocation: inv,
        server: Some((roles, cfg)),
        listens,
    })
}

fn check_ports(c: &Container, listens: &[u16], errors: &mut Vec<String>) {
    for (name, port) in &c.ports {
        if !listens.contains(port) {
            errors.push(format!(
                "{}: port {port}{} is declared, but the process listens on {:?}",
                c.origin,
                name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
                listens
            ));
        }
    }
}

/// The container's configuration, layered like `herald`'s `settings::load`.
pub fn load(c: &Container, inv: &Invocation) -> Result<Config, String> {
    let mut loader = ConfigLoader::new();
    if let Some((label, text)) = &c.config_file {
        loader.file(label, text).map_err(|e| e.to_string())?;
    }
    // Values from a Secret are unknown here; the names are checked apart.
    loader.env(
        c.env
            .iter()
            .filter_map(|(n, v)| v.clone().map(|v| (n.clone(), v))),
    );
    for (key, flag) in flag_keys() {
        if let Some(Some(v)) = inv.flags.get(flag.trim_start_matches("--")) {
            loader.set(
                &key,
                toml::Value::String(v.clone()),
                Source::Flag(flag.clone()),
            );
        }
    }
    loader.build().map_err(|e| e.to_string())
}

/// `(config key, --flag)` pairs that `crates/herald/src/settings.rs` layers
/// over the file and the environment.
fn flag_keys() -> Vec<(String, String)> {
    let src = read("crates/herald/src/settings.rs");
    let mut out = Vec::new();
    for line in src.lines() {
        // ("kafka.brokers", "--brokers", &flags.brokers),
        let quoted: Vec<&str> = line.split('"').collect();
        if quoted.len() >= 5 && quoted[3].starts_with("--") && quoted[1].contains('.') {
            out.push((quoted[1].to_string(), quoted[3].to_string()));
        }
    }
    assert!(
        !out.is_empty(),
        "crates/herald/src/settings.rs: no (\"key\", \"--flag\", ...) pairs found; update deploy_manifests/node.rs"
    );
    out
}

/// Whether the config loader reads the environment variable `name`: set it
/// alone to a value no key has by default and see whether the result moves
/// (or fails to load).
pub fn config_reads(name: &str) -> bool {
    let base = ConfigLoader::new().build().expect("the defaults load");
    let mut l = ConfigLoader::new();
    l.env([(
        name.to_string(),
        "herald-deploy-manifests-probe".to_string(),
    )]);
    match l.build() {
        Ok(cfg) => cfg != base,
        Err(_) => true,
    }
}

/// How long a node with these roles may take to stop after SIGTERM, plus
/// [`MARGIN`]: ingest waits for in-flight publishes (each bounded by the
/// producer's `message.timeout.ms`), then the dispatcher drains for up to
/// `dispatch.drain_timeout_ms`, then commits and leaves the group.
pub fn stop_time(roles: Roles, cfg: &Config) -> Duration {
    let mut t = MARGIN;
    if roles.ingest {
        t += producer_message_timeout(cfg);
    }
    if roles.dispatch {
        t += Duration::from_millis(cfg.dispatch.drain_timeout_ms);
    }
    t
}

fn stop_time_reason(roles: Roles, cfg: &Config) -> String {
    let mut parts = Vec::new();
    if roles.ingest {
        parts.push(format!(
            "in-flight publishes wait up to the producer's message.timeout.ms, {}s",
            producer_message_timeout(cfg).as_secs()
        ));
    }
    if roles.dispatch {
        parts.push(format!(
            "the dispatcher drains for up to dispatch.drain_timeout_ms, {}s",
            cfg.dispatch.drain_timeout_ms / 1000
        ));
    }
    parts.push(format!(
        "then {}s for the final commit, leaving the group and exiting",
        MARGIN.as_secs()
    ));
    parts.join("; ")
}

/// The librdkafka property `prop` as Herald sets it: `kafka.client` wins
/// over the default in `crates/herald-kafka/src/clients.rs`.
pub fn rdkafka_property(cfg: &Config, prop: &str) -> String {
    if let Some(v) = cfg.kafka.client.get(prop) {
        return v.clone();
    }
    let src = read("crates/herald-kafka/src/clients.rs");
    let needle = format!(".set(\"{prop}\", \"");
    let start = src.find(&needle).unwrap_or_else(|| {
        panic!("crates/herald-kafka/src/clients.rs no longer sets {prop} as `.set(\"{prop}\", \"...\")`; update deploy_manifests/node.rs")
    }) + needle.len();
    src[start..]
        .split('"')
        .next()
        .expect("a closing quote")
        .to_string()
}

/// The ingest producer's `message.timeout.ms`.
pub fn producer_message_timeout(cfg: &Config) -> Duration {
    let ms: u64 = rdkafka_property(cfg, "message.timeout.ms")
        .parse()
        .expect("message.timeout.ms is a number");
    Duration::from_millis(ms)
}
