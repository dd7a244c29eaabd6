//! The layers of the configuration: defaults, a TOML file, `HERALD_*`
//! environment variables and command-line flags, merged in that order into
//! one tree and deserialised into a [`Config`], with errors that name the key
//! and the layer it came from.

use std::collections::BTreeMap;

use toml::{Table, Value};

use super::{Config, ConfigError, Source};

/// Keys whose values are text even when they look like numbers (`HERALD_NODE_ID=7`).
const STRING_KEYS: &[&str] = &[
    "node.id",
    "kafka.brokers",
    "kafka.events_topic",
    "kafka.endpoints_topic",
    "kafka.retry_topic",
    "kafka.dlq_topic",
    "kafka.ops_topic",
    "kafka.attempts_topic",
    "kafka.idempotency_topic",
    "kafka.scheduled_topic",
    "endpoint_health.operator_endpoint",
    "kafka.consumer_group",
    "log.level",
];

/// Sections that environment variables may address.
const SECTIONS: &[&str] = &[
    "endpoint_health",
    "node",
    "grpc",
    "http",
    "kafka",
    "dispatch",
    "delivery",
    "retry",
    "log",
];

/// Builds a [`Config`] from layers, later layers winning.
#[derive(Debug, Default)]
pub struct ConfigLoader {
    tree: Table,
    sources: BTreeMap<String, Source>,
}

impl ConfigLoader {
    /// Starts from the built-in defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one dotted key (`kafka.brokers`) from `source`.
    pub fn set(&mut self, key: &str, value: Value, source: Source) -> &mut Self {
        let mut parts = key.split('.').peekable();
        let mut table = &mut self.tree;
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                table.insert(part.to_string(), value);
                break;
            }
            let entry = table
                .entry(part.to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            table = entry.as_table_mut().expect("just made a table");
        }
        self.sources.insert(key.to_string(), source);
        self
    }

    /// Merges a TOML document (the config file) read from `path`.
    pub fn file(&mut self, path: &str, text: &str) -> Result<&mut Self, ConfigError> {
        let doc: Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let mut flat = Vec::new();
        flatten("", &doc, &mut flat);
        for (k, v) in flat {
            self.set(&k, v, Source::File(path.to_string()));
        }
        Ok(self)
    }

    /// Merges `HERALD_<SECTION>_<KEY>` variables; others are ignored.
    pub fn env(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> &mut Self {
        for (name, raw) in vars {
            let Some(rest) = name.strip_prefix("HERALD_") else {
                continue;
            };
            let lower = rest.to_ascii_lowercase();
            // Section names may contain `_` (`endpoint_health`): match whole names.
            let Some((section, key)) = SECTIONS.iter().find_map(|sec| {
                lower
                    .strip_prefix(sec)?
                    .strip_prefix('_')
                    .map(|key| (*sec, key))
            }) else {
                continue;
            };
            if key.is_empty() {
                continue;
            }
            let key = format!("{section}.{key}");
            let value = if STRING_KEYS.contains(&key.as_str()) {
                Value::String(raw)
            } else {
                scalar(&raw)
            };
            self.set(&key, value, Source::Env(name));
        }
        self
    }

    /// Deserialises and validates the merged layers.
    pub fn build(&self) -> Result<Config, ConfigError> {
        let de = Value::Table(self.tree.clone());
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let layer = self.source_of(&key);
            ConfigError::Key {
                key,
                layer,
                message: e.inner().to_string(),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn source_of(&self, key: &str) -> Source {
        // The error path may point inside a value or at a table holding an
        // unknown key; the longest recorded prefix names the layer.
        self.sources
            .iter()
            .filter(|(k, _)| {
                key == k.as_str()
                    || key.starts_with(&format!("{k}."))
                    || k.starts_with(&format!("{key}."))
            })
            .max_by_key(|(k, _)| k.len())
            .map(|(_, s)| s.clone())
            .unwrap_or(Source::Default)
    }
}

/// An environment value as a TOML scalar when it is one, else a string.
fn scalar(raw: &str) -> Value {
    match toml::from_str::<Table>(&format!("v = {raw}")) {
        Ok(mut t) => match t.remove("v") {
            Some(v @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_))) => v,
            _ => Value::String(raw.to_string()),
        },
        Err(_) => Value::String(raw.to_string()),
    }
}

fn flatten(prefix: &str, table: &Table, out: &mut Vec<(String, Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            // `kafka.client` is a free-form map: keep it whole.
            Value::Table(t) if key != "kafka.client" => flatten(&key, t, out),
            _ => out.push((key, v.clone())),
        }
    }
}
