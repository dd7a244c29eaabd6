//! One delivery attempt against real HTTP servers on `127.0.0.1:0`: headers and signature,
//! statuses, redirects, `Retry-After`, connection failures, timeouts and the body cap.
//! Every deliverer here allow-lists `127.0.0.0/8` explicitly (see `support::config`).

mod support;

use std::time::Duration;

use bytes::Bytes;
use herald_delivery::{
    AttemptError, AttemptResult, Deliverer, DeliveryConfig, DeliveryError, DeliveryRequest,
    RetryAfter,
};
use herald_signing::{Secret, Signer, Verifier};
use http::{HeaderName, HeaderValue, Response, Uri};
use http_body_util::BodyExt as _;
use support::{reply, Endless, Receiver};

const TS: i64 = 1_700_000_000;
const BODY: &[u8] = br#"{"type":"invoice.paid","id":42}"#;

fn signer() -> Signer {
    Signer::new(vec![
        Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
        Secret::generate(),
    ])
}

fn request<'a>(
    url: &'a Uri,
    signer: &'a Signer,
    headers: &'a [(HeaderName, HeaderValue)],
) -> DeliveryRequest<'a> {
    DeliveryRequest {
        url,
        msg_id: "msg_2Lq0VqKfYq1c",
        timestamp: TS,
        body: Bytes::from_static(BODY),
        signer,
        headers,
        timeout: None,
    }
}

