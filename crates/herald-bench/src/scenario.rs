//! The named scenarios and what each one sets up: which Herald (dev, ingest
//! alone, or a running one), the traffic shape, the receivers' behaviour,
//! and the figures it adds to the common ones.

use std::time::Duration;

use clap::ValueEnum;

use crate::publish::Pace;

/// A named load scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// PublishBatch back to back (batch × publishers), 1,000 ordered endpoints.
    Steady,
    /// Ingest alone (a broker process and `herald ingest`), then the same
    /// node kind dispatching too: events acknowledged per second.
    BatchIngest,
    /// One event per Publish call, many concurrent callers.
    SinglePublish,
    /// A fixed publish rate (`--rate`), for latency.
    Paced,
    /// The receivers answer 10 % of requests with a 500 (endpoints retry
    /// after 100 ms, 200 ms, 400 ms, ...).
    #[value(name = "failing-10pct")]
    Failing10Pct,
    /// 20 % of the traffic goes to an endpoint that refuses connections;
    /// the figures are the healthy endpoints'.
    OneDeadEndpoint,
    /// Every endpoint refuses connections: events are published, then the
    /// node is watched for `--idle-secs` while it retries; the figure is
    /// its peak RSS (memory per failing endpoint stays bounded).
    FailingEndpoints,
    /// 100,000 registered endpoints (`--registered`): a new node's registry
    /// load time and peak RSS, then steady traffic to 1,000 of them.
    ManyEndpoints,
    /// No traffic: CPU of an idle `herald dev` with endpoints registered.
    Idle,
    /// One ordered endpoint takes all the traffic, one event per request
    /// and then in batches of 100 (batched delivery): a hot endpoint's
    /// ceiling, with and without batches.
    HotEndpoint,
    /// PublishBatch of fan-outs: each event goes to an application whose
    /// `--fanout` endpoints (10) all subscribe to it; the delivery figures
    /// count one per endpoint reached.
    Fanout,
    /// `steady`'s traffic on a split deployment: a broker process, `herald
    /// ingest` and `herald dispatch`; CPU per 1,000 deliveries per role.
    Split,
}

impl Scenario {
    /// The name on the command line and in reports.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// Which Herald a case runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// `herald dev` (ingest + dispatch + embedded broker, one process).
    Dev,
    /// A broker process and `herald ingest`.
    IngestOnly,
    /// A broker process, `herald ingest` and `herald dispatch`.
    Split,
}

/// One measured case (a scenario may have several).
#[derive(Debug, Clone)]
pub struct Case {
    /// Row name in the report.
    pub name: String,
    /// The scenario it belongs to.
    pub scenario: Scenario,
    /// Which Herald to start (ignored with `--server`).
    pub target: TargetKind,
    /// How events are sent.
    pub pace: Pace,
    /// Publishers (each its own connection and endpoints).
    pub publishers: usize,
    /// Events to publish.
    pub events: u64,
    /// Endpoints receiving traffic.
    pub endpoints: usize,
    /// Endpoints registered in all (≥ `endpoints`).
    pub registered: usize,
    /// Wait for deliveries (false: acknowledgements are the figure).
    pub deliver: bool,
    /// Requests the receivers fail, per mille.
    pub fail_per_mille: u32,
    /// Every n-th event to a dead endpoint.
    pub dead_every: Option<u64>,
    /// Quiet time measured instead of traffic (after it, with `refuse_all`).
    pub idle: Option<Duration>,
    /// Every endpoint points at a port that refuses connections.
    pub refuse_all: bool,
    /// Retry delays the endpoints are registered with (empty: the node's
    /// default, whose first two delays are 5 s and 5 min).
    pub retry_schedule_ms: Vec<u64>,
    /// Events per request the endpoints ask for (0: one, no batching).
    pub batch_max_events: u32,
    /// Endpoints each event reaches (1: direct publishes).
    pub fanout: usize,
}

/// The knobs of the command line that shape cases.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// `--events` (None: the scenario's default).
    pub events: Option<u64>,
    /// `--endpoints`.
    pub endpoints: usize,
    /// `--batch` (None: the scenario's default).
    pub batch: Option<usize>,
    /// `--publishers` (None: the scenario's default).
    pub publishers: Option<usize>,
    /// `--rate`.
    pub rate: u64,
    /// `--registered`.
    pub registered: usize,
    /// `--idle-secs`.
    pub idle_secs: u64,
    /// `--fanout`.
    pub fanout: usize,
}

