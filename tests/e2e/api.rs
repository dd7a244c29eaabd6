//! The API end to end: bad input, endpoint CRUD, idempotent publishes.

use std::collections::BTreeMap;

use crate::support::health::assert_status;
use crate::support::{publish_req, TestNode, GUARD};
use herald_proto::v1 as pb;
use herald_signing::Secret;
use herald_testkit::fixtures::now_unix;
use herald_testkit::{first_arrivals, TestReceiver};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_named_status_codes() {
    const LIMIT: usize = 1024;
    let mut cfg = crate::support::config();
    cfg.grpc.max_payload_bytes = LIMIT;
    cfg.grpc.max_batch_size = 10;
    let (_broker, cfg) = crate::support::broker(cfg);
    let node = TestNode::start(cfg).await;
    let receiver = TestReceiver::start().await.unwrap();
    let mut events = node.events.clone();
    let mut endpoints = node.endpoints.clone();

    node.create_endpoint("good", &receiver.url_for("good"))
        .await;
    endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            id: "off".into(),
            url: receiver.url_for("off"),
            enabled: Some(false),
            ..Default::default()
        })
        .await
        .expect("create a disabled endpoint");
    node.create_endpoint("later-off", &receiver.url_for("later-off"))
        .await;
    endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "later-off".into(),
            enabled: Some(false),
            ..Default::default()
        })
        .await
        .expect("disable an endpoint");

    // Publish.
    assert_status(
        events.publish(publish_req("nope", "{}")).await,
        Code::NotFound,
        "nope",
    );
    assert_status(
        events.publish(publish_req("off", "{}")).await,
        Code::FailedPrecondition,
        "off",
    );
    assert_status(
        events.publish(publish_req("later-off", "{}")).await,
        Code::FailedPrecondition,
        "later-off",
    );
    assert_status(
        events.publish(publish_req("good", "{not json")).await,
        Code::InvalidArgument,
        "payload",
    );
    assert_status(
        events.publish(publish_req("good", "")).await,
        Code::InvalidArgument,
        "payload",
    );
    assert_status(
        events.publish(publish_req("", "{}")).await,
        Code::InvalidArgument,
        "endpoint_id",
    );
    let mut no_type = publish_req("good", "{}");
    no_type.event_type = String::new();
    assert_status(
        events.publish(no_type).await,
        Code::InvalidArgument,
        "event_type",
    );
    let sized = |n: usize| {
        let p = format!(r#"{{"pad":"{}"}}"#, "x".repeat(n - 10));
        assert_eq!(p.len(), n);
        p
    };
    assert_status(
        events.publish(publish_req("good", &sized(LIMIT + 1))).await,
        Code::InvalidArgument,
        "payload",
    );
    let at_limit = node.publish("good", &sized(LIMIT)).await;

    // Endpoint URLs.
    for url in ["ftp://x", "/relative", "", "http://"] {
        let r = endpoints
            .create_endpoint(pb::CreateEndpointRequest {
                id: "bad-url".into(),
                url: url.into(),
                ..Default::default()
            })
            .await;
        assert_status(r, Code::InvalidArgument, "url");
    }
    let r = endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "good".into(),
            url: Some("ftp://x".into()),
            ..Default::default()
        })
        .await;
    assert_status(r, Code::InvalidArgument, "url");

    // A batch with bad items among good ones: per-item results, good ones accepted.
    let mut no_type = publish_req("good", r#"{"n":3}"#);
    no_type.event_type = String::new();
    let batch = vec![
        publish_req("good", r#"{"n":0}"#),
        publish_req("good", "{not json"),
        publish_req("good", r#"{"n":1}"#),
        publish_req("nope", r#"{"n":2}"#),
        no_type,
        publish_req("good", r#"{"n":4}"#),
    ];
    let resp = events
        .publish_batch(pb::PublishBatchRequest { events: batch })
        .await
        .expect("a batch with bad items still answers OK")
        .into_inner();
    assert_eq!((resp.accepted, resp.rejected), (3, 3), "{resp:?}");
    let mut good_ids = Vec::new();
    let mut errors = BTreeMap::new();
    for (i, r) in resp.results.iter().enumerate() {
        assert_eq!(r.index as usize, i);
        match r.result.as_ref().expect("every item has a result") {
            pb::publish_result::Result::Ok(ok) => good_ids.push(ok.event_id.clone()),
            pb::publish_result::Result::Error(e) => {
                errors.insert(i, (e.code.clone(), e.message.clone()));
            }
        }
    }
    // The code is the `tonic::Code` Debug name (see herald-ingest events.rs).
    assert_eq!(errors.keys().copied().collect::<Vec<_>>(), vec![1, 3, 4]);
    assert_eq!(errors[&1].0, "INVALID_ARGUMENT");
    assert!(errors[&1].1.contains("payload"), "{:?}", errors[&1]);
    assert_eq!(errors[&3].0, "NOT_FOUND");
    assert_eq!(errors[&4].0, "INVALID_ARGUMENT");
    assert!(errors[&4].1.contains("event_type"), "{:?}", errors[&4]);

    assert_status(
        events
            .publish_batch(pb::PublishBatchRequest { events: vec![] })
            .await,
        Code::InvalidArgument,
        "events",
    );
    let too_many = pb::PublishBatchRequest {
        events: (0..11).map(|_| publish_req("good", "{}")).collect(),
    };
    assert_status(
        events.publish_batch(too_many).await,
        Code::InvalidArgument,
        "events",
    );

    // Everything accepted arrives, in order; nothing else does.
    let mut expected = vec![at_limit.event_id.clone()];
    expected.extend(good_ids);
    receiver
        .wait_for_ids(&expected, GUARD)
        .await
        .expect("accepted events arrive");
    let all = receiver.requests();
    let arrived: Vec<&str> = first_arrivals(&all)
        .iter()
        .map(|r| r.webhook_id())
        .collect();
    assert_eq!(
        arrived,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(
        all.iter().all(|r| r.path == "/good"),
        "only the good endpoint gets deliveries"
    );
    let bodies: Vec<String> = first_arrivals(&all)[1..]
        .iter()
        .map(|r| r.body_text())
        .collect();
    assert_eq!(bodies, vec![r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":4}"#]);

    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_crud_round_trip() {
    let (_broker, cfg) = crate::support::broker(crate::support::config());
    let node = TestNode::start(cfg).await;
    let receiver = TestReceiver::start().await.unwrap();
    let mut endpoints = node.endpoints.clone();

    // Create: the secret is returned once (a given one as given); reads never show it.
    let given = Secret::generate().to_whsec();
    let mut secrets = BTreeMap::new();
    for i in 0..5 {
        let id = format!("crud-{i}");
        let resp = endpoints
            .create_endpoint(pb::CreateEndpointRequest {
                id: id.clone(),
                url: receiver.url_for(&id),
                secret: if i == 0 { given.clone() } else { String::new() },
                description: format!("endpoint {i}"),
                ..Default::default()
            })
            .await
            .expect("create")
            .into_inner();
        assert!(resp.secret.starts_with("whsec_"), "{}", resp.secret);
        if i == 0 {
            assert_eq!(resp.secret, given);
        }
        let created = resp.endpoint.expect("created endpoint");
        assert_eq!(
            (created.id.as_str(), created.enabled, created.ordered),
            (id.as_str(), true, true)
        );
        // Read-your-writes: a get right after the create sees it.
        let got = endpoints
            .get_endpoint(pb::GetEndpointRequest { id: id.clone() })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(got, created);
        let key = resp.secret.trim_start_matches("whsec_");
        assert!(
            !format!("{got:?}").contains(key),
            "get must not reveal the secret"
        );
        secrets.insert(id, resp.secret);
    }
    let dup = endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            id: "crud-0".into(),
            url: receiver.url_for("x"),
            ..Default::default()
        })
        .await;
    assert_status(dup, Code::AlreadyExists, "crud-0");

    // List in pages of 2 visits every endpoint once.
    let list_all = |mut endpoints: pb::endpoint_service_client::EndpointServiceClient<_>| async move {
        let (mut ids, mut pages, mut token) = (Vec::new(), 0, String::new());
        loop {
            let page = endpoints
                .list_endpoints(pb::ListEndpointsRequest {
                    page_size: 2,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .expect("list")
                .into_inner();
            pages += 1;
            assert!(page.endpoints.len() <= 2);
            ids.extend(page.endpoints.iter().map(|e| e.id.clone()));
            if page.next_page_token.is_empty() {
                return (ids, pages);
            }
            assert!(pages < 10, "paging does not end");
            token = page.next_page_token;
        }
    };
    let (ids, pages) = list_all(endpoints.clone()).await;
    assert_eq!(ids, secrets.keys().cloned().collect::<Vec<_>>());
    assert_eq!(pages, 3);
    for e in endpoints
        .list_endpoints(pb::ListEndpointsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .endpoints
    {
        let key = secrets[&e.id].trim_start_matches("whsec_").to_string();
        assert!(
            !format!("{e:?}").contains(&key),
            "list must not reveal secrets"
        );
    }

    // Update: url, description and custom headers change, and deliveries follow.
    let headers: std::collections::HashMap<String, String> = [
        ("x-tenant".to_string(), "acme".to_string()),
        ("x-trace".to_string(), "t1".to_string()),
    ]
    .into();
    let updated = endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "crud-1".into(),
            url: Some(receiver.url_for("crud-1-moved")),
            description: Some("moved".into()),
            headers: Some(pb::HeaderMap {
                headers: headers.clone(),
            }),
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.url, receiver.url_for("crud-1-moved"));
    assert_eq!(updated.description, "moved");
    assert_eq!(updated.headers, headers);
    let got = endpoints
        .get_endpoint(pb::GetEndpointRequest {
            id: "crud-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, updated);
    let moved = node
        .publish("crud-1", r#"{"after":"update"}"#)
        .await
        .event_id;
    receiver
        .wait_for_ids(&[&moved], GUARD)
        .await
        .expect("delivery after update");
    let r = receiver
        .requests_for("crud-1-moved")
        .into_iter()
        .find(|r| r.webhook_id() == moved)
        .expect("at new url");
    assert_eq!(r.header("x-tenant"), Some("acme"));
    assert_eq!(r.header("x-trace"), Some("t1"));
    r.verify(&[Secret::parse(&secrets["crud-1"]).unwrap()], now_unix())
        .expect("signed with the same secret");
    assert!(
        receiver.requests_for("crud-1").is_empty(),
        "nothing goes to the old url"
    );

    // Rotation: both secrets sign until the next rotation.
    let old = Secret::parse(&secrets["crud-2"]).unwrap();
    let new = Secret::generate();
    endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "crud-2".into(),
            rotate_secret: Some(new.to_whsec()),
            ..Default::default()
        })
        .await
        .expect("rotate secret");
    let rotated = node
        .publish("crud-2", r#"{"after":"rotation"}"#)
        .await
        .event_id;
    receiver
        .wait_for_ids(&[&rotated], GUARD)
        .await
        .expect("delivery after rotation");
    let r = receiver
        .requests_for("crud-2")
        .into_iter()
        .find(|r| r.webhook_id() == rotated)
        .unwrap();
    let sig = r.header("webhook-signature").expect("signature header");
    assert_eq!(
        sig.split(' ').filter(|s| s.starts_with("v1,")).count(),
        2,
        "{sig}"
    );
    let now = now_unix();
    r.verify(std::slice::from_ref(&new), now)
        .expect("new secret verifies");
    r.verify(std::slice::from_ref(&old), now)
        .expect("old secret verifies");
    assert!(r.verify(&[Secret::generate()], now).is_err());
    let bad_rotation = endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "crud-2".into(),
            rotate_secret: Some("not-a-secret".into()),
            ..Default::default()
        })
        .await;
    assert_status(bad_rotation, Code::InvalidArgument, "rotate_secret");

    // Delete.
    endpoints
        .delete_endpoint(pb::DeleteEndpointRequest {
            id: "crud-3".into(),
        })
        .await
        .expect("delete");
    assert_status(
        endpoints
            .get_endpoint(pb::GetEndpointRequest {
                id: "crud-3".into(),
            })
            .await,
        Code::NotFound,
        "crud-3",
    );
    assert_status(
        endpoints
            .delete_endpoint(pb::DeleteEndpointRequest {
                id: "crud-3".into(),
            })
            .await,
        Code::NotFound,
        "crud-3",
    );
    assert_status(
        node.events
            .clone()
            .publish(publish_req("crud-3", "{}"))
            .await,
        Code::NotFound,
        "crud-3",
    );
    let (ids, _) = list_all(endpoints.clone()).await;
    assert_eq!(ids, vec!["crud-0", "crud-1", "crud-2", "crud-4"]);
    let r = endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "crud-3".into(),
            description: Some("x".into()),
            ..Default::default()
        })
        .await;
    assert_status(r, Code::NotFound, "crud-3");

    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_publish_returns_same_event_id() {
    let (_broker, cfg) = crate::support::broker(crate::support::config());
    let node = TestNode::start(cfg).await;
    let receiver = TestReceiver::start().await.unwrap();
    node.create_endpoint("idem", &receiver.url_for("idem"))
        .await;
    node.create_endpoint("idem-2", &receiver.url_for("idem-2"))
        .await;
    let mut events = node.events.clone();

    let keyed = |ep: &str| {
        let mut r = publish_req(ep, r#"{"order":42}"#);
        r.idempotency_key = "order-42".into();
        r
    };
    let first = events
        .publish(keyed("idem"))
        .await
        .expect("first publish")
        .into_inner();
    let second = events
        .publish(keyed("idem"))
        .await
        .expect("retried publish")
        .into_inner();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(second.event_id, first.event_id);
    assert_eq!(
        (second.partition, second.offset),
        (first.partition, first.offset)
    );
    // The retry wrote nothing: the next record of this endpoint's partition
    // directly follows the first one.
    let fence = node.publish("idem", r#"{"fence":true}"#).await;
    assert_eq!(
        (fence.partition, fence.offset),
        (first.partition, first.offset + 1)
    );

    // Keys are scoped per endpoint.
    let other = events.publish(keyed("idem-2")).await.unwrap().into_inner();
    assert!(!other.duplicate);
    assert_ne!(other.event_id, first.event_id);

    receiver
        .wait_for_ids(&[&first.event_id, &fence.event_id], GUARD)
        .await
        .expect("deliveries");
    let all = receiver.requests_for("idem");
    let arrived: Vec<&str> = first_arrivals(&all)
        .iter()
        .map(|r| r.webhook_id())
        .collect();
    assert_eq!(
        arrived,
        vec![first.event_id.as_str(), fence.event_id.as_str()]
    );

    node.shutdown().await;
}
