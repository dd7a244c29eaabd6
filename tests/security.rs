//! Authentication end to end, against a real node on the in-process
//! broker: every RPC refuses a missing or wrong token (`UNAUTHENTICATED`)
//! and a token without its scope (`PERMISSION_DENIED`), identically whether
//! or not the resource exists; health stays open; idempotency keys are
//! scoped per caller; a node without tokens or a master key refuses to
//! start. Secrets at rest: `secrets_at_rest.rs`; TLS: `tls.rs`.

mod support;

use std::time::Duration;

use herald_core::config::TokenConfig;
use herald_proto::v1 as pb;
use herald_proto::v1::cluster_service_client::ClusterServiceClient;
use herald_proto::v1::dead_letter_service_client::DeadLetterServiceClient;
use herald_proto::v1::endpoint_service_client::EndpointServiceClient;
use herald_proto::v1::event_service_client::EventServiceClient;
use support::GUARD;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// Every RPC of the API, each with a request that names `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    Publish,
    PublishBatch,
    ListAttempts,
    CreateEndpoint,
    GetEndpoint,
    ListEndpoints,
    UpdateEndpoint,
    DeleteEndpoint,
    ListDeadLetters,
    ReplayDeadLetters,
    GetStatus,
}

const ALL: [Rpc; 11] = [
    Rpc::Publish,
    Rpc::PublishBatch,
    Rpc::ListAttempts,
    Rpc::CreateEndpoint,
    Rpc::GetEndpoint,
    Rpc::ListEndpoints,
    Rpc::UpdateEndpoint,
    Rpc::DeleteEndpoint,
    Rpc::ListDeadLetters,
    Rpc::ReplayDeadLetters,
    Rpc::GetStatus,
];

impl Rpc {
    /// The scope a token needs for this RPC (docs/security.md).
    fn scope(self) -> &'static str {
        match self {
            Rpc::Publish | Rpc::PublishBatch => "publish",
            Rpc::ListAttempts => "attempts:read",
            Rpc::GetEndpoint | Rpc::ListEndpoints => "endpoints:read",
            Rpc::CreateEndpoint | Rpc::UpdateEndpoint | Rpc::DeleteEndpoint => "endpoints:write",
            Rpc::ListDeadLetters | Rpc::ReplayDeadLetters => "dlq",
            Rpc::GetStatus => "admin",
        }
    }
}

fn with_token<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut req = Request::new(msg);
    req.set_timeout(Duration::from_secs(30));
    if let Some(t) = token {
        let v: MetadataValue<_> = format!("Bearer {t}").parse().expect("ascii token");
        req.metadata_mut().insert("authorization", v);
    }
    req
}

