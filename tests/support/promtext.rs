//! A small, strict parser of the Prometheus text exposition format (0.0.4):
//! `# HELP name text`, `# TYPE name kind`, other `#` comments, and samples
//! `name{label="value",...} value [timestamp]`. Every non-comment line must
//! parse; every `# TYPE` must name a known kind; a family's TYPE must come
//! before its samples and appear once.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, including a `_bucket`/`_sum`/`_count` suffix.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// `# TYPE` per family name.
    pub types: HashMap<String, String>,
    /// `# HELP` per family name.
    pub help: HashMap<String, String>,
}

impl Exposition {
    /// Sum of the samples named `name` whose labels include every `(k, v)`
    /// of `with`; `None` if no sample matches.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        let mut out = None;
        for s in self.samples.iter().filter(|s| s.name == name) {
            if with
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            {
                *out.get_or_insert(0.0) += s.value;
            }
        }
        out
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parses `{...}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("expected '{'")?;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = rest[..eq].trim();
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("repeated label {name:?}"));
        }
        rest = rest[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

/// The family a sample name belongs to, given the declared types.
fn family<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            ) {
                return base;
            }
        }
    }
    name
}

/// Parses `text`; the error names the line number and what is wrong.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut seen_samples: HashMap<String, usize> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let err = |what: String| format!("line {n} {line:?}: {what}");
        if line.trim().is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let c = c.trim_start();
            if let Some(r) = c.strip_prefix("TYPE ") {
                let mut parts = r.split_whitespace();
                let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(err("TYPE needs a name and a kind".into()));
                };
                if !is_name(name) {
                    return Err(err(format!("bad metric name {name:?}")));
                }
                if !matches!(
                    kind,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(err(format!("unknown TYPE {kind:?}")));
                }
                if seen_samples.contains_key(name) {
                    return Err(err(format!("TYPE of {name} after its samples")));
                }
                if out.types.insert(name.into(), kind.into()).is_some() {
                    return Err(err(format!("second TYPE for {name}")));
                }
            } else if let Some(r) = c.strip_prefix("HELP ") {
                let (name, help) = r.split_once(' ').unwrap_or((r, ""));
                if !is_name(name) {
                    return Err(err(format!("bad metric name {name:?}")));
                }
                if out.help.insert(name.into(), help.into()).is_some() {
                    return Err(err(format!("second HELP for {name}")));
                }
            }
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .ok_or_else(|| err("sample without a value".into()))?;
        let name = &line[..name_end];
        if !is_name(name) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(err)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut parts = rest.split_whitespace();
        let value = parts
            .next()
            .and_then(parse_value)
            .ok_or_else(|| err("missing or bad value".into()))?;
        if let Some(ts) = parts.next() {
            ts.parse::<i64>()
                .map_err(|_| err(format!("bad timestamp {ts:?}")))?;
        }
        if parts.next().is_some() {
            return Err(err("trailing text".into()));
        }
        let fam = family(name, &out.types).to_string();
        *seen_samples.entry(fam).or_default() += 1;
        out.samples.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    Ok(out)
}
