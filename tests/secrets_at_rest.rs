//! Endpoint secrets at rest, read straight from the registry topic: no
//! secret reaches it in plaintext, a node with the master key reads them
//! back, a node without it skips the record rather than sign with nothing,
//! and a master-key rotation re-seals every endpoint under the new key.

mod support;

use herald_proto::v1 as pb;
use rdkafka::Message as _;
use support::TestNode;

/// Every record value of `topic`, read straight from the broker.
async fn topic_values(kafka: &herald_core::config::KafkaConfig, topic: &str) -> Vec<Vec<u8>> {
    let (kafka, topic) = (kafka.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        herald_kafka::scan::scan_topic(
            &kafka,
            &herald_testkit::fixtures::unique("scan"),
            &topic,
            0,
            |m| {
                out.push(m.payload().unwrap_or_default().to_vec());
            },
        )
        .expect("scan the topic");
        out
    })
    .await
    .unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_topic_holds_no_plaintext_secret() {
    let (_broker, cfg) = support::broker(support::config());
    let node = TestNode::start(cfg.clone()).await;
    let first = "whsec_c2VjcmV0LW51bWJlci1vbmUtMTIzNDU2Nzg5MA==";
    let second = "whsec_c2Vjb25kLXNlY3JldC10d28tMTIzNDU2Nzg5MA==";
    let mut endpoints = node.endpoints.clone();
    let created = endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            id: "sealed".into(),
            url: "http://127.0.0.1:9/hook".into(),
            secret: first.into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        created.secret, first,
        "the secret is returned once, to its creator"
    );
    endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "sealed".into(),
            rotate_secret: Some(second.into()),
            ..Default::default()
        })
        .await
        .expect("rotate");

    let values = topic_values(&cfg.kafka, &cfg.kafka.endpoints_topic).await;
    assert!(values.len() >= 2, "both writes are in the topic");
    for v in &values {
        for needle in [
            "whsec_",
            "c2VjcmV0LW51bWJlci1vbmUtMTIzNDU2Nzg5MA",
            "c2Vjb25kLXNlY3JldC10d28tMTIzNDU2Nzg5MA",
        ] {
            assert!(!contains(v, needle), "{needle} in a registry record");
        }
        // Nor the raw key bytes.
        assert!(!contains(v, "secret-number-one") && !contains(v, "second-secret-two"));
    }

    // A second node with the same master key reads the secrets back.
    let mut same = cfg.clone();
    same.node.id = herald_testkit::fixtures::unique("same-key");
    let reader = TestNode::start_with(
        same,
        herald::node::Roles {
            ingest: true,
            dispatch: false,
        },
    )
    .await;
    let ep = reader
        .node
        .registry
        .get("sealed")
        .expect("the endpoint is readable with the key");
    assert_eq!(ep.secrets, vec![second.to_string(), first.to_string()]);
    assert!(
        ep.previous_secret_expires_at_ms > 0,
        "the previous secret has a grace period"
    );

    // A node with another key skips the record instead of signing with nothing.
    let dir = std::env::temp_dir().join(herald_testkit::fixtures::unique("other-key"));
    std::fs::create_dir_all(&dir).unwrap();
    let other_key = dir.join("other.key");
    std::fs::write(&other_key, herald_registry::keys::generate_key()).unwrap();
    let mut other = cfg.clone();
    other.node.id = herald_testkit::fixtures::unique("other-key");
    other.secrets.keys = vec![herald_core::config::MasterKeyConfig {
        id: "test".into(),
        file: Some(other_key),
        env: None,
    }];
    let stranger = TestNode::start_with(
        other,
        herald::node::Roles {
            ingest: true,
            dispatch: false,
        },
    )
    .await;
    assert!(
        stranger.node.registry.get("sealed").is_none(),
        "no key, no endpoint"
    );
    let skipped = support::metric_sum(
        &stranger.metrics().await,
        "herald_registry_records_skipped_total",
    );
    assert!(skipped.unwrap_or(0.0) >= 2.0, "{skipped:?}");

    stranger.shutdown().await;
    reader.shutdown().await;
    node.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotation_reseals_every_endpoint() {
    let (_broker, cfg) = support::broker(support::config());
    let receiver = herald_testkit::TestReceiver::start().await.unwrap();
    // Dispatches with the old key only, until step 3 replaces it.
    let old = TestNode::start(cfg.clone()).await;
    let mut secrets = Vec::new();
    let mut sent = Vec::new();
    for i in 0..3 {
        let id = format!("rot-{i}");
        let (_, secret) = old
            .create_endpoint(&id, &receiver.url_for(&format!("/{id}")))
            .await;
        secrets.push(secret);
        sent.push(old.publish(&id, r#"{"step":0}"#).await.event_id);
    }
    receiver
        .wait_for_ids(&sent, support::GUARD)
        .await
        .expect("delivered before the rotation");

    // Step 1: a node with the old and the new key, sealing with the new one.
    let dir = std::env::temp_dir().join(herald_testkit::fixtures::unique("rotate"));
    std::fs::create_dir_all(&dir).unwrap();
    let new_key = dir.join("k2.key");
    std::fs::write(&new_key, herald_registry::keys::generate_key()).unwrap();
    let key = |id: &str, file: std::path::PathBuf| herald_core::config::MasterKeyConfig {
        id: id.into(),
        file: Some(file),
        env: None,
    };
    let mut both = cfg.clone();
    both.node.id = herald_testkit::fixtures::unique("both-keys");
    both.secrets.keys = vec![
        key("test", herald_testkit::fixtures::master_key_file()),
        key("k2", new_key.clone()),
    ];
    both.secrets.active_key = "k2".into();
    let ingest_only = herald::node::Roles {
        ingest: true,
        dispatch: false,
    };
    let rotating = TestNode::start_with(both, ingest_only).await;

    // Step 2: re-seal; a second run finds nothing left to do. Events keep
    // flowing meanwhile.
    let mut api = rotating.endpoints.clone();
    let first = api
        .reseal_secrets(pb::ResealSecretsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            first.active_key_id.as_str(),
            first.resealed,
            first.already_current
        ),
        ("k2", 3, 0)
    );
    let again = api
        .reseal_secrets(pb::ResealSecretsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.resealed, again.already_current), (0, 3));
    for i in 0..3 {
        sent.push(
            rotating
                .publish(&format!("rot-{i}"), r#"{"step":2}"#)
                .await
                .event_id,
        );
    }
    receiver
        .wait_for_ids(&sent, support::GUARD)
        .await
        .expect("delivered during the rotation");

    // Step 3: the old key is gone; a node with only the new key reads
    // every secret and takes over the deliveries.
    old.shutdown().await;
    let mut only_new = cfg.clone();
    only_new.node.id = herald_testkit::fixtures::unique("new-key");
    only_new.secrets.keys = vec![key("k2", new_key)];
    let fresh = TestNode::start(only_new).await;
    for (i, secret) in secrets.iter().enumerate() {
        let ep = fresh
            .node
            .registry
            .get(&format!("rot-{i}"))
            .expect("readable with the new key");
        assert_eq!(&ep.secrets[0], secret);
        assert_eq!(ep.sealed_key_id, "k2");
        sent.push(
            fresh
                .publish(&format!("rot-{i}"), r#"{"step":3}"#)
                .await
                .event_id,
        );
    }
    receiver
        .wait_for_ids(&sent, support::GUARD)
        .await
        .expect("no event lost across the rotation");

    // Every delivery is signed with its endpoint's (unchanged) secret.
    for r in receiver.requests() {
        let i: usize = r.path.trim_start_matches("/rot-").parse().unwrap();
        let verifier = herald_signing::Verifier::new(vec![herald_signing::Secret::parse(
            &secrets[i],
        )
        .unwrap()]);
        let now = herald_testkit::fixtures::now_unix();
        verifier
            .verify(
                r.webhook_id(),
                r.header("webhook-timestamp").unwrap_or(""),
                r.header("webhook-signature").unwrap_or(""),
                &r.body,
                now,
            )
            .unwrap_or_else(|e| panic!("{} does not verify: {e}", r.path));
    }
    fresh.shutdown().await;
    rotating.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_headers_are_sealed_write_only_and_sent() {
    let (_broker, cfg) = support::broker(support::config());
    let node = TestNode::start(cfg.clone()).await;
    let receiver = herald_testkit::TestReceiver::start().await.unwrap();
    let mut api = node.endpoints.clone();
    let created = api
        .create_endpoint(pb::CreateEndpointRequest {
            id: "with-auth".into(),
            url: receiver.url_for("/hook"),
            headers: [("X-Tenant".to_string(), "acme-tenant".to_string())].into(),
            sensitive_headers: [(
                "Authorization".to_string(),
                "Bearer top-secret-value".to_string(),
            )]
            .into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
        .endpoint
        .unwrap();
    assert_eq!(
        created.sensitive_header_names,
        vec!["Authorization".to_string()]
    );
    assert!(!created.headers.contains_key("Authorization"), "write-only");
    assert_eq!(created.headers["X-Tenant"], "acme-tenant");

    // A header cannot be both.
    let both = api
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "with-auth".into(),
            headers: Some(pb::HeaderMap {
                headers: [("authorization".to_string(), "x".to_string())].into(),
            }),
            ..Default::default()
        })
        .await
        .expect_err("a plain header named like a sensitive one");
    assert_eq!(both.code(), tonic::Code::InvalidArgument);
    assert!(
        both.message().contains("sensitive_headers[Authorization]"),
        "{both:?}"
    );

    // Pointing the endpoint at another host would send the write-only value
    // there: refused unless the sensitive headers are sent again.
    let moved = api
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "with-auth".into(),
            url: Some("http://127.0.0.1:1/elsewhere".into()),
            ..Default::default()
        })
        .await
        .expect_err("a new host without the sensitive headers");
    assert_eq!(moved.code(), tonic::Code::InvalidArgument);
    assert!(
        moved.message().starts_with("sensitive_headers:"),
        "{moved:?}"
    );

    // Replacing the plain headers keeps the sensitive ones.
    let updated = api
        .update_endpoint(pb::UpdateEndpointRequest {
            id: "with-auth".into(),
            headers: Some(pb::HeaderMap {
                headers: [("X-Tenant".to_string(), "globex-tenant".to_string())].into(),
            }),
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(
        updated.sensitive_header_names,
        vec!["Authorization".to_string()]
    );
    let got = api
        .get_endpoint(pb::GetEndpointRequest {
            id: "with-auth".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!format!("{got:?}").contains("top-secret-value"));

    // The topic holds the plain value but never the sensitive one.
    let values = topic_values(&cfg.kafka, &cfg.kafka.endpoints_topic).await;
    assert!(values.iter().any(|v| contains(v, "globex-tenant")));
    assert!(values.iter().all(|v| !contains(v, "top-secret-value")));

    // Deliveries carry it.
    let sent = node.publish("with-auth", r#"{"n":1}"#).await;
    receiver
        .wait_for_ids(&[sent.event_id.as_str()], support::GUARD)
        .await
        .expect("delivered");
    let req = &receiver.requests()[0];
    assert_eq!(req.header("authorization"), Some("Bearer top-secret-value"));
    assert_eq!(req.header("x-tenant"), Some("globex-tenant"));
    node.shutdown().await;
}

/// Records forged by anyone who can write the registry topic: an id that
/// is not its key, garbage, a secret sealed under a key no node has. Every
/// node skips them the same way (counted), applies the records after them,
/// and never signs with a missing secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_registry_records_are_skipped_the_same_way_everywhere() {
    use prost::Message as _;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let (_broker, cfg) = support::broker(support::config());
    let first = TestNode::start_with(
        cfg.clone(),
        herald::node::Roles {
            ingest: true,
            dispatch: false,
        },
    )
    .await;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .create()
        .expect("producer");
    let plain = |id: &str| pb::EndpointRecord {
        id: id.into(),
        url: "http://127.0.0.1:9/x".into(),
        secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
        ..Default::default()
    };
    let stranger = herald_registry::KeyRing::ephemeral();
    let foreign = {
        let ep = herald_core::Endpoint::from_record(plain("foreign")).unwrap();
        stranger.seal_endpoint(&ep).encode_to_vec()
    };
    let forged: Vec<(&str, Vec<u8>)> = vec![
        ("victim", plain("intruder").encode_to_vec()),
        ("garbage", b"\xff\x00 not a record".to_vec()),
        ("foreign", foreign),
    ];
    for (key, value) in &forged {
        producer
            .send(
                FutureRecord::to(&cfg.kafka.endpoints_topic)
                    .key(*key)
                    .payload(value),
                std::time::Duration::from_secs(10),
            )
            .await
            .expect("forged record written");
    }
    // A real write after them is applied: nothing before it was fatal.
    first.create_endpoint("after", "http://127.0.0.1:9/y").await;

    // A node that reads the topic from the start sees exactly the same.
    let mut again = cfg.clone();
    again.node.id = herald_testkit::fixtures::unique("rereads");
    let second = TestNode::start_with(
        again,
        herald::node::Roles {
            ingest: true,
            dispatch: false,
        },
    )
    .await;
    for node in [&first, &second] {
        let reg = &node.node.registry;
        assert!(reg.get("after").is_some());
        for id in ["victim", "intruder", "garbage", "foreign"] {
            assert!(reg.get(id).is_none(), "{id} must not be an endpoint");
        }
        let skipped = support::metric_sum(
            &node.metrics().await,
            "herald_registry_records_skipped_total",
        );
        assert!(skipped.unwrap_or(0.0) >= 3.0, "{skipped:?}");
    }
    second.shutdown().await;
    first.shutdown().await;
}
