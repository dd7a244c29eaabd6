//! The dashboards and alert rules in `deploy/` may only query metrics Herald
//! really exports, and every exported metric is documented.
//!
//! - Every PromQL expression in `deploy/grafana/herald-dashboard.json` (panel
//!   targets and template variable queries) and `deploy/prometheus/alerts.yml`
//!   names only metrics in [`names::ALL`]; a histogram only through its
//!   `_bucket`, `_sum` or `_count` series (the Prometheus exporter never
//!   writes the bare histogram name).
//! - `src/names.rs` puts every metric constant in `ALL` and says its type.
//! - `docs/metrics.md` documents every name in `ALL`, with the same type, and
//!   nothing else.
//! - `deploy/kubernetes/monitoring/prometheusrule.yaml` carries exactly the
//!   rules of `deploy/prometheus/alerts.yml`.
//!
//! Files only: deterministic, no network, no Prometheus needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use herald_telemetry::names;
use serde_json::Value;

const DASHBOARD: &str = "deploy/grafana/herald-dashboard.json";
const ALERTS: &str = "deploy/prometheus/alerts.yml";
const PROMETHEUS_RULE: &str = "deploy/kubernetes/monitoring/prometheusrule.yaml";
const METRICS_DOC: &str = "docs/metrics.md";
const NAMES_RS: &str = "crates/herald-telemetry/src/names.rs";

/// Series suffixes the Prometheus exporter writes for a histogram.
const HISTOGRAM_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn parse(word: &str) -> Option<Kind> {
        match word.to_ascii_lowercase().as_str() {
            "counter" => Some(Kind::Counter),
            "gauge" => Some(Kind::Gauge),
            "histogram" => Some(Kind::Histogram),
            _ => None,
        }
    }
}

/// Metric name → type, from the doc comment above each constant in
/// `names.rs` ("/// Counter, labels ...", "/// Histogram (seconds) ...").
fn kinds_from_names_rs() -> BTreeMap<String, Kind> {
    let src = read(NAMES_RS);
    let mut kinds = BTreeMap::new();
    let mut first_doc_line: Option<String> = None;
    for line in src.lines() {
        let t = line.trim();
        if let Some(doc) = t.strip_prefix("///") {
            first_doc_line.get_or_insert_with(|| doc.trim().to_string());
            continue;
        }
        if t.starts_with("pub const") && t.contains(": &str") {
            let name = t
                .split('"')
                .nth(1)
                .unwrap_or_else(|| panic!("{NAMES_RS}: no string literal in `{t}`"));
            let doc = first_doc_line
                .take()
                .unwrap_or_else(|| panic!("{NAMES_RS}: `{name}` has no doc comment"));
            let word: String = doc.chars().take_while(|c| c.is_alphabetic()).collect();
            let kind = Kind::parse(&word).unwrap_or_else(|| {
                panic!("{NAMES_RS}: the doc comment of `{name}` must start with Counter, Gauge or Histogram, not {doc:?}")
            });
            kinds.insert(name.to_string(), kind);
        } else if !t.starts_with("#[") {
            first_doc_line = None;
        }
    }
    kinds
}

fn all_names() -> BTreeSet<&'static str> {
    let set: BTreeSet<&str> = names::ALL.iter().copied().collect();
    assert_eq!(set.len(), names::ALL.len(), "names::ALL lists a name twice");
    set
}

/// Every `herald_…` identifier in `text`: a maximal run of `[a-z0-9_]` that
/// starts with `herald_` and is not the tail of a longer identifier.
fn herald_identifiers(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"herald_") && (i == 0 || !is_ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_lowercase() || bytes[i].is_ascii_digit() || bytes[i] == b'_')
            {
                i += 1;
            }
            out.push(text[start..i].to_string());
        } else {
            i += 1;
        }
    }
    out
}

/// The metric in `names::ALL` that the series `ident` belongs to, or why it
/// is not an exported series.
fn resolve(ident: &str, kinds: &BTreeMap<String, Kind>) -> Result<&'static str, String> {
    let all = all_names();
    if let Some(name) = all.get(ident) {
        if kinds.get(*name) == Some(&Kind::Histogram) {
            return Err(format!(
                "`{ident}` is a histogram: the exporter only writes `{ident}_bucket`, `_sum` and `_count`"
            ));
        }
        return Ok(*name);
    }
    for suffix in HISTOGRAM_SUFFIXES {
        if let Some(base) = ident.strip_suffix(suffix) {
            if let Some(name) = all.get(base) {
                if kinds.get(*name) == Some(&Kind::Histogram) {
                    return Ok(*name);
                }
                return Err(format!(
                    "`{ident}`: `{base}` is not a histogram, it has no `{suffix}` series"
                ));
            }
        }
    }
    Err(format!("`{ident}` is not in herald_telemetry::names::ALL"))
}

