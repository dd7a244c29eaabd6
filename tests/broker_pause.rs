//! A broker that stops answering for longer than the group session, then
//! answers again: the persistent broker (tansu) is frozen with SIGSTOP for
//! 12 s (twice the 6 s session) while a dispatcher holds every partition,
//! then thawed. The dispatcher must get its partitions back and deliver
//! what was published before and after, in order.
//!
//! The 12 s is the fault's length, not a wait for something to happen:
//! every wait on an outcome polls a real condition under a guard.
//!
//! tansu 0.6.0's coordinator loses the group's leader in this situation (a
//! member evicted by its own late heartbeat stays recorded as leader; see
//! docs/delivery-semantics.md, the long fleet variant). Before the group
//! nudge (`crates/herald-dispatch/src/settle.rs`) the dispatcher never got
//! a partition back here; with it, the rejoin after twice the rebalance
//! timeout brings the group back. `HERALD_IT_KEEP=1` keeps the run
//! directory (logs, tansu's storage).

mod support;

use std::time::{Duration, Instant};

use herald_proto::v1 as pb;
use herald_testkit::TestReceiver;
use support::fleet::{publish_until_accepted, Broker, BrokerKind, Fleet, Item, PublishRetries};
use support::tansu::TansuBroker;

const PARTITIONS: i32 = 6;
const ENDPOINTS: usize = 12;
const GUARD: Duration = Duration::from_secs(240);

fn items(round: usize) -> Vec<Item> {
    (0..ENDPOINTS)
        .map(|i| Item {
            endpoint: format!("p-{i:02}"),
            payload: format!(r#"{{"round":{round},"i":{i}}}"#),
            key: format!("round-{round}-{i}"),
        })
        .collect()
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_recovers_after_the_broker_freezes() {
    let Some(tansu) = TansuBroker::binary() else {
        return;
    };
    let dir = support::procs::run_dir("broker-pause");
    eprintln!("run directory: {}", dir.display());
    let toml = support::procs::config_text(PARTITIONS, &[]);
    let mut fleet = tokio::task::block_in_place(|| {
        Fleet::start(BrokerKind::Tansu(tansu), &dir, &toml, 1, 1, GUARD)
    });
    let rx = TestReceiver::start().await.unwrap();
    let (_, mut endpoints) = fleet.clients(0).await;
    for i in 0..ENDPOINTS {
        endpoints
            .create_endpoint(pb::CreateEndpointRequest {
                id: format!("p-{i:02}"),
                url: rx.url_for(&format!("p-{i:02}")),
                ..Default::default()
            })
            .await
            .expect("create an endpoint");
    }
    tokio::task::block_in_place(|| fleet.wait_assigned(0));

    let mut retries = PublishRetries::default();
    let mut published = Vec::new();
    for round in 0..2 {
        let client = fleet.clients(0).await.0;
        let answers = publish_until_accepted(
            &items(round),
            |_| {
                let c = client.clone();
                async move { Some(c) }
            },
            &mut retries,
            Instant::now() + GUARD,
        )
        .await;
        published.extend(answers.into_iter().map(|a| a.event_id));
        if round == 0 {
            rx.wait_for_ids(&published, GUARD)
                .await
                .expect("the first round is delivered");
            let pid = match &fleet.broker {
                Broker::Tansu(t) => t.proc.as_ref().expect("tansu runs").pid(),
                Broker::Mock(_) => unreachable!("this test runs on tansu"),
            };
            eprintln!("freezing the broker for 12 s");
            signal(pid, "-STOP");
            tokio::time::sleep(Duration::from_secs(12)).await;
            signal(pid, "-CONT");
        }
    }
    rx.wait_for_ids(&published, GUARD)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "after the broker thawed, not everything was delivered ({e:?}); logs in {}",
                dir.display()
            )
        });
    for i in 0..ENDPOINTS {
        let path = format!("p-{i:02}");
        let got: Vec<String> = rx
            .requests_for(&path)
            .iter()
            .map(|r| r.webhook_id().to_string())
            .collect();
        let want: Vec<&String> = published.iter().skip(i).step_by(ENDPOINTS).collect();
        let mut firsts: Vec<&String> = Vec::new();
        for id in &got {
            if !firsts.contains(&id) {
                firsts.push(id);
            }
        }
        assert_eq!(firsts, want, "{path}: first arrivals in publish order");
    }
    eprintln!("publish retries: {retries:?}");
    drop(fleet);
    if std::env::var_os("HERALD_IT_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
