//! A black-box table of hostile inputs against a running node: each case
//! gets the status code it should, its message names the field, and the
//! node keeps delivering to an endpoint that was there before (nothing
//! already accepted is harmed).

mod support;

use herald_proto::v1 as pb;
use herald_testkit::TestReceiver;
use support::{TestNode, GUARD};
use tonic::Code;

/// A `PublishRequest` whose `payload` (tag 3) carries raw bytes, so a test
/// can send what a well-behaved client cannot: invalid UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct RawPublish {
    #[prost(string, tag = "1")]
    endpoint_id: String,
    #[prost(string, tag = "2")]
    event_type: String,
    #[prost(bytes = "vec", tag = "3")]
    payload: Vec<u8>,
}

fn create(id: &str) -> pb::CreateEndpointRequest {
    pb::CreateEndpointRequest {
        id: id.into(),
        url: "http://127.0.0.1:9/hook".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_get_clear_errors_and_harm_nothing() {
    let (_broker, cfg) = support::broker(support::config());
    let node = TestNode::start(cfg).await;
    let receiver = TestReceiver::start().await.expect("receiver starts");
    node.create_endpoint("steady", &receiver.url_for("/steady"))
        .await;
    let mut endpoints = node.endpoints.clone();

    let rl = |per_second, burst| Some(pb::RateLimit { per_second, burst });
    let cases: Vec<(&str, pb::CreateEndpointRequest, &str)> = vec![
        (
            "rate limit u32::MAX",
            pb::CreateEndpointRequest {
                rate_limit: rl(u32::MAX, 0),
                ..create("h1")
            },
            "rate_limit.per_second",
        ),
        (
            "burst u32::MAX",
            pb::CreateEndpointRequest {
                rate_limit: rl(10, u32::MAX),
                ..create("h2")
            },
            "rate_limit.burst",
        ),
        (
            "max_in_flight u32::MAX",
            pb::CreateEndpointRequest {
                max_in_flight: u32::MAX,
                ..create("h3")
            },
            "max_in_flight",
        ),
        (
            "retry delay 1 ms",
            pb::CreateEndpointRequest {
                retry_schedule_ms: vec![1, 1, 1],
                ..create("h4")
            },
            "retry_schedule_ms",
        ),
        (
            "retry delay u64::MAX",
            pb::CreateEndpointRequest {
                retry_schedule_ms: vec![u64::MAX],
                ..create("h5")
            },
            "retry_schedule_ms",
        ),
        (
            "timeout 1 ms",
            pb::CreateEndpointRequest {
                timeout_ms: 1,
                ..create("h6")
            },
            "timeout_ms",
        ),
        (
            "timeout u32::MAX",
            pb::CreateEndpointRequest {
                timeout_ms: u32::MAX,
                ..create("h7")
            },
            "timeout_ms",
        ),
        (
            "max age u64::MAX",
            pb::CreateEndpointRequest {
                max_age_ms: u64::MAX,
                ..create("h8")
            },
            "max_age_ms",
        ),
        (
            "description 2 KiB",
            pb::CreateEndpointRequest {
                description: "d".repeat(2048),
                ..create("h9")
            },
            "description",
        ),
        (
            "control characters in description",
            pb::CreateEndpointRequest {
                description: "\u{1b}[31mred".into(),
                ..create("h10")
            },
            "description",
        ),
        (
            "header value 5 KiB",
            pb::CreateEndpointRequest {
                headers: [("X-Big".to_string(), "v".repeat(5000))].into(),
                ..create("h11")
            },
            "headers[X-Big]",
        ),
        (
            "hop-by-hop TE",
            pb::CreateEndpointRequest {
                headers: [("TE".to_string(), "trailers".to_string())].into(),
                ..create("h12")
            },
            "headers[TE]",
        ),
        (
            "hop-by-hop upgrade",
            pb::CreateEndpointRequest {
                headers: [("upgrade".to_string(), "h2c".to_string())].into(),
                ..create("h13")
            },
            "headers[upgrade]",
        ),
        (
            "Keep-Alive",
            pb::CreateEndpointRequest {
                headers: [("Keep-Alive".to_string(), "1".to_string())].into(),
                ..create("h14")
            },
            "headers[Keep-Alive]",
        ),
        (
            "Host",
            pb::CreateEndpointRequest {
                headers: [("HOST".to_string(), "evil".to_string())].into(),
                ..create("h15")
            },
            "headers[HOST]",
        ),
        (
            "User-Agent",
            pb::CreateEndpointRequest {
                headers: [("user-agent".to_string(), "x".to_string())].into(),
                ..create("h16")
            },
            "headers[user-agent]",
        ),
        (
            "header line break",
            pb::CreateEndpointRequest {
                headers: [("X-A".to_string(), "a\r\nInjected: 1".to_string())].into(),
                ..create("h17")
            },
            "headers[X-A]",
        ),
        ("id with a slash", create("../etc"), "id"),
        (
            "url without host",
            pb::CreateEndpointRequest {
                url: "http:///x".into(),
                ..create("h18")
            },
            "url",
        ),
        (
            "secret too short",
            pb::CreateEndpointRequest {
                secret: "whsec_abc".into(),
                ..create("h19")
            },
            "secret",
        ),
    ];
    for (label, req, field) in cases {
        let status = endpoints.create_endpoint(req).await.expect_err(label);
        assert_eq!(status.code(), Code::InvalidArgument, "{label}: {status:?}");
        assert!(
            status.message().contains(field),
            "{label}: {:?} does not name {field}",
            status.message()
        );
    }

    // The same bounds on update.
    let status = endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "steady".into(),
            rate_limit: rl(4_294_967_295, 0),
            ..Default::default()
        })
        .await
        .expect_err("update with an absurd rate");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // Publishes: invalid UTF-8, bad JSON, lone surrogates, oversize.
    let mut events = node.events.clone();
    let mut raw = tonic::client::Grpc::new(
        tonic::transport::Channel::from_shared(format!("http://{}", node.node.grpc_addr.unwrap()))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    raw.ready().await.unwrap();
    let status = raw
        .unary::<RawPublish, pb::PublishResponse, _>(
            tonic::Request::new(RawPublish {
                endpoint_id: "steady".into(),
                event_type: "t".into(),
                payload: vec![b'"', 0xff, 0xfe, b'"'],
            }),
            "/herald.v1.EventService/Publish".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect_err("invalid UTF-8");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("UTF-8"), "{status:?}");

    for (label, payload, code) in [
        ("not JSON", "{".to_string(), Code::InvalidArgument),
        (
            "lone surrogate",
            r#"{"a":"\ud800"}"#.to_string(),
            Code::InvalidArgument,
        ),
        (
            "over the payload limit",
            format!("\"{}\"", "x".repeat(300 * 1024)),
            Code::InvalidArgument,
        ),
    ] {
        let status = events
            .publish(support::publish_req("steady", &payload))
            .await
            .expect_err(label);
        assert_eq!(status.code(), code, "{label}: {status:?}");
        assert!(status.message().contains("payload"), "{label}: {status:?}");
    }
    let status = events
        .publish(pb::PublishRequest {
            event_type: "a\u{0}b".into(),
            ..support::publish_req("steady", "{}")
        })
        .await
        .expect_err("control character in the event type");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("event_type"), "{status:?}");

    // Nothing above harmed the endpoint that was already there.
    let resp = node.publish("steady", r#"{"after":"hostile"}"#).await;
    receiver
        .wait_for_ids(&[resp.event_id.as_str()], GUARD)
        .await
        .expect("the steady endpoint still receives");
    let ep = node.node.registry.get("steady").unwrap();
    assert_eq!(ep.rate_limit, None, "the refused update changed nothing");
    node.shutdown().await;
}

/// Many endpoints pointing at one host share the node's ceiling for that
/// host: with 1 request/s, the second of four simultaneous deliveries must
/// wait, and all four still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_at_one_host_share_the_node_ceiling() {
    let mut cfg = support::config();
    cfg.delivery.max_requests_per_host_per_second = 1;
    let (_broker, cfg) = support::broker(cfg);
    let node = TestNode::start(cfg).await;
    let receiver = TestReceiver::start().await.expect("receiver starts");
    let mut ids = Vec::new();
    for i in 0..4 {
        let id = format!("same-host-{i}");
        node.create_endpoint(&id, &receiver.url_for(&format!("/{id}")))
            .await;
        ids.push(node.publish(&id, "{}").await.event_id);
    }
    receiver
        .wait_for_ids(&ids, GUARD)
        .await
        .expect("every endpoint still receives");
    let waits = support::metric_sum(&node.metrics().await, "herald_host_ceiling_waits_total");
    assert!(
        waits.unwrap_or(0.0) >= 1.0,
        "the shared host's ceiling made requests wait: {waits:?}"
    );
    node.shutdown().await;
}

