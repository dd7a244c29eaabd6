//! Event types, subscriptions and fan-out end to end (issue 8): one node
//! (ingest + dispatcher) on the embedded broker, real HTTP receivers on
//! port 0.
//!
//! - `fan_out_reaches_every_subscribed_endpoint_in_order`: an application's
//!   endpoints subscribed by pattern, channel and CEL filter; the records
//!   each endpoint receives are exactly those a model of the subscriptions
//!   picks, in publish order, with the derived event ids; other
//!   applications and disabled endpoints get nothing; fan-outs larger than
//!   one chunk (`grpc.fanout_chunk_records = 3`) arrive whole.
//! - `fan_out_retried_with_its_key_sends_each_endpoint_one_event`: the
//!   idempotency key gives the same message id and the same per-endpoint ids;
//!   a subscription created after a publish does not receive it.
//! - `catalogue_round_trip_and_publish_checks`: event type CRUD and errors,
//!   schema refusals naming the failing path, archived and unknown types.
//! - `subscriptions_are_validated_with_positions`: bad patterns, channels
//!   and filters are refused at create and update, naming the field and the
//!   position of the mistake.
//! - `send_test_event_reports_the_first_attempt`: `SendTestEvent` delivers a
//!   marked, signed event through the normal path and reports the first
//!   attempt's status, outcome and response, for a working and a failing
//!   receiver.

mod support;

use std::collections::BTreeMap;

use herald_catalog::fanout_event_id;
use herald_proto::v1 as pb;
use herald_proto::v1::event_type_service_client::EventTypeServiceClient;
use herald_testkit::{first_arrivals, Policy, Reply, TestReceiver};
use support::{TestNode, GUARD};
use tonic::transport::Channel;
use tonic::Code;

/// One endpoint's subscription, as the test's model of who gets what.
struct Sub {
    id: &'static str,
    app: &'static str,
    types: &'static [&'static str],
    channels: &'static [&'static str],
    filter: &'static str,
    enabled: bool,
}

impl Sub {
    /// The model: does this endpoint take an event?
    fn takes(&self, app: &str, ty: &str, channels: &[&str], amount: i64) -> bool {
        let type_ok = self.types.is_empty()
            || self.types.iter().any(|p| {
                let (ps, ts): (Vec<&str>, Vec<&str>) =
                    (p.split('.').collect(), ty.split('.').collect());
                *p == "*"
                    || (ps.len() == ts.len()
                        && ps.iter().zip(&ts).all(|(a, b)| *a == "*" || a == b))
            });
        let channel_ok =
            self.channels.is_empty() || self.channels.iter().any(|c| channels.contains(c));
        let filter_ok = match self.filter {
            "" => true,
            "amount > 1000" => amount > 1000,
            other => panic!("the model does not know filter {other:?}"),
        };
        self.enabled && self.app == app && type_ok && channel_ok && filter_ok
    }
}

const SUBS: &[Sub] = &[
    Sub {
        id: "crm",
        app: "shop",
        types: &["order.*"],
        channels: &[],
        filter: "",
        enabled: true,
    },
    Sub {
        id: "sms",
        app: "shop",
        types: &["order.shipped"],
        channels: &["eu"],
        filter: "",
        enabled: true,
    },
    Sub {
        id: "erp",
        app: "shop",
        types: &[],
        channels: &[],
        filter: "amount > 1000",
        enabled: true,
    },
    Sub {
        id: "audit",
        app: "shop",
        types: &["*"],
        channels: &[],
        filter: "",
        enabled: true,
    },
    Sub {
        id: "paused",
        app: "shop",
        types: &["*"],
        channels: &[],
        filter: "",
        enabled: false,
    },
    Sub {
        id: "elsewhere",
        app: "other",
        types: &["*"],
        channels: &[],
        filter: "",
        enabled: true,
    },
];

fn fan_out_req(app: &str, ty: &str, channels: &[&str], payload: String) -> pb::PublishRequest {
    pb::PublishRequest {
        app_id: app.into(),
        event_type: ty.into(),
        channels: channels.iter().map(|c| c.to_string()).collect(),
        payload,
        ..Default::default()
    }
}