/// Brackets balance and strings close: catches a truncated or mangled query.
fn check_promql_shape(expr: &str) -> Result<(), String> {
    let mut stack = Vec::new();
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => loop {
                match chars.next() {
                    None => return Err(format!("unterminated string starting with {c}")),
                    Some('\\') if c != '`' => {
                        chars.next();
                    }
                    Some(d) if d == c => break,
                    Some(_) => {}
                }
            },
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return Err(format!("unbalanced `{c}`"));
                }
            }
            _ => {}
        }
    }
    match stack.pop() {
        Some(open) => Err(format!("unclosed `{open}`")),
        None => Ok(()),
    }
}

/// Checks `(origin, expr)` pairs; returns the metrics they use.
fn check_exprs(exprs: &[(String, String)]) -> BTreeSet<&'static str> {
    let kinds = kinds_from_names_rs();
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for (origin, expr) in exprs {
        assert!(!expr.trim().is_empty(), "{origin}: empty expression");
        if let Err(e) = check_promql_shape(expr) {
            problems.push(format!("{origin}: {e} in {expr:?}"));
        }
        for ident in herald_identifiers(expr) {
            match resolve(&ident, &kinds) {
                Ok(name) => {
                    used.insert(name);
                }
                Err(e) => problems.push(format!("{origin}: {e}\n    in: {expr}")),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "bad queries:\n  {}",
        problems.join("\n  ")
    );
    used
}

// ---------------------------------------------------------------- dashboard

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// Panels, including those nested in collapsed rows.
fn panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(inner) = p.get("panels") {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

fn dashboard_exprs(dash: &Value) -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    for p in panels(dash) {
        let title = p["title"].as_str().unwrap_or("?");
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without `expr`"));
            exprs.push((format!("panel {title:?}"), expr.to_string()));
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap_or("?");
        for q in [&v["definition"], &v["query"], &v["query"]["query"]] {
            if let Some(q) = q.as_str() {
                exprs.push((format!("variable ${name}"), q.to_string()));
            }
        }
    }
    exprs
}

#[test]
fn dashboard_queries_use_exported_metrics() {
    let dash = dashboard();
    let exprs = dashboard_exprs(&dash);
    assert!(
        exprs.len() >= 20,
        "only {} queries found in {DASHBOARD}",
        exprs.len()
    );
    let used = check_exprs(&exprs);

    // The series the dashboard is for (docs/metrics.md; lag, backlog and worst
    // endpoints are not exported yet).
    let required = [
        names::EVENTS_PUBLISHED,
        names::DELIVERY_ATTEMPTS,
        names::DELIVERY_LATENCY,
        names::END_TO_END_LATENCY,
        names::LANE_EVENTS,
        names::LANES_OPEN,
        names::PARTITIONS_ASSIGNED,
        names::RETRY_WRITES,
        names::DEAD_LETTERS,
        names::DEAD_LETTERS_REPLAYED,
        names::PARTITION_PAUSES,
        names::RATE_LIMITED_WAITS,
        names::CIRCUIT_TRANSITIONS,
        names::ENDPOINTS_AUTO_DISABLED,
        names::ENDPOINTS,
        names::REBALANCES,
        names::COMMITS,
    ];
    let missing: Vec<_> = required.iter().filter(|n| !used.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "{DASHBOARD} has no panel for {missing:?}"
    );

    // Any other herald_ word in the file (descriptions, legends) must be real too.
    let kinds = kinds_from_names_rs();
    for ident in herald_identifiers(&read(DASHBOARD)) {
        resolve(&ident, &kinds).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"));
    }
}

#[test]
fn dashboard_is_provisionable() {
    let dash = dashboard();
    assert!(
        dash["uid"].as_str().is_some_and(|u| !u.is_empty()),
        "dashboard uid"
    );
    assert!(
        dash["title"].as_str().is_some_and(|t| !t.is_empty()),
        "dashboard title"
    );
    // Provisioned dashboards must not carry an instance id.
    assert!(
        dash.get("id").is_none_or(Value::is_null),
        "remove the dashboard `id`"
    );

    let vars = dash["templating"]["list"]
        .as_array()
        .expect("templating.list");
    assert!(
        vars.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "datasource"
            && v["query"] == "prometheus"),
        "a `datasource` variable of type prometheus"
    );

    let mut ids = BTreeSet::new();
    for p in panels(&dash) {
        let title = p["title"].as_str().unwrap_or("?");
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title:?} has no id"));
        assert!(ids.insert(id), "panel id {id} used twice");
        let grid = &p["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(grid[k].is_u64(), "panel {title:?}: gridPos.{k}");
        }
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
            "panel {title:?} is wider than the grid"
        );
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        // Every query goes to the datasource the variable picks, never a fixed uid.
        for ds in std::iter::once(&p["datasource"]).chain(targets.iter().map(|t| &t["datasource"]))
        {
            assert_eq!(
                ds["uid"], "${datasource}",
                "panel {title:?}: datasource {ds}"
            );
        }
    }
}

