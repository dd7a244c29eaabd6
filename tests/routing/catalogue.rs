//! The event type catalogue and subscription validation.

use crate::common::*;

use crate::support::{TestNode, GUARD};
use herald_proto::v1 as pb;
use herald_testkit::TestReceiver;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_round_trip_and_publish_checks() {
    let mut cfg = crate::support::config();
    cfg.grpc.allow_unknown_event_types = false;
    let (_broker, cfg) = crate::support::broker(cfg);
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
    let (_broker, cfg) = crate::support::broker(crate::support::config());
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
