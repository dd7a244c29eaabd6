//! Every alert in `deploy/prometheus/alerts.yml` has a runbook in
//! `docs/operations.md`: a `### <AlertName>` heading under "Alert
//! runbooks", and every such heading names an alert that exists (no
//! runbook outlives its rule). An alert that carries a `runbook_url`
//! annotation must point at its own heading there.
//!
//! Files only: deterministic, no network, no Prometheus needed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ALERTS: &str = "deploy/prometheus/alerts.yml";
const OPERATIONS: &str = "docs/operations.md";
/// The section of docs/operations.md that holds one heading per alert.
const RUNBOOK_SECTION: &str = "## Alert runbooks";

fn read(rel: &str) -> String {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// (alert name, its `runbook_url` annotation if any), in file order.
fn alerts() -> Vec<(String, Option<String>)> {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(ALERTS)).unwrap_or_else(|e| panic!("{ALERTS}: {e}"));
    let mut out = Vec::new();
    let groups = doc["groups"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{ALERTS}: no `groups` list"));
    for group in groups {
        for rule in group["rules"].as_sequence().into_iter().flatten() {
            if let Some(name) = rule["alert"].as_str() {
                let url = rule["annotations"]["runbook_url"]
                    .as_str()
                    .map(str::to_owned);
                out.push((name.to_owned(), url));
            }
        }
    }
    out
}

/// The `### ` headings inside the runbook section of docs/operations.md.
fn runbook_headings() -> Vec<String> {
    let text = read(OPERATIONS);
    let mut inside = false;
    let mut headings = Vec::new();
    for line in text.lines() {
        if line.starts_with("## ") {
            inside = line.trim() == RUNBOOK_SECTION;
            continue;
        }
        if let Some(h) = line.strip_prefix("### ").filter(|_| inside) {
            headings.push(h.trim().to_owned());
        }
    }
    assert!(
        !headings.is_empty(),
        "{OPERATIONS}: no `### ` headings under `{RUNBOOK_SECTION}`"
    );
    headings
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_has_a_runbook_and_every_runbook_an_alert() {
    let alerts = alerts();
    assert!(
        alerts.len() >= 6,
        "only {} alerts in {ALERTS}",
        alerts.len()
    );
    let names: BTreeSet<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
    let headings = runbook_headings();
    let documented: BTreeSet<&str> = headings.iter().map(String::as_str).collect();
    let missing: Vec<&&str> = names.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "{OPERATIONS}: no runbook (`### <AlertName>` under `{RUNBOOK_SECTION}`) for {missing:?}"
    );
    let stale: Vec<&&str> = documented.difference(&names).collect();
    assert!(
        stale.is_empty(),
        "{OPERATIONS}: runbooks for alerts {ALERTS} does not define: {stale:?}"
    );
    assert_eq!(
        headings.len(),
        documented.len(),
        "{OPERATIONS}: a runbook heading appears twice"
    );
}

#[test]
fn runbook_urls_point_at_their_own_heading() {
    for (name, url) in alerts() {
        let Some(url) = url else { continue };
        let want = format!("{OPERATIONS}#{}", anchor(&name));
        assert!(
            url.ends_with(&want),
            "{ALERTS}: {name}'s runbook_url {url:?} should end with {want:?}"
        );
    }
}

#[test]
fn anchors_follow_github() {
    assert_eq!(anchor("HeraldNodeDown"), "heraldnodedown");
    assert_eq!(anchor("Broker maintenance"), "broker-maintenance");
    assert_eq!(
        anchor("Scaling up and down (KEDA)"),
        "scaling-up-and-down-keda"
    );
}