// ---------------------------------------------------------------- alert rules

/// A rule of a Prometheus rule file: its name and expression.
#[derive(Debug)]
struct Rule {
    name: String,
    expr: String,
    has_severity: bool,
    has_summary: bool,
}

/// Reads the rules of a Prometheus rule file. Only the subset of YAML the
/// rule files use: `- alert:` items with `expr:` as a plain one-line scalar
/// or a `|`/`>` block.
fn parse_rules(text: &str) -> Vec<Rule> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut rules: Vec<Rule> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim();
        if let Some(name) = t
            .strip_prefix("- alert:")
            .or_else(|| t.strip_prefix("- record:"))
        {
            rules.push(Rule {
                name: unquote(name.trim()),
                expr: String::new(),
                has_severity: false,
                has_summary: false,
            });
        } else if let Some(rule) = rules.last_mut() {
            if let Some(value) = t.strip_prefix("expr:") {
                let value = value.trim();
                if value.starts_with('|') || value.starts_with('>') {
                    let base = indent(line);
                    let mut block = Vec::new();
                    while i + 1 < lines.len()
                        && (lines[i + 1].trim().is_empty() || indent(lines[i + 1]) > base)
                    {
                        i += 1;
                        block.push(lines[i].trim());
                    }
                    let sep = if value.starts_with('|') { "\n" } else { " " };
                    rule.expr = block.join(sep).trim().to_string();
                } else {
                    rule.expr = unquote(value);
                }
            } else if t.starts_with("severity:") {
                rule.has_severity = true;
            } else if t.starts_with("summary:") {
                rule.has_summary = true;
            }
        }
        i += 1;
    }
    rules
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    s.to_string()
}

#[test]
fn alert_rules_use_exported_metrics() {
    let text = read(ALERTS);
    let rules = parse_rules(&text);
    assert!(
        rules.len() >= 6,
        "only {} rules found in {ALERTS}",
        rules.len()
    );
    let mut seen = BTreeSet::new();
    for r in &rules {
        assert!(
            seen.insert(r.name.clone()),
            "{ALERTS}: rule {} defined twice",
            r.name
        );
        assert!(!r.expr.is_empty(), "{ALERTS}: rule {} has no expr", r.name);
        assert!(
            r.has_severity && r.has_summary,
            "{ALERTS}: rule {} needs labels.severity and annotations.summary",
            r.name
        );
    }
    // Every `expr:` line belongs to a parsed rule.
    let expr_lines = text
        .lines()
        .filter(|l| l.trim().starts_with("expr:"))
        .count();
    assert_eq!(
        expr_lines,
        rules.len(),
        "{ALERTS}: an expr outside a rule, or a rule the parser missed"
    );

    let exprs: Vec<_> = rules
        .iter()
        .map(|r| (format!("rule {}", r.name), r.expr.clone()))
        .collect();
    let used = check_exprs(&exprs);
    for required in [
        names::DEAD_LETTERS,
        names::ENDPOINTS_AUTO_DISABLED,
        names::DELIVERY_ATTEMPTS,
        names::PARTITION_PAUSES,
        names::PARTITIONS_ASSIGNED,
        names::COMMITS,
    ] {
        assert!(used.contains(required), "{ALERTS}: no rule uses {required}");
    }

    // Descriptions and comments may name metrics too: only real ones.
    let kinds = kinds_from_names_rs();
    for ident in herald_identifiers(&text) {
        resolve(&ident, &kinds).unwrap_or_else(|e| panic!("{ALERTS}: {e}"));
    }
}

#[test]
fn prometheus_rule_matches_alerts_file() {
    let alerts = read(ALERTS);
    let wrapped = read(PROMETHEUS_RULE);
    let (head, spec) = wrapped
        .split_once("\nspec:\n")
        .unwrap_or_else(|| panic!("{PROMETHEUS_RULE}: no top-level `spec:`"));
    assert!(
        head.contains("kind: PrometheusRule"),
        "{PROMETHEUS_RULE}: kind"
    );
    let unindented: Vec<&str> = spec
        .lines()
        .map(|l| {
            l.strip_prefix("  ").unwrap_or_else(|| {
                assert!(
                    l.is_empty(),
                    "{PROMETHEUS_RULE}: spec line not indented: {l:?}"
                );
                l
            })
        })
        .collect();
    let alerts_lines: Vec<&str> = alerts.lines().collect();
    assert!(
        unindented == alerts_lines,
        "{PROMETHEUS_RULE} is out of date with {ALERTS}: regenerate it (see deploy/README.md)"
    );
}