async fn create_sub(node: &TestNode, rx: &TestReceiver, s: &Sub) {
    node.endpoints
        .clone()
        .create_endpoint(pb::CreateEndpointRequest {
            id: s.id.into(),
            url: rx.url_for(s.id),
            app_id: s.app.into(),
            event_types: s.types.iter().map(|t| t.to_string()).collect(),
            channels: s.channels.iter().map(|t| t.to_string()).collect(),
            filter: s.filter.into(),
            enabled: Some(s.enabled),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create endpoint {}: {e}", s.id));
}

async fn event_types(node: &TestNode) -> EventTypeServiceClient<Channel> {
    EventTypeServiceClient::new(support::channel(&node.node).await)
}

#[track_caller]
fn assert_status<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, needles: &[&str]) {
    match r {
        Ok(v) => panic!("expected {code:?} mentioning {needles:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "status {s:?}");
            for n in needles {
                assert!(
                    s.message().contains(n),
                    "{code:?} message {:?} does not mention {n:?}",
                    s.message()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_reaches_every_subscribed_endpoint_in_order() {
    let mut cfg = support::config();
    cfg.grpc.fanout_chunk_records = 3;
    let (_broker, cfg) = support::broker(cfg);
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
            let id = fan_out_event_id(&ok.message_id, s.id);
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
    assert!(!want.contains_key("paused") && !want.contains_key("elsewhere"));
    node.shutdown().await;
}

fn fan_out_event_id(message_id: &str, endpoint: &str) -> String {
    fanout_event_id(message_id, endpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_retried_with_its_key_sends_each_endpoint_one_event() {
    let (_broker, cfg) = support::broker(support::config());
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
        .map(|e| fan_out_event_id(&fence.message_id, e))
        .chain(
            ["a", "b"]
                .iter()
                .map(|e| fan_out_event_id(&first.message_id, e)),
        )
        .collect();
    rx.wait_for_ids(&ids, GUARD).await.expect("deliveries");
    for (ep, want) in [("a", 2), ("b", 2), ("late", 1)] {
        let all = rx.requests_for(ep);
        let got = first_arrivals(&all);
        assert_eq!(got.len(), want, "{ep}: one event per publish");
        assert_eq!(
            got.last().unwrap().webhook_id(),
            fan_out_event_id(&fence.message_id, ep)
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_round_trip_and_publish_checks() {
    let mut cfg = support::config();
    cfg.grpc.allow_unknown_event_types = false;
    let (_broker, cfg) = support::broker(cfg);
    let node = TestNode::start(cfg).await;
    let rx = TestReceiver::start().await.unwrap();
    node.create_endpoint("shop-ep", &rx.url_for("shop-ep"))
        .await;
    let mut types = event_types(&node).await;
    let schema = r#"{"type":"object","required":["amount"],"properties":{"amount":{"type":"number","minimum":0}}}"#;
    let created = types
        .create_event_type(pb::CreateEventTypeRequest {
            name: "invoice.paid".into(),
            description: "an invoice was paid".into(),
            schema_json: schema.into(),
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        (created.name.as_str(), created.archived),
        ("invoice.paid", false)
    );
    assert!(created.created_at_ms > 0);
    assert_status(
        types
            .create_event_type(pb::CreateEventTypeRequest {
                name: "invoice.paid".into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        &["invoice.paid"],
    );
    assert_status(
        types
            .create_event_type(pb::CreateEventTypeRequest {
                name: "bad..name".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["bad..name"],
    );
    assert_status(
        types
            .create_event_type(pb::CreateEventTypeRequest {
                name: "x".into(),
                schema_json: "{not json".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["schema_json"],
    );
    assert_status(
        types
            .create_event_type(pb::CreateEventTypeRequest {
                name: "y".into(),
                schema_json: r#"{"type":"no-such-type"}"#.into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["schema"],
    );
    for name in ["a.one", "a.two", "a.three"] {
        types
            .create_event_type(pb::CreateEventTypeRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .expect("create");
    }
    assert_status(
        types
            .get_event_type(pb::GetEventTypeRequest {
                name: "nope".into(),
            })
            .await,
        Code::NotFound,
        &["nope"],
    );

    // Publishing: the schema names the failing path; unknown types refused.
    let publish = |ty: &str, payload: &str| pb::PublishRequest {
        endpoint_id: "shop-ep".into(),
        event_type: ty.into(),
        payload: payload.into(),
        ..Default::default()
    };
    let mut events = node.events.clone();
    assert_status(
        events
            .publish(publish("invoice.paid", r#"{"amount":-3}"#))
            .await,
        Code::InvalidArgument,
        &["payload", "/amount", "invoice.paid"],
    );
    assert_status(
        events
            .publish(publish("invoice.paid", r#"{"total":3}"#))
            .await,
        Code::InvalidArgument,
        &["payload", "amount"],
    );
    assert_status(
        events.publish(publish("never.created", "{}")).await,
        Code::InvalidArgument,
        &["never.created", "allow_unknown_event_types"],
    );
    let ok = events
        .publish(publish("invoice.paid", r#"{"amount":3}"#))
        .await
        .expect("a valid payload")
        .into_inner();

    // Update, archive, list.
    let updated = types
        .update_event_type(pb::UpdateEventTypeRequest {
            name: "invoice.paid".into(),
            description: Some("paid in full".into()),
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(
        (updated.description.as_str(), updated.schema_json.is_empty()),
        ("paid in full", false)
    );
    let archived = types
        .archive_event_type(pb::ArchiveEventTypeRequest {
            name: "invoice.paid".into(),
            unarchive: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(archived.archived);
    assert_status(
        events
            .publish(publish("invoice.paid", r#"{"amount":3}"#))
            .await,
        Code::FailedPrecondition,
        &["archived"],
    );
    let list =
        |include_archived: bool, page_size: u32, page_token: String| pb::ListEventTypesRequest {
            include_archived,
            page_size,
            page_token,
        };
    let visible = types
        .list_event_types(list(false, 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = visible
        .event_types
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["a.one", "a.three", "a.two"]);
    let page = types
        .list_event_types(list(true, 2, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.event_types.len(), 2);
    let rest = types
        .list_event_types(list(true, 2, page.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();
    let mut all: Vec<String> = page
        .event_types
        .iter()
        .chain(&rest.event_types)
        .map(|t| t.name.clone())
        .collect();
    all.sort();
    assert_eq!(all, ["a.one", "a.three", "a.two", "invoice.paid"]);
    types
        .archive_event_type(pb::ArchiveEventTypeRequest {
            name: "invoice.paid".into(),
            unarchive: true,
        })
        .await
        .expect("unarchive");
    events
        .publish(publish("invoice.paid", r#"{"amount":4}"#))
        .await
        .expect("published again once unarchived");
    rx.wait_for_ids(&[&ok.event_id], GUARD)
        .await
        .expect("the valid event arrives");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_validated_with_positions() {
    let (_broker, cfg) = support::broker(support::config());
    let node = TestNode::start(cfg).await;
    let mut endpoints = node.endpoints.clone();
    let create =
        |types: &[&str], channels: &[&str], filter: &str, app: &str| pb::CreateEndpointRequest {
            url: "http://127.0.0.1:9/hook".into(),
            app_id: app.into(),
            event_types: types.iter().map(|t| t.to_string()).collect(),
            channels: channels.iter().map(|t| t.to_string()).collect(),
            filter: filter.into(),
            ..Default::default()
        };
    assert_status(
        endpoints
            .create_endpoint(create(&["order.*", "order.**"], &[], "", ""))
            .await,
        Code::InvalidArgument,
        &["event_types[1]"],
    );
    assert_status(
        endpoints
            .create_endpoint(create(&[], &["has space"], "", ""))
            .await,
        Code::InvalidArgument,
        &["channels"],
    );
    assert_status(
        endpoints
            .create_endpoint(create(&[], &[], "amount >", ""))
            .await,
        Code::InvalidArgument,
        &["filter", "line 1, column"],
    );
    assert_status(
        endpoints
            .create_endpoint(create(&[], &[], "", "no spaces allowed"))
            .await,
        Code::InvalidArgument,
        &["app_id"],
    );
    let ep = endpoints
        .create_endpoint(create(&["order.*"], &["eu"], "amount > 1000", ""))
        .await
        .expect("valid subscription")
        .into_inner()
        .endpoint
        .unwrap();
    assert_eq!(ep.app_id, "default");
    assert_eq!(
        (
            ep.event_types.clone(),
            ep.channels.clone(),
            ep.filter.as_str()
        ),
        (
            vec!["order.*".to_string()],
            vec!["eu".to_string()],
            "amount > 1000"
        )
    );
    let update = |filter: Option<&str>, types: Option<Vec<String>>| pb::UpdateEndpointRequest {
        id: ep.id.clone(),
        filter: filter.map(str::to_string),
        event_types: types.map(|values| pb::StringList { values }),
        ..Default::default()
    };
    assert_status(
        endpoints
            .update_endpoint(update(Some("customer.tier == "), None))
            .await,
        Code::InvalidArgument,
        &["filter", "line 1"],
    );
    let cleared = endpoints
        .update_endpoint(update(Some(""), Some(vec![])))
        .await
        .expect("clear")
        .into_inner();
    assert_eq!(
        (
            cleared.filter.as_str(),
            cleared.event_types.len(),
            cleared.channels.clone()
        ),
        ("", 0, vec!["eu".to_string()])
    );
    let listed = endpoints
        .list_endpoints(pb::ListEndpointsRequest {
            app_id: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.endpoints.len(), 1);
    let none = endpoints
        .list_endpoints(pb::ListEndpointsRequest {
            app_id: "shop".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.endpoints.is_empty());
    // A fan-out must name no event id, and its type must be a catalogue name.
    let mut events = node.events.clone();
    let mut with_id = fan_out_req("default", "order.paid", &[], "{}".into());
    with_id.event_id = "mine".into();
    assert_status(
        events.publish(with_id).await,
        Code::InvalidArgument,
        &["event_id"],
    );
    assert_status(
        events
            .publish(fan_out_req("default", "order paid", &[], "{}".into()))
            .await,
        Code::InvalidArgument,
        &["event_type"],
    );
    assert_status(
        events
            .publish(pb::PublishRequest {
                event_type: "a".into(),
                payload: "{}".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["endpoint_id", "app_id"],
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_event_reports_the_first_attempt() {
    let (_broker, cfg) = support::broker(support::config());
    let node = TestNode::start(cfg).await;
    let rx = TestReceiver::with_policy(Policy::new(|r, _| {
        if r.path == "/broken" {
            Reply::status(500).body("not today")
        } else {
            Reply::status(204)
        }
    }))
    .await
    .unwrap();
    node.create_endpoint("works", &rx.url_for("works")).await;
    node.create_endpoint("broken", &rx.url_for("broken")).await;
    let mut endpoints = node.endpoints.clone();
    let test = |id: &str| pb::SendTestEventRequest {
        id: id.into(),
        ..Default::default()
    };

    let ok = endpoints
        .send_test_event(test("works"))
        .await
        .expect("test event")
        .into_inner();
    assert!(ok.attempted, "{ok:?}");
    assert_eq!((ok.status, ok.outcome.as_str()), (204, "success"), "{ok:?}");
    assert!(ok.event_id.starts_with("test_"), "{}", ok.event_id);
    let got = rx.requests_for("works");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].webhook_id(), ok.event_id);
    assert!(got[0]
        .header("webhook-signature")
        .is_some_and(|s| s.starts_with("v1,")));
    let body: serde_json::Value = serde_json::from_str(&got[0].body_text()).unwrap();
    assert_eq!(
        (body["test"].as_bool(), body["type"].as_str()),
        (Some(true), Some("herald.test"))
    );

    let bad = endpoints
        .send_test_event(pb::SendTestEventRequest {
            id: "broken".into(),
            event_type: "order.paid".into(),
            payload: r#"{"amount":1}"#.into(),
            ..Default::default()
        })
        .await
        .expect("test event")
        .into_inner();
    assert!(bad.attempted, "{bad:?}");
    assert_eq!(
        (bad.status, bad.outcome.as_str(), bad.response_body.as_str()),
        (500, "retryable", "not today"),
        "{bad:?}"
    );

    assert_status(
        endpoints.send_test_event(test("nope")).await,
        Code::NotFound,
        &["nope"],
    );
    endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "works".into(),
            enabled: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_status(
        endpoints.send_test_event(test("works")).await,
        Code::FailedPrecondition,
        &["disabled"],
    );
    node.shutdown().await;
}
