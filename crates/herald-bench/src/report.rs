//! The figures of one run, their medians over runs, and how they are shown:
//! a table on stdout and a JSON document.

use std::collections::BTreeMap;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::Serialize;

/// Everything measured in one run of one scenario. Rates are per second,
/// latencies milliseconds; `None` where the scenario does not measure it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunFigures {
    /// Scenario name.
    pub scenario: String,
    /// 1-based run number.
    pub run: usize,
    /// Events Herald acknowledged.
    pub published: u64,
    /// Acknowledged events per second.
    pub publish_rate: f64,
    /// Distinct events the receivers got (healthy endpoints).
    pub delivered: u64,
    /// Delivered events per second, from the first publish to the last delivery.
    pub delivery_rate: Option<f64>,
    /// The raw hyper client's requests per second in this run.
    pub raw_rate: Option<f64>,
    /// Latency percentiles, publish → receiver arrival.
    pub latency_ms: Option<Percentiles>,
    /// Requests the receivers got per delivered event.
    pub attempts_per_event: Option<f64>,
    /// Deliveries of an event already delivered.
    pub duplicates: u64,
    /// Deliveries after a later event of the same endpoint.
    pub order_violations: u64,
    /// Events acknowledged but not delivered when the run ended.
    pub undelivered: u64,
    /// Herald CPU seconds over the measured window.
    pub herald_cpu_secs: f64,
    /// Herald CPU milliseconds per 1,000 deliveries (or acknowledged events
    /// where nothing is delivered).
    pub cpu_ms_per_1k: Option<f64>,
    /// Peak RSS per process, MiB.
    pub peak_rss_mib: BTreeMap<String, f64>,
    /// Scenario-specific figures (registry load time, idle CPU, ...).
    pub extra: BTreeMap<String, f64>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// From latencies in microseconds, sorted ascending; `None` if empty.
    pub fn of_sorted_us(sorted: &[u32]) -> Option<Self> {
        let last = *sorted.last()?;
        let at = |q: f64| {
            let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[i] as f64 / 1000.0
        };
        Some(Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: last as f64 / 1000.0,
        })
    }
}

/// The median of `xs` (the mean of the middle two for an even count).
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// Medians over the runs of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Runs the medians are over.
    pub runs: usize,
    /// Median of every numeric figure, by name (`latency_p99_ms`, ...).
    pub median: BTreeMap<String, f64>,
}

impl Summary {
    /// The medians of `runs` (all of one scenario).
    pub fn of(scenario: &str, runs: &[RunFigures]) -> Self {
        let mut cols: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in runs {
            for (k, v) in flatten(r) {
                cols.entry(k).or_default().push(v);
            }
        }
        let median = cols
            .into_iter()
            .filter_map(|(k, v)| Some((k, median(&v)?)))
            .collect();
        Self {
            scenario: scenario.to_owned(),
            runs: runs.len(),
            median,
        }
    }

    fn get(&self, k: &str) -> Option<f64> {
        self.median.get(k).copied()
    }
}

/// Every numeric figure of a run by a flat name; ratios to the raw rate
/// are computed per run, so their median is over runs.
fn flatten(r: &RunFigures) -> Vec<(String, f64)> {
    let mut out = vec![
        ("published".to_owned(), r.published as f64),
        ("publish_rate".to_owned(), r.publish_rate),
        ("delivered".to_owned(), r.delivered as f64),
        ("duplicates".to_owned(), r.duplicates as f64),
        ("order_violations".to_owned(), r.order_violations as f64),
        ("undelivered".to_owned(), r.undelivered as f64),
        ("herald_cpu_secs".to_owned(), r.herald_cpu_secs),
    ];
    let mut opt = |k: &str, v: Option<f64>| {
        if let Some(v) = v {
            out.push((k.to_owned(), v));
        }
    };
    opt("delivery_rate", r.delivery_rate);
    opt("raw_rate", r.raw_rate);
    opt("attempts_per_event", r.attempts_per_event);
    opt("cpu_ms_per_1k", r.cpu_ms_per_1k);
    if let Some(raw) = r.raw_rate.filter(|x| *x > 0.0) {
        opt("delivery_vs_raw", r.delivery_rate.map(|d| d / raw));
        opt("publish_vs_raw", Some(r.publish_rate / raw));
    }
    if let Some(l) = r.latency_ms {
        opt("latency_p50_ms", Some(l.p50));
        opt("latency_p90_ms", Some(l.p90));
        opt("latency_p99_ms", Some(l.p99));
        opt("latency_max_ms", Some(l.max));
    }
    for (p, v) in &r.peak_rss_mib {
        out.push((format!("peak_rss_mib.{p}"), *v));
    }
    for (k, v) in &r.extra {
        out.push((k.clone(), *v));
    }
    out
}