fn deliverer() -> Deliverer {
    Deliverer::new(support::config()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn success_sends_signed_standard_webhook() {
    let mut rx = Receiver::start(|| reply(200, &[], b"ok")).await;
    let url = rx.url("/hooks/a?tenant=1");
    let signer = signer();
    let result = deliverer().deliver(&request(&url, &signer, &[])).await;

    assert_eq!(result.status, Some(200));
    assert_eq!(result.error, None);
    assert!(result.is_success());
    assert_eq!(result.body_snippet, Bytes::from_static(b"ok"));
    assert_eq!(result.location, None);
    assert_eq!(result.retry_after, None);

    let got = rx.recorded();
    assert_eq!(got.method, http::Method::POST);
    assert_eq!(got.body, Bytes::from_static(BODY));
    let h = &got.headers;
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        h["user-agent"],
        format!("Herald/{}", env!("CARGO_PKG_VERSION")).as_str()
    );
    assert_eq!(h["webhook-id"], "msg_2Lq0VqKfYq1c");
    assert_eq!(h["webhook-timestamp"], "1700000000");
    let sig = h["webhook-signature"].to_str().unwrap();
    assert_eq!(sig.split(' ').count(), 2);
    // Each secret alone accepts it, as a receiver mid-rotation would.
    for secret in signer.secrets() {
        Verifier::new(vec![secret.clone()])
            .verify_headers(
                |name| h.get(name).and_then(|v| v.to_str().ok()),
                &got.body,
                TS + 10,
            )
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_error_reports_status_and_snippet() {
    let mut rx = Receiver::start(|| reply(500, &[], b"boom")).await;
    let url = rx.url("/");
    let signer = signer();
    let result = deliverer().deliver(&request(&url, &signer, &[])).await;
    assert_eq!(result.status, Some(500));
    assert_eq!(result.error, None);
    assert!(!result.is_success());
    assert_eq!(result.body_snippet, Bytes::from_static(b"boom"));
    rx.recorded();
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_parsed_from_the_response() {
    let rx = Receiver::start(|| reply(503, &[("retry-after", "120")], b"")).await;
    let url = rx.url("/");
    let signer = signer();
    let result = deliverer().deliver(&request(&url, &signer, &[])).await;
    assert_eq!(result.status, Some(503));
    assert_eq!(result.retry_after, Some(RetryAfter::Seconds(120)));

    let rx = Receiver::start(|| {
        reply(
            429,
            &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
            b"",
        )
    })
    .await;
    let url = rx.url("/");
    let result = deliverer().deliver(&request(&url, &signer, &[])).await;
    assert_eq!(result.status, Some(429));
    assert_eq!(
        result.retry_after,
        Some(RetryAfter::At(
            std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
        ))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_is_reported_not_followed() {
    // The Location points back at the same receiver, so a client that followed it would
    // record a second request before `deliver` returned.
    let mut rx = Receiver::start(|| reply(302, &[("location", "/moved")], b"")).await;
    let url = rx.url("/old");
    let signer = signer();
    let result = deliverer().deliver(&request(&url, &signer, &[])).await;
    assert_eq!(result.status, Some(302));
    assert_eq!(result.error, None);
    assert_eq!(result.location.as_deref(), Some("/moved"));
    rx.recorded();
    assert!(
        rx.try_recorded().is_none(),
        "the redirect must not be followed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_refused_is_a_connect_error() {
    let addr = support::closed_port().await;
    let url: Uri = format!("http://{addr}/").parse().unwrap();
    let signer = signer();
    let result = deliverer().deliver(&request(&url, &signer, &[])).await;
    assert_eq!(result.status, None);
    match result.error {
        Some(AttemptError::Connect(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected Connect, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_server_times_out() {
    let (addr, _server) = support::silent_server().await;
    let url: Uri = format!("http://{addr}/").parse().unwrap();
    let signer = signer();
    let deliverer = Deliverer::new(DeliveryConfig {
        request_timeout: Duration::from_millis(200),
        ..support::config()
    })
    .unwrap();
    let result = deliverer.deliver(&request(&url, &signer, &[])).await;
    assert_eq!(result.status, None);
    assert_eq!(result.error, Some(AttemptError::Timeout));
}

/// One attempt against a server that never answers, with the node's
/// request timeout `node` and the endpoint's own `endpoint` (an outer 30 s
/// bound keeps a regression from hanging the test for an hour).
async fn attempt_against_silence(node: Duration, endpoint: Duration) -> AttemptResult {
    let (addr, _server) = support::silent_server().await;
    let url: Uri = format!("http://{addr}/").parse().unwrap();
    let signer = signer();
    let deliverer = Deliverer::new(DeliveryConfig {
        request_timeout: node,
        ..support::config()
    })
    .unwrap();
    let req = DeliveryRequest {
        timeout: Some(endpoint),
        ..request(&url, &signer, &[])
    };
    tokio::time::timeout(Duration::from_secs(30), deliverer.deliver(&req))
        .await
        .expect("the shorter of the two timeouts ends the attempt")
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoint_timeout_is_shorter_than_the_clients() {
    // The client allows an hour; the endpoint's own 200 ms wins.
    let result =
        attempt_against_silence(Duration::from_secs(3600), Duration::from_millis(200)).await;
    assert_eq!(result.error, Some(AttemptError::Timeout));
}

/// Known limit: an endpoint can shorten its attempt timeout, not lengthen
/// it. The node allows 200 ms, the endpoint asks for an hour, and a silent
/// server times out at the node's 200 ms.
#[tokio::test(flavor = "multi_thread")]
async fn endpoint_timeout_cannot_lengthen_the_clients() {
    let result =
        attempt_against_silence(Duration::from_millis(200), Duration::from_secs(3600)).await;
    assert_eq!(result.status, None);
    assert_eq!(result.error, Some(AttemptError::Timeout));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_failure_is_classified_as_tls() {
    let (addr, _server) = support::plaintext_server().await;
    let url: Uri = format!("https://{addr}/").parse().unwrap();
    let signer = signer();
    let result = deliverer().deliver(&request(&url, &signer, &[])).await;
    assert_eq!(result.status, None);
    assert!(
        matches!(result.error, Some(AttemptError::Tls(_))),
        "{:?}",
        result.error
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn endless_body_is_capped() {
    let rx = Receiver::start(|| {
        Response::builder()
            .status(200)
            .body(Endless.boxed())
            .unwrap()
    })
    .await;
    let url = rx.url("/");
    let signer = signer();
    for cap in [4096, 10_000, 200_000] {
        let deliverer = Deliverer::new(DeliveryConfig {
            max_response_body: cap,
            ..support::config()
        })
        .unwrap();
        let result = deliverer.deliver(&request(&url, &signer, &[])).await;
        assert_eq!(result.status, Some(200));
        assert_eq!(result.error, None);
        assert_eq!(result.body_snippet.len(), cap);
        assert!(result.body_snippet.iter().all(|&b| b == b'x'));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn large_sized_body_is_capped_and_zero_cap_keeps_nothing() {
    static MIB: [u8; 1 << 20] = [b'y'; 1 << 20];
    let rx = Receiver::start(|| reply(200, &[], &MIB)).await;
    let url = rx.url("/");
    let signer = signer();
    let result = deliverer().deliver(&request(&url, &signer, &[])).await;
    assert_eq!(result.status, Some(200));
    assert_eq!(result.body_snippet.len(), 4096);

    let zero = Deliverer::new(DeliveryConfig {
        max_response_body: 0,
        ..support::config()
    })
    .unwrap();
    let result = zero.deliver(&request(&url, &signer, &[])).await;
    assert_eq!(result.status, Some(200));
    assert!(result.body_snippet.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_headers_are_sent_but_cannot_override_webhook_headers() {
    let mut rx = Receiver::start(|| reply(204, &[], b"")).await;
    let url = rx.url("/");
    let signer = signer();
    let custom = [
        (
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_static("k-123"),
        ),
        (
            HeaderName::from_static("webhook-signature"),
            HeaderValue::from_static("v1,Zm9yZ2Vk"),
        ),
        (
            HeaderName::from_static("webhook-id"),
            HeaderValue::from_static("msg_forged"),
        ),
        (
            HeaderName::from_static("content-type"),
            HeaderValue::from_static("text/plain"),
        ),
    ];
    let result = deliverer().deliver(&request(&url, &signer, &custom)).await;
    assert_eq!(result.status, Some(204));

    let got = rx.recorded();
    let h = &got.headers;
    assert_eq!(h["x-api-key"], "k-123");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h.get_all("webhook-id").iter().count(), 1);
    assert_eq!(h["webhook-id"], "msg_2Lq0VqKfYq1c");
    assert_eq!(h.get_all("webhook-signature").iter().count(), 1);
    assert!(!h["webhook-signature"]
        .to_str()
        .unwrap()
        .contains("Zm9yZ2Vk"));
    Verifier::new(signer.secrets().to_vec())
        .verify_headers(
            |name| h.get(name).and_then(|v| v.to_str().ok()),
            &got.body,
            TS,
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_message_id_is_refused_before_sending() {
    let mut rx = Receiver::start(|| reply(200, &[], b"")).await;
    let url = rx.url("/");
    let signer = signer();
    let mut req = request(&url, &signer, &[]);
    req.msg_id = "bad\r\nid";
    let result = deliverer().deliver(&req).await;
    assert_eq!(result.status, None);
    assert!(matches!(
        result.error,
        Some(AttemptError::InvalidRequest(_))
    ));
    assert!(rx.try_recorded().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn clones_share_one_client_and_work_concurrently() {
    let mut rx = Receiver::start(|| reply(200, &[], b"")).await;
    let url = rx.url("/");
    let signer = signer();
    let deliverer = deliverer();
    // Spawned tasks: also proves the attempt future is `Send`.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (deliverer, url, signer) = (deliverer.clone(), url.clone(), signer.clone());
            tokio::spawn(async move { deliverer.deliver(&request(&url, &signer, &[])).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().status, Some(200));
    }
    for _ in 0..4 {
        rx.recorded();
    }
}

#[test]
fn bad_config_is_rejected() {
    let err = Deliverer::new(DeliveryConfig {
        user_agent: "bad\nagent".into(),
        ..support::config()
    })
    .unwrap_err();
    assert!(matches!(err, DeliveryError::InvalidUserAgent { .. }));
    let err = Deliverer::new(DeliveryConfig {
        request_timeout: Duration::ZERO,
        ..support::config()
    })
    .unwrap_err();
    assert!(err.to_string().contains("request_timeout"), "{err}");
}
