//! Fan-out: who receives what, in which order, under which ids.

use crate::common::*;
use std::collections::BTreeMap;

use crate::support::{TestNode, GUARD};
use herald_catalog::fanout_event_id;
use herald_proto::v1 as pb;
use herald_testkit::{first_arrivals, TestReceiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_reaches_every_subscribed_endpoint_in_order() {
    let mut cfg = crate::support::config();
    cfg.grpc.fanout_chunk_records = 3;
    let (_broker, cfg) = crate::support::broker(cfg);
    let node = TestNode::start(cfg).await;
    let rx = TestReceiver::start().await.unwrap();
    for s in SUBS {
        create_sub(&node, &rx, s).await;
    }
    // A batch of fan-outs and one direct publish, in this order.
    let mut items: Vec<(pb::PublishRequest, &str, Vec<&str>, i64)> = Vec::new();
    for i in 0..12i64 {
        let amount = if i % 2 == 0 { 500 } else { 1500 };
        let (ty, channels): (&str, Vec<&str>) = match i % 3 {
            0 => ("order.shipped", vec!["eu"]),
            1 => ("order.paid", vec!["us"]),
            _ => ("user.created", vec![]),
        };
        let payload = format!(r#"{{"seq":{i},"amount":{amount}}}"#);
        items.push((
            fan_out_req("shop", ty, &channels, payload),
            ty,
            channels,
            amount,
        ));
    }
    let batch = pb::PublishBatchRequest {
        events: items.iter().map(|(r, ..)| r.clone()).collect(),
    };
    let resp = node
        .events
        .clone()
        .publish_batch(batch)
        .await
        .expect("publish batch")
        .into_inner();
    assert_eq!(resp.accepted, 12, "{resp:?}");
    // Expected deliveries per endpoint, in publish order.
    let mut want: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut all_ids = Vec::new();
    for ((_, ty, channels, amount), r) in items.iter().zip(&resp.results) {
        let Some(pb::publish_result::Result::Ok(ok)) = &r.result else {
            panic!("fan-out failed: {r:?}");
        };
        assert!(
            ok.event_id.is_empty() && !ok.message_id.is_empty(),
            "{ok:?}"
        );
        let takers: Vec<&Sub> = SUBS
            .iter()
            .filter(|s| s.takes("shop", ty, channels, *amount))
            .collect();
        assert_eq!(
            ok.fanned_out as usize,
            takers.len(),
            "{ty} {channels:?} amount {amount}: fanned out to {}",
            ok.fanned_out
        );
        for s in takers {
            let id = fanout_event_id(&ok.message_id, s.id);
            want.entry(s.id).or_default().push(id.clone());
            all_ids.push(id);
        }
    }
    // A direct publish to a subscribed endpoint still works beside them.
    let direct = node.publish("crm", r#"{"direct":true}"#).await;
    want.entry("crm").or_default().push(direct.event_id.clone());
    all_ids.push(direct.event_id.clone());
    rx.wait_for_ids(&all_ids, GUARD)
        .await
        .expect("every fanned-out record arrives");
    for s in SUBS {
        let got: Vec<String> = first_arrivals(&rx.requests_for(s.id))
            .iter()
            .map(|r| r.webhook_id().to_string())
            .collect();
        let expected = want.get(s.id).cloned().unwrap_or_default();
        assert_eq!(got, expected, "{}: deliveries in publish order", s.id);
    }
    assert_eq!(want["audit"].len(), 12, "`*` takes every type");
    assert!(
        !want.contains_key("typo"),
        "a filter that cannot evaluate takes nothing"
    );
    // 8 order.* events met the typo's filter; other tests in this process
    // share the recorder, hence at least.
    let errors = crate::support::metric_sum_with(
        &node.metrics().await,
        "herald_fanout_targets_total",
        "outcome=\"filter_error\"",
    );
    assert!(
        errors.is_some_and(|n| n >= 8.0),
        "filter errors counted: {errors:?}"
    );
    assert!(!want.contains_key("paused") && !want.contains_key("elsewhere"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_retried_with_its_key_sends_each_endpoint_one_event() {
    let (_broker, cfg) = crate::support::broker(crate::support::config());
    let node = TestNode::start(cfg).await;
    let rx = TestReceiver::start().await.unwrap();
    for id in ["a", "b"] {
        create_sub(
            &node,
            &rx,
            &Sub {
                id,
                app: "shop",
                types: &["order.*"],
                channels: &[],
                filter: "",
                enabled: true,
            },
        )
        .await;
    }
    let mut keyed = fan_out_req("shop", "order.paid", &[], r#"{"order":7}"#.into());
    keyed.idempotency_key = "order-7".into();
    let mut events = node.events.clone();
    let first = events
        .publish(keyed.clone())
        .await
        .expect("fan-out")
        .into_inner();
    let again = events
        .publish(keyed.clone())
        .await
        .expect("retried fan-out")
        .into_inner();
    assert_eq!((first.fanned_out, first.duplicate), (2, false));
    assert_eq!(
        (again.message_id.as_str(), again.fanned_out, again.duplicate),
        (first.message_id.as_str(), 2, true)
    );

    // Created after that publish: it must not get it, only the next one.
    create_sub(
        &node,
        &rx,
        &Sub {
            id: "late",
            app: "shop",
            types: &["order.*"],
            channels: &[],
            filter: "",
            enabled: true,
        },
    )
    .await;
    let fence = events
        .publish(fan_out_req(
            "shop",
            "order.paid",
            &[],
            r#"{"fence":true}"#.into(),
        ))
        .await
        .expect("fence")
        .into_inner();
    assert_eq!(fence.fanned_out, 3);
    let ids: Vec<String> = ["a", "b", "late"]
        .iter()
        .map(|e| fanout_event_id(&fence.message_id, e))
        .chain(
            ["a", "b"]
                .iter()
                .map(|e| fanout_event_id(&first.message_id, e)),
        )
        .collect();
    rx.wait_for_ids(&ids, GUARD).await.expect("deliveries");
    for (ep, want) in [("a", 2), ("b", 2), ("late", 1)] {
        let all = rx.requests_for(ep);
        let got = first_arrivals(&all);
        assert_eq!(got.len(), want, "{ep}: one event per publish");
        assert_eq!(
            got.last().unwrap().webhook_id(),
            fanout_event_id(&fence.message_id, ep)
        );
    }
    node.shutdown().await;
}

/// The subscription of generated endpoint `i` of the wide test: a table of
/// patterns, channels and filters, every tenth disabled.
fn wide_sub(i: usize) -> Sub {
    let id: &'static str = Box::leak(format!("wide-{i:03}").into_boxed_str());
    let (types, channels, filter): (&'static [&'static str], &'static [&'static str], _) =
        match i % 4 {
            0 => (&["order.*"], &[], ""),
            1 => (&["order.paid"], &["eu"], ""),
            2 => (&[], &[], "amount > 1000"),
            _ => (&["user.*", "order.shipped"], &[], ""),
        };
    Sub {
        id,
        app: "wide",
        types,
        channels,
        filter,
        enabled: i % 10 != 9,
    }
}

/// A fan-out to 100 endpoints (100 keys over the test config's 4
/// partitions, so every partition's dispatcher worker takes part): each subscribed,
/// enabled endpoint receives each event it subscribed to exactly once;
/// unsubscribed, filtered-out and disabled ones receive nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_a_hundred_endpoints_exactly_once() {
    let (_broker, cfg) = crate::support::broker(crate::support::config());
    let node = TestNode::start(cfg).await;
    let rx = TestReceiver::start().await.unwrap();
    let subs: Vec<Sub> = (0..100).map(wide_sub).collect();
    for s in &subs {
        create_sub(&node, &rx, s).await;
    }
    let events: [(&str, &[&str], i64); 3] = [
        ("order.paid", &["eu"], 1500),
        ("order.shipped", &["us"], 500),
        ("user.created", &[], 2000),
    ];
    let mut want: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut ids = Vec::new();
    let mut events_client = node.events.clone();
    for (ty, channels, amount) in events {
        let payload = format!(r#"{{"amount":{amount}}}"#);
        let ok = events_client
            .publish(fan_out_req("wide", ty, channels, payload))
            .await
            .expect("fan-out")
            .into_inner();
        let takers: Vec<&Sub> = subs
            .iter()
            .filter(|s| s.takes("wide", ty, channels, amount))
            .collect();
        assert_eq!(ok.fanned_out as usize, takers.len(), "{ty}");
        for s in takers {
            let id = fanout_event_id(&ok.message_id, s.id);
            want.entry(s.id).or_default().push(id.clone());
            ids.push(id);
        }
    }
    assert!(
        ids.len() > 100,
        "the table gives a wide fan-out ({})",
        ids.len()
    );
    rx.wait_for_ids(&ids, GUARD)
        .await
        .expect("every target's record arrives");
    for s in &subs {
        let got: Vec<String> = rx
            .requests_for(s.id)
            .iter()
            .map(|r| r.webhook_id().to_string())
            .collect();
        assert_eq!(
            got,
            want.get(s.id).cloned().unwrap_or_default(),
            "{}: exactly its events, once each, in order",
            s.id
        );
    }
    node.shutdown().await;
}
