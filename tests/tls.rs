//! TLS and mutual TLS on the gRPC API, with certificates made in the test
//! (rcgen): a token over TLS, a client certificate mapped to scopes instead
//! of a token, and refusals for a certificate from another CA, an unmapped
//! certificate, and a plaintext client.

mod support;

use herald_core::config::{ClientCertConfig, GrpcTlsConfig, TokenConfig};
use herald_proto::v1 as pb;
use herald_proto::v1::endpoint_service_client::EndpointServiceClient;
use rcgen::ExtendedKeyUsagePurpose;
use support::certs::{write, Ca};
use support::GUARD;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;

async fn channel(
    addr: std::net::SocketAddr,
    ca: &Ca,
    identity: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.cert.pem()))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

async fn list(ch: Channel, token: Option<&str>) -> Code {
    let mut req = tonic::Request::new(pb::ListEndpointsRequest::default());
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    match EndpointServiceClient::new(ch).list_endpoints(req).await {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_tokens_and_client_certificates() {
    let dir = std::env::temp_dir().join(herald_testkit::fixtures::unique("tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("herald test CA");
    let (server_cert, server_key) = ca.issue(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let ops = ca.issue(&["ops.clients.herald"], ExtendedKeyUsagePurpose::ClientAuth);
    let unmapped = ca.issue(
        &["someone.clients.herald"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let rogue_ca = Ca::new("rogue CA");
    let rogue = rogue_ca.issue(&["ops.clients.herald"], ExtendedKeyUsagePurpose::ClientAuth);

    let (token, hash) = herald_auth::token::generate();
    let mut cfg = support::config();
    cfg.auth.disabled = false;
    cfg.auth.tokens = vec![TokenConfig {
        name: "reader".into(),
        hash: hash.to_string(),
        scopes: vec!["endpoints:read".into()],
        ..Default::default()
    }];
    cfg.auth.clients = vec![ClientCertConfig {
        name: "ops".into(),
        dns_name: Some("ops.clients.herald".into()),
        scopes: vec!["admin".into()],
        ..Default::default()
    }];
    cfg.grpc.tls = Some(GrpcTlsConfig {
        cert_file: write(&dir, "server.pem", &server_cert),
        key_file: write(&dir, "server.key", &server_key),
        client_ca_file: Some(write(&dir, "ca.pem", &ca.cert.pem())),
        require_client_cert: false,
    });
    let (_broker, cfg) = support::broker(cfg);
    let node = support::start_loaded(cfg, herald::node::Roles::ALL).await;
    let addr = node.grpc_addr.unwrap();

    // A token over TLS, no client certificate.
    let ch = channel(addr, &ca, None).await.expect("TLS handshake");
    assert_eq!(list(ch.clone(), Some(&token)).await, Code::Ok);
    assert_eq!(list(ch.clone(), None).await, Code::Unauthenticated);
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
    assert!(health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .is_ok());

    // A mapped client certificate instead of a token: admin may create.
    let ch = channel(addr, &ca, Some(&ops))
        .await
        .expect("mTLS handshake");
    assert_eq!(list(ch.clone(), None).await, Code::Ok);
    let created = EndpointServiceClient::new(ch)
        .create_endpoint(pb::CreateEndpointRequest {
            id: "via-mtls".into(),
            url: "http://127.0.0.1:9/x".into(),
            ..Default::default()
        })
        .await;
    assert!(created.is_ok(), "{created:?}");

    // A certificate from the right CA that no entry maps.
    let ch = channel(addr, &ca, Some(&unmapped))
        .await
        .expect("handshake");
    assert_eq!(list(ch, None).await, Code::Unauthenticated);

    // A certificate from another CA: the handshake (or the first call) fails.
    let rogue_result = match channel(addr, &ca, Some(&rogue)).await {
        Err(_) => Code::Unavailable,
        Ok(ch) => list(ch, None).await,
    };
    assert!(!matches!(rogue_result, Code::Ok), "{rogue_result:?}");

    // A plaintext client gets nothing.
    let plain = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await;
    let plain_result = match plain {
        Err(_) => Code::Unavailable,
        Ok(ch) => list(ch, Some(&token)).await,
    };
    assert_ne!(plain_result, Code::Ok);

    tokio::time::timeout(GUARD, node.shutdown())
        .await
        .unwrap()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