/// A receiver that answers `301` with a 350 KB `Location` header: the text
/// Herald keeps of it is bounded, and every other endpoint on the same
/// partition keeps receiving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_redirect_location_harms_no_neighbour() {
    let mut cfg = support::config();
    cfg.dispatch.attempt_log = true;
    let (_broker, cfg) = support::broker(cfg);
    let node = TestNode::start(cfg).await;
    let huge = format!("http://elsewhere.example/{}", "a".repeat(350 * 1024));
    let receiver = TestReceiver::with_policy(herald_testkit::Policy::new(move |r, _| {
        if r.path == "/hostile" {
            herald_testkit::Reply::status(301).header("location", huge.clone())
        } else {
            herald_testkit::Reply::status(200)
        }
    }))
    .await
    .expect("receiver starts");
    node.create_endpoint("hostile", &receiver.url_for("/hostile"))
        .await;
    let hostile = node.publish("hostile", "{}").await;

    // Neighbours until a few share the hostile endpoint's partition (ids
    // hash to partitions deterministically).
    let mut neighbours = Vec::new();
    for i in 0..64 {
        let id = format!("neighbour-{i}");
        node.create_endpoint(&id, &receiver.url_for(&format!("/{id}")))
            .await;
        let sent = node.publish(&id, "{}").await;
        if sent.partition == hostile.partition {
            neighbours.push(sent.event_id);
        }
        if neighbours.len() == 3 {
            break;
        }
    }
    assert!(
        !neighbours.is_empty(),
        "some neighbour shares the partition"
    );
    receiver
        .wait_for(|all| all.iter().any(|r| r.path == "/hostile"), GUARD)
        .await
        .expect("the hostile endpoint was tried");
    receiver
        .wait_for_ids(&neighbours, GUARD)
        .await
        .expect("the neighbours on that partition still receive");

    // What Herald recorded of the answer is bounded.
    let attempts = node
        .events
        .clone()
        .list_attempts(pb::ListAttemptsRequest {
            endpoint_id: "hostile".into(),
            ..Default::default()
        })
        .await
        .expect("list attempts")
        .into_inner()
        .attempts;
    for a in &attempts {
        assert!(
            a.error.len() <= 4096,
            "error text of {} bytes kept",
            a.error.len()
        );
        assert!(a.response_body.len() <= 4096);
    }
    node.shutdown().await;
}