/// The cases of `s`.
pub fn cases(s: Scenario, k: &Knobs) -> Vec<Case> {
    let base = Case {
        name: s.name(),
        scenario: s,
        target: TargetKind::Dev,
        pace: Pace::Batches {
            batch: k.batch.unwrap_or(500),
        },
        publishers: k.publishers.unwrap_or(16),
        events: k.events.unwrap_or(200_000),
        endpoints: k.endpoints,
        registered: k.endpoints,
        deliver: true,
        fail_per_mille: 0,
        dead_every: None,
        idle: None,
        refuse_all: false,
        retry_schedule_ms: Vec::new(),
        batch_max_events: 0,
        fanout: 1,
    };
    match s {
        Scenario::Steady => vec![base],
        Scenario::Split => vec![Case {
            target: TargetKind::Split,
            ..base
        }],
        Scenario::BatchIngest => {
            let alone = Case {
                name: "batch-ingest/alone".into(),
                target: TargetKind::IngestOnly,
                pace: Pace::Batches {
                    batch: k.batch.unwrap_or(1_000),
                },
                events: k.events.unwrap_or(500_000),
                deliver: false,
                ..base.clone()
            };
            let with_dispatch = Case {
                name: "batch-ingest/with-dispatch".into(),
                ..base
            };
            vec![alone, with_dispatch]
        }
        Scenario::SinglePublish => vec![Case {
            pace: Pace::Single,
            publishers: k.publishers.unwrap_or(64),
            events: k.events.unwrap_or(50_000),
            ..base
        }],
        Scenario::Paced => vec![Case {
            name: format!("paced/{}", k.rate),
            pace: Pace::Rate {
                per_second: k.rate.max(1),
            },
            publishers: k.publishers.unwrap_or(4),
            events: k.events.unwrap_or(k.rate.max(1) * 20),
            ..base
        }],
        Scenario::Failing10Pct => vec![Case {
            fail_per_mille: 100,
            // A run measures the cost of retrying, not hours of waiting.
            retry_schedule_ms: vec![100, 200, 400, 800, 1_600, 3_200],
            events: k.events.unwrap_or(50_000),
            ..base
        }],
        Scenario::OneDeadEndpoint => vec![Case {
            dead_every: Some(5),
            events: k.events.unwrap_or(100_000),
            ..base
        }],
        Scenario::FailingEndpoints => vec![Case {
            events: k.events.unwrap_or(50_000),
            deliver: false,
            refuse_all: true,
            idle: Some(Duration::from_secs(k.idle_secs.max(1))),
            ..base
        }],
        Scenario::ManyEndpoints => vec![Case {
            registered: k.registered.max(k.endpoints),
            events: k.events.unwrap_or(100_000),
            ..base
        }],
        Scenario::Idle => vec![Case {
            events: 0,
            deliver: false,
            idle: Some(Duration::from_secs(k.idle_secs.max(1))),
            ..base
        }],
        Scenario::HotEndpoint => {
            let hot = Case {
                endpoints: 1,
                registered: 1,
                publishers: 1,
                ..base
            };
            vec![
                Case {
                    name: "hot-endpoint/single".into(),
                    events: k.events.unwrap_or(10_000),
                    ..hot.clone()
                },
                Case {
                    name: "hot-endpoint/batched-100".into(),
                    events: k.events.unwrap_or(100_000),
                    batch_max_events: 100,
                    ..hot
                },
            ]
        }
        Scenario::Fanout => {
            let fanout = k.fanout.clamp(2, k.endpoints.max(2));
            vec![Case {
                name: format!("fanout/{fanout}"),
                fanout,
                // As many deliveries as steady's default run.
                events: k.events.unwrap_or(200_000 / fanout as u64),
                // Each item becomes `fanout` records: keep a call's records
                // near steady's 500.
                pace: Pace::Batches {
                    batch: k.batch.unwrap_or((500 / fanout).max(1)),
                },
                ..base
            }]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knobs() -> Knobs {
        Knobs {
            events: None,
            endpoints: 1000,
            batch: None,
            publishers: None,
            rate: 500,
            registered: 100_000,
            idle_secs: 10,
            fanout: 10,
        }
    }

    #[test]
    fn every_scenario_has_cases_with_sane_defaults() {
        for s in Scenario::value_variants() {
            let cs = cases(*s, &knobs());
            assert!(!cs.is_empty(), "{s:?}");
            for c in cs {
                assert!(c.registered >= c.endpoints, "{}", c.name);
                assert!(c.publishers >= 1, "{}", c.name);
                assert!(c.idle.is_some() || c.events > 0, "{}", c.name);
            }
        }
        assert_eq!(Scenario::Failing10Pct.name(), "failing-10pct");
        assert_eq!(Scenario::OneDeadEndpoint.name(), "one-dead-endpoint");
    }

    #[test]
    fn flags_override_scenario_defaults() {
        let k = Knobs {
            events: Some(7),
            batch: Some(3),
            ..knobs()
        };
        let c = &cases(Scenario::BatchIngest, &k)[0];
        assert_eq!(c.events, 7);
        assert!(matches!(c.pace, Pace::Batches { batch: 3 }));
        assert_eq!(cases(Scenario::Paced, &knobs())[0].events, 10_000);
        let f = &cases(Scenario::Fanout, &knobs())[0];
        assert_eq!(
            (f.name.as_str(), f.fanout, f.events),
            ("fanout/10", 10, 20_000)
        );
        assert!(matches!(f.pace, Pace::Batches { batch: 50 }));
    }
}
