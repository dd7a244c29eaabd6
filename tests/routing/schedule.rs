//! Scheduled delivery: an event published with `delay_ms` waits in the
//! scheduled topic (no dispatcher holds it), is delivered at or after its
//! time and never before, takes its place in an ordered endpoint's order at
//! its due time, and survives a dispatcher SIGKILL while it waits.

use crate::common::*;

use crate::support::cluster::ProcessCluster;
use crate::support::{self, metric_sum, procs, TestNode, GUARD};
use herald_core::time::now_ms;
use herald_proto::v1 as pb;
use herald_testkit::TestReceiver;
use tonic::Code;

fn scheduled(endpoint: &str, payload: &str, delay_ms: u64) -> pb::PublishRequest {
    let mut req = support::publish_req(endpoint, payload);
    req.delay_ms = delay_ms;
    req
}

/// When `id` reached `rx` (unix ms), from the receiver's log.
fn arrival_ms(rx: &TestReceiver, path: &str, id: &str) -> i64 {
    rx.requests_for(path)
        .iter()
        .find(|r| r.webhook_id() == id)
        .map(|r| r.at_unix_ms)
        .unwrap_or_else(|| panic!("{id} never arrived at {path}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_takes_its_place_at_its_due_time() {
    let (_broker, cfg) = support::broker(support::config());
    let node = TestNode::start(cfg).await;
    let rx = TestReceiver::start().await.unwrap();
    node.create_endpoint("ord", &rx.url_for("ord")).await;

    // Eight seconds ahead: long enough that the checks below run before it
    // is due even on a slow machine (they say so if not).
    let later = node
        .events
        .clone()
        .publish(scheduled("ord", r#"{"n":"later"}"#, 8_000))
        .await
        .expect("scheduled publish")
        .into_inner();
    assert!(later.deliver_at_ms > now_ms(), "{later:?}");
    let b = node.publish("ord", r#"{"n":"b"}"#).await.event_id;
    let c = node.publish("ord", r#"{"n":"c"}"#).await.event_id;
    rx.wait_for_ids(&[&b, &c], GUARD)
        .await
        .expect("b and c delivered");

    // While it waits, no lane holds it: the dispatcher's lanes drop to zero
    // events before its due time (c leaves custody only once its answer is
    // processed, just after the receiver saw it; the gauge is polled until
    // then). Had the scheduled event been held in memory, they could not.
    loop {
        let held = metric_sum(&node.metrics().await, "herald_lane_events");
        let now = now_ms();
        assert!(
            now < later.deliver_at_ms,
            "the lanes still held {held:?} events at the due time"
        );
        if held == Some(0.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(rx
        .requests_for("ord")
        .iter()
        .all(|r| r.webhook_id() != later.event_id));

    rx.wait_for_ids(&[&later.event_id], GUARD)
        .await
        .expect("the scheduled event arrives");
    let ids: Vec<String> = rx
        .requests_for("ord")
        .iter()
        .map(|r| r.webhook_id().to_string())
        .collect();
    assert_eq!(
        ids,
        vec![b, c, later.event_id.clone()],
        "its place is its due time"
    );
    let arrived = arrival_ms(&rx, "ord", &later.event_id);
    assert!(
        arrived >= later.deliver_at_ms,
        "delivered {} ms before its time",
        later.deliver_at_ms - arrived
    );
    let moved = metric_sum(&node.metrics().await, "herald_scheduled_moves_total");
    assert!(moved.is_some_and(|n| n >= 1.0), "{moved:?}");

    // Bad schedules are refused, naming the field.
    let mut both = scheduled("ord", "{}", 1_000);
    both.deliver_at_ms = now_ms() + 5_000;
    assert_status(
        node.events.clone().publish(both).await,
        Code::InvalidArgument,
        &["deliver_at_ms", "delay_ms"],
    );
    assert_status(
        node.events
            .clone()
            .publish(scheduled("ord", "{}", 31 * 86_400_000))
            .await,
        Code::InvalidArgument,
        &["delay_ms", "grpc.max_schedule_delay"],
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_survives_a_dispatcher_sigkill() {
    let mut c = ProcessCluster::start("schedule-kill", &procs::config_text(4, &[])).await;
    let rx = TestReceiver::start().await.unwrap();
    c.node().create_endpoint("ep", &rx.url_for("ep")).await;
    c.spawn_dispatcher("herald=info");

    let later = c
        .node()
        .events
        .clone()
        .publish(scheduled("ep", r#"{"n":1}"#, 6_000))
        .await
        .expect("scheduled publish")
        .into_inner();
    let now = c.node().publish("ep", r#"{"n":"now"}"#).await.event_id;
    // Delivered through the dispatcher process: its scheduler is running too.
    rx.wait_for_ids(&[&now], GUARD)
        .await
        .expect("the unscheduled event arrives");
    assert!(now_ms() < later.deliver_at_ms, "killed before its time");
    tokio::task::block_in_place(|| c.fleet.kill9("dispatch", 0));
    tokio::task::block_in_place(|| c.fleet.start_node("dispatch", 0));

    rx.wait_for_ids(&[&later.event_id], GUARD)
        .await
        .expect("delivered after the restart");
    let arrived = arrival_ms(&rx, "ep", &later.event_id);
    assert!(
        arrived >= later.deliver_at_ms,
        "delivered {} ms before its time",
        later.deliver_at_ms - arrived
    );
    c.shutdown().await;
}