/// The table printed at the end: one row per scenario, medians.
pub fn table(summaries: &[Summary]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "scenario",
        "runs",
        "publish/s",
        "deliver/s",
        "raw/s",
        "deliver÷raw",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "attempts/ev",
        "dups",
        "order viol.",
        "CPU ms/1k",
        "peak RSS MiB",
    ]);
    for s in summaries {
        let f = |k: &str, digits: usize| match s.get(k) {
            Some(v) => format!("{v:.digits$}"),
            None => "-".to_owned(),
        };
        let rss: Vec<String> = s
            .median
            .iter()
            .filter_map(|(k, v)| Some(format!("{} {v:.0}", k.strip_prefix("peak_rss_mib.")?)))
            .collect();
        t.add_row([
            s.scenario.clone(),
            s.runs.to_string(),
            f("publish_rate", 0),
            f("delivery_rate", 0),
            f("raw_rate", 0),
            f("delivery_vs_raw", 2),
            f("latency_p50_ms", 1),
            f("latency_p90_ms", 1),
            f("latency_p99_ms", 1),
            f("latency_max_ms", 1),
            f("attempts_per_event", 2),
            f("duplicates", 0),
            f("order_violations", 0),
            f("cpu_ms_per_1k", 1),
            rss.join(", "),
        ]);
    }
    t.to_string()
}

/// Scenario-specific medians, one line each (`scenario: name = value`).
pub fn extras(summaries: &[Summary], runs: &[RunFigures]) -> Vec<String> {
    let mut lines = Vec::new();
    for s in summaries {
        let keys: Vec<&String> = runs
            .iter()
            .filter(|r| r.scenario == s.scenario)
            .flat_map(|r| r.extra.keys())
            .collect();
        for (k, v) in &s.median {
            if keys.contains(&k) {
                lines.push(format!("{}: {k} = {v:.3}", s.scenario));
            }
        }
    }
    lines.dedup();
    lines
}

/// With both `steady` and `one-dead-endpoint` in the run: the healthy
/// endpoints' delivery rate beside the dead endpoint, as a share of the
/// steady rate (each normalised by its own raw rate when both have one, so
/// machine noise between the two cancels).
pub fn dead_vs_steady(summaries: &[Summary]) -> Option<String> {
    let find = |n: &str| summaries.iter().find(|s| s.scenario == n);
    let (steady, dead) = (find("steady")?, find("one-dead-endpoint")?);
    let plain = dead.get("delivery_rate")? / steady.get("delivery_rate")?;
    let mut line =
        format!("one-dead-endpoint: healthy deliveries/s ÷ steady deliveries/s = {plain:.2}");
    if let (Some(d), Some(s)) = (dead.get("delivery_vs_raw"), steady.get("delivery_vs_raw")) {
        line += &format!(" ({:.2} as ratios to the raw rate)", d / s);
    }
    // A longer run amortises its ramp-up better: the two compare fairly
    // only at the same size.
    if let (Some(d), Some(s)) = (dead.get("published"), steady.get("published")) {
        if d != s {
            line += &format!(
                "; steady published {s:.0} events and one-dead-endpoint {d:.0}: pass --events to compare runs of one size"
            );
        }
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let us: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        let p = Percentiles::of_sorted_us(&us).unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert!(Percentiles::of_sorted_us(&[]).is_none());
    }

    #[test]
    fn medians_are_over_runs_and_ratios_are_per_run() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        let run = |d: f64, raw: f64| RunFigures {
            scenario: "steady".into(),
            delivery_rate: Some(d),
            raw_rate: Some(raw),
            ..Default::default()
        };
        let s = Summary::of(
            "steady",
            &[run(50.0, 100.0), run(90.0, 100.0), run(30.0, 300.0)],
        );
        assert_eq!(s.get("delivery_vs_raw"), Some(0.5));
        assert_eq!(s.get("raw_rate"), Some(100.0));
        assert!(table(std::slice::from_ref(&s)).contains("0.50"));
        let dead = Summary {
            scenario: "one-dead-endpoint".into(),
            ..Summary::of("one-dead-endpoint", &[run(45.0, 100.0)])
        };
        let line = dead_vs_steady(&[s.clone(), dead.clone()]).unwrap();
        assert!(line.contains("= 0.90 (0.90 as ratios"), "{line}");
        assert!(!line.contains("--events"), "{line}");
        let mut longer = s;
        longer.median.insert("published".into(), 200_000.0);
        let line = dead_vs_steady(&[longer, dead]).unwrap();
        assert!(line.contains("pass --events"), "{line}");
    }
}