// ---------------------------------------------------------------- names and docs

#[test]
fn names_rs_lists_every_metric_in_all() {
    let kinds = kinds_from_names_rs();
    let declared: BTreeSet<&str> = kinds.keys().map(String::as_str).collect();
    let all = all_names();
    let not_in_all: Vec<_> = declared.difference(&all).collect();
    assert!(
        not_in_all.is_empty(),
        "{NAMES_RS}: constants missing from ALL: {not_in_all:?}"
    );
    let undeclared: Vec<_> = all.difference(&declared).collect();
    assert!(
        undeclared.is_empty(),
        "ALL holds names without a documented constant: {undeclared:?}"
    );
    for name in &all {
        assert!(
            name.starts_with("herald_")
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name}: metric names are herald_[a-z0-9_]+"
        );
        let is_counter = kinds[*name] == Kind::Counter;
        assert_eq!(
            name.ends_with("_total"),
            is_counter,
            "{name}: counters, and only counters, end in _total"
        );
        if kinds[*name] == Kind::Histogram {
            assert!(
                !HISTOGRAM_SUFFIXES.iter().any(|s| name.ends_with(s)),
                "{name}: a histogram name must not end in a series suffix"
            );
        }
    }
}

/// `docs/metrics.md` table rows: metric name → the type column.
fn documented_metrics() -> BTreeMap<String, String> {
    let doc = read(METRICS_DOC);
    let mut rows = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() < 2 {
            continue;
        }
        let Some(name) = cells[0].strip_prefix('`').and_then(|c| c.strip_suffix('`')) else {
            continue;
        };
        if name.starts_with("herald_") {
            let previous = rows.insert(name.to_string(), cells[1].to_string());
            assert!(previous.is_none(), "{METRICS_DOC}: `{name}` has two rows");
        }
    }
    rows
}

#[test]
fn every_metric_is_documented() {
    let kinds = kinds_from_names_rs();
    let documented = documented_metrics();
    let undocumented: Vec<_> = names::ALL
        .iter()
        .filter(|n| !documented.contains_key(**n))
        .collect();
    assert!(
        undocumented.is_empty(),
        "{METRICS_DOC} has no table row (| `name` | type | labels | meaning |) for {undocumented:?}"
    );
    for (name, ty) in &documented {
        let kind = kinds.get(name).unwrap_or_else(|| {
            panic!("{METRICS_DOC} documents `{name}`, which is not in names::ALL")
        });
        assert_eq!(
            Kind::parse(ty).as_ref(),
            Some(kind),
            "{METRICS_DOC}: `{name}` is documented as {ty:?}, names.rs says {kind:?}"
        );
    }
}

// ---------------------------------------------------------------- the helpers themselves

#[test]
fn identifier_extraction_and_resolution() {
    let ids = herald_identifiers(
        r#"histogram_quantile(0.9, sum by (le) (rate(herald_end_to_end_latency_seconds_bucket{job="herald"}[5m]))) / x_herald_nope + herald_lanes_open"#,
    );
    assert_eq!(
        ids,
        [
            "herald_end_to_end_latency_seconds_bucket",
            "herald_lanes_open"
        ]
    );
    let kinds = kinds_from_names_rs();
    assert_eq!(
        resolve("herald_delivery_duration_seconds_count", &kinds),
        Ok(names::DELIVERY_LATENCY)
    );
    assert_eq!(resolve("herald_endpoints", &kinds), Ok(names::ENDPOINTS));
    assert!(
        resolve("herald_delivery_duration_seconds", &kinds).is_err(),
        "bare histogram"
    );
    assert!(
        resolve("herald_lane_events_bucket", &kinds).is_err(),
        "gauge with a histogram suffix"
    );
    assert!(
        resolve("herald_consumer_lag", &kinds).is_err(),
        "unknown metric"
    );
    assert!(check_promql_shape(r#"sum(rate(x{a="(}"}[5m]))"#).is_ok());
    assert!(check_promql_shape("sum(rate(x[5m])").is_err());

    let rules = parse_rules(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          up\n          == 0\n        labels:\n          severity: page\n        annotations:\n          summary: s\n      - alert: 'B'\n        expr: \"x > 1\"\n",
    );
    assert_eq!(rules.len(), 2);
    assert_eq!(
        (rules[0].name.as_str(), rules[0].expr.as_str()),
        ("A", "up\n== 0")
    );
    assert!(rules[0].has_severity && rules[0].has_summary);
    assert_eq!(
        (rules[1].name.as_str(), rules[1].expr.as_str()),
        ("B", "x > 1")
    );
}