/// Calls `rpc` about endpoint `id`; the status (Ok when the call passed).
async fn call(ch: &Channel, rpc: Rpc, token: Option<&str>, id: &str) -> tonic::Status {
    let publish = pb::PublishRequest {
        endpoint_id: id.into(),
        event_type: "t".into(),
        payload: "{}".into(),
        ..Default::default()
    };
    let r = |x: Result<(), tonic::Status>| x.err().unwrap_or_else(|| tonic::Status::ok(""));
    let events = || EventServiceClient::new(ch.clone());
    let endpoints = || EndpointServiceClient::new(ch.clone());
    let dlq = || DeadLetterServiceClient::new(ch.clone());
    match rpc {
        Rpc::Publish => r(events().publish(with_token(publish, token)).await.map(drop)),
        Rpc::PublishBatch => r(events()
            .publish_batch(with_token(
                pb::PublishBatchRequest {
                    events: vec![publish],
                },
                token,
            ))
            .await
            .map(drop)),
        Rpc::ListAttempts => r(events()
            .list_attempts(with_token(
                pb::ListAttemptsRequest {
                    endpoint_id: id.into(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop)),
        Rpc::CreateEndpoint => r(endpoints()
            .create_endpoint(with_token(
                pb::CreateEndpointRequest {
                    id: format!("{id}-new"),
                    url: "http://127.0.0.1:9/x".into(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop)),
        Rpc::GetEndpoint => r(endpoints()
            .get_endpoint(with_token(pb::GetEndpointRequest { id: id.into() }, token))
            .await
            .map(drop)),
        Rpc::ListEndpoints => r(endpoints()
            .list_endpoints(with_token(pb::ListEndpointsRequest::default(), token))
            .await
            .map(drop)),
        Rpc::UpdateEndpoint => r(endpoints()
            .update_endpoint(with_token(
                pb::UpdateEndpointRequest {
                    id: id.into(),
                    description: Some("d".into()),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop)),
        Rpc::DeleteEndpoint => r(endpoints()
            .delete_endpoint(with_token(
                pb::DeleteEndpointRequest {
                    id: format!("{id}-absent"),
                },
                token,
            ))
            .await
            .map(drop)),
        Rpc::ListDeadLetters => r(dlq()
            .list_dead_letters(with_token(
                pb::ListDeadLettersRequest {
                    endpoint_id: id.into(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop)),
        Rpc::ReplayDeadLetters => r(dlq()
            .replay_dead_letters(with_token(
                pb::ReplayDeadLettersRequest {
                    endpoint_id: id.into(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop)),
        Rpc::GetStatus => r(ClusterServiceClient::new(ch.clone())
            .get_status(with_token(pb::GetStatusRequest::default(), token))
            .await
            .map(drop)),
    }
}

fn token(name: &str, scopes: &[&str]) -> (String, TokenConfig) {
    let (token, hash) = herald_auth::token::generate();
    let cfg = TokenConfig {
        name: name.into(),
        hash: hash.to_string(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    (token, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_needs_a_token_with_its_scope() {
    let mut cfg = support::config();
    let (admin, admin_cfg) = token("ops", &["admin"]);
    let scoped: Vec<(Rpc, String, TokenConfig)> = ALL
        .iter()
        .map(|&rpc| {
            let (t, c) = token(&format!("only-{rpc:?}"), &[rpc.scope()]);
            (rpc, t, c)
        })
        .collect();
    cfg.auth.disabled = false;
    cfg.auth.tokens = std::iter::once(admin_cfg)
        .chain(scoped.iter().map(|(_, _, c)| c.clone()))
        .collect();
    let (_broker, cfg) = support::broker(cfg);
    let node = support::start_loaded(cfg, herald::node::Roles::ALL).await;
    let ch = support::channel(&node).await;

    // An existing endpoint, created with the admin token.
    let created = call(&ch, Rpc::CreateEndpoint, Some(&admin), "ep").await;
    assert_eq!(created.code(), Code::Ok, "{created:?}");

    let (wrong, _) = herald_auth::token::generate();
    for rpc in ALL {
        for (label, t) in [
            ("no token", None),
            ("wrong token", Some(wrong.as_str())),
            ("malformed", Some("not a token")),
        ] {
            let s = call(&ch, rpc, t, "ep").await;
            assert_eq!(
                s.code(),
                Code::Unauthenticated,
                "{rpc:?} with {label}: {s:?}"
            );
        }
        // Every other scope's token is refused, and the refusal is the same
        // whether or not the endpoint exists.
        let others = scoped
            .iter()
            .filter(|(o, _, _)| o.scope() != rpc.scope() && o.scope() != "admin");
        for (other, t, _) in others {
            let exists = call(&ch, rpc, Some(t), "ep").await;
            let absent = call(&ch, rpc, Some(t), "nope").await;
            assert_eq!(
                exists.code(),
                Code::PermissionDenied,
                "{rpc:?} with {other:?}'s token: {exists:?}"
            );
            assert_eq!(
                exists.message(),
                absent.message(),
                "{rpc:?}: a refusal must not reveal existence"
            );
            assert!(
                exists.message().contains(rpc.scope()),
                "{rpc:?}: {exists:?}"
            );
        }
        // Its own scope and admin get past authentication.
        let (_, own, _) = scoped.iter().find(|(r, _, _)| *r == rpc).unwrap();
        for t in [own.as_str(), admin.as_str()] {
            let s = call(&ch, rpc, Some(t), "ep").await;
            assert!(
                !matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied),
                "{rpc:?} with the right scope: {s:?}"
            );
        }
    }

    // Health checks stay open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert!(h.is_ok(), "{h:?}");

    let metrics = herald_testkit::http::get(&format!("http://{}/metrics", node.http_addr))
        .await
        .unwrap()
        .text();
    assert!(
        support::metric_sum_with(
            &metrics,
            "herald_api_auth_refusals_total",
            "code=\"permission_denied\""
        )
        .unwrap_or(0.0)
            > 0.0,
        "{metrics}"
    );
    for (_, t, _) in &scoped {
        assert!(!metrics.contains(t.as_str()), "a token in /metrics");
    }
    drop(ch);
    tokio::time::timeout(GUARD, node.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_scoped_per_caller() {
    let mut cfg = support::config();
    let (admin, admin_cfg) = token("ops", &["admin"]);
    let (billing, billing_cfg) = token("billing", &["publish"]);
    let (crm, crm_cfg) = token("crm", &["publish"]);
    cfg.auth.disabled = false;
    cfg.auth.tokens = vec![admin_cfg, billing_cfg, crm_cfg];
    let (_broker, cfg) = support::broker(cfg);
    let node = support::start_loaded(cfg, herald::node::Roles::ALL).await;
    let ch = support::channel(&node).await;
    assert_eq!(
        call(&ch, Rpc::CreateEndpoint, Some(&admin), "ep")
            .await
            .code(),
        Code::Ok
    );
    let publish = |t: String| {
        let ch = ch.clone();
        async move {
            EventServiceClient::new(ch)
                .publish(with_token(
                    pb::PublishRequest {
                        endpoint_id: "ep-new".into(),
                        event_type: "t".into(),
                        payload: "{}".into(),
                        idempotency_key: "order-42".into(),
                        ..Default::default()
                    },
                    Some(&t),
                ))
                .await
                .expect("publish")
                .into_inner()
        }
    };
    let first = publish(billing.clone()).await;
    let again = publish(billing.clone()).await;
    let other = publish(crm.clone()).await;
    assert_eq!(
        again.event_id, first.event_id,
        "the same caller's retry is the same event"
    );
    assert!(again.duplicate && !first.duplicate);
    assert_ne!(
        other.event_id, first.event_id,
        "another caller's equal key is another event"
    );
    assert!(!other.duplicate);
    drop(ch);
    tokio::time::timeout(GUARD, node.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_node_without_tokens_or_master_key_refuses_to_start() {
    let mut cfg = support::config();
    cfg.kafka.brokers = "127.0.0.1:1".into(); // never reached: it fails before
    cfg.auth.disabled = false;
    let err = herald::node::start(cfg.clone(), herald::node::Roles::ALL)
        .await
        .err()
        .expect("no tokens: refused")
        .to_string();
    assert!(
        err.contains("auth.tokens") && err.contains("herald token create"),
        "{err}"
    );

    cfg.auth.disabled = true;
    cfg.secrets.keys.clear();
    let err = herald::node::start(
        cfg,
        herald::node::Roles {
            ingest: false,
            dispatch: true,
        },
    )
    .await
    .err()
    .expect("no master key: refused")
    .to_string();
    assert!(
        err.contains("secrets.keys") && err.contains("generate-key"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_publish_rate_gets_resource_exhausted() {
    let mut cfg = support::config();
    let (admin, admin_cfg) = token("ops", &["admin"]);
    let (slow, mut slow_cfg) = token("slow", &["publish"]);
    // One event a second, two at once.
    slow_cfg.publish_per_second = 1;
    slow_cfg.publish_burst = 2;
    cfg.auth.disabled = false;
    cfg.auth.tokens = vec![admin_cfg, slow_cfg];
    let (_broker, cfg) = support::broker(cfg);
    let node = support::start_loaded(cfg, herald::node::Roles::ALL).await;
    let ch = support::channel(&node).await;
    assert_eq!(
        call(&ch, Rpc::CreateEndpoint, Some(&admin), "ep")
            .await
            .code(),
        Code::Ok
    );
    let event = || pb::PublishRequest {
        endpoint_id: "ep-new".into(),
        event_type: "t".into(),
        payload: "{}".into(),
        ..Default::default()
    };
    let mut events = EventServiceClient::new(ch.clone());
    // A batch larger than the burst can never pass: the caller must split it.
    let too_big = events
        .publish_batch(with_token(
            pb::PublishBatchRequest {
                events: vec![event(), event(), event()],
            },
            Some(&slow),
        ))
        .await
        .expect_err("3 events over a burst of 2");
    assert_eq!(too_big.code(), Code::InvalidArgument, "{too_big:?}");
    assert!(too_big.message().starts_with("events:"), "{too_big:?}");
    // Spend the burst, then the next call is refused until the budget refills.
    let spent = events
        .publish_batch(with_token(
            pb::PublishBatchRequest {
                events: vec![event(), event()],
            },
            Some(&slow),
        ))
        .await
        .expect("the burst passes")
        .into_inner();
    assert_eq!(spent.accepted, 2);
    // Single publishes then run into the limit: the budget refills by one a
    // second, and a thousand calls cannot all take a second each.
    let mut refused = None;
    for _ in 0..1000 {
        if let Err(status) = events.publish(with_token(event(), Some(&slow))).await {
            refused = Some(status);
            break;
        }
    }
    let refused = refused.expect("the rate limit refuses a call");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("\"slow\"") && refused.message().contains("retry in"),
        "{refused:?}"
    );
    // Another caller's budget is its own.
    assert!(events
        .publish(with_token(event(), Some(&admin)))
        .await
        .is_ok());
    drop((ch, events));
    tokio::time::timeout(GUARD, node.shutdown())
        .await
        .unwrap()
        .unwrap();
}
