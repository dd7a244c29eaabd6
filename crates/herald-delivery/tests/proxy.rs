//! Deliveries through an egress proxy (HTTP CONNECT), against a tiny proxy on port 0:
//! the tunnel names the checked address, TLS goes through it too, refused targets never
//! reach the proxy, the proxy itself is trusted, and proxy failures are connect errors.

mod support;

use base64::Engine as _;
use bytes::Bytes;
use herald_delivery::{AttemptError, Deliverer, DeliveryConfig, DeliveryError, DeliveryRequest};
use herald_signing::{Secret, Signer};
use http::Uri;
use support::{reply, ConnectProxy, Receiver, Tripwire};

fn signer() -> Signer {
    Signer::new(vec![Secret::generate()])
}

fn request<'a>(url: &'a Uri, signer: &'a Signer) -> DeliveryRequest<'a> {
    DeliveryRequest {
        url,
        msg_id: "msg_proxy",
        timestamp: 1_700_000_000,
        body: Bytes::from_static(b"{\"via\":\"proxy\"}"),
        signer,
        headers: &[],
        timeout: None,
    }
}

fn through(proxy: Uri) -> Deliverer {
    Deliverer::new(DeliveryConfig {
        proxy: Some(proxy),
        ..support::config()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn http_delivery_tunnels_to_the_checked_address() {
    let mut rx = Receiver::start(|| reply(200, &[], b"ok")).await;
    let mut proxy = ConnectProxy::start("127.0.0.1:0", None).await;
    let port = rx.addr.port();
    let signer = signer();
    let deliverer = through(proxy.url());
    // By name: the CONNECT carries the resolved, allowed address, so the proxy cannot
    // resolve the name to something else.
    for host in ["localhost", "127.0.0.1", "2130706433"] {
        let url: Uri = format!("http://{host}:{port}/hook?x=1").parse().unwrap();
        let result = deliverer.deliver(&request(&url, &signer)).await;
        assert_eq!(result.status, Some(200), "{url}: {:?}", result.error);
        assert_eq!(result.body_snippet, Bytes::from_static(b"ok"));
        let connect = proxy.connect();
        assert_eq!(connect.target, format!("127.0.0.1:{port}"));
        assert!(connect
            .head
            .contains(&format!("host: 127.0.0.1:{port}\r\n")));
        assert!(!connect.head.contains("proxy-authorization"));
        let got = rx.recorded();
        // Inside the tunnel the request is origin-form with the endpoint's own Host.
        assert_eq!(got.uri, "/hook?x=1");
        assert_eq!(got.headers["host"], format!("{host}:{port}").as_str());
        assert_eq!(got.body, Bytes::from_static(b"{\"via\":\"proxy\"}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_is_tunnelled_too() {
    // The "endpoint" answers a TLS ClientHello with plain HTTP: the handshake fails, after
    // the tunnel carried it there.
    let (addr, _server) = support::plaintext_server().await;
    let mut proxy = ConnectProxy::start("127.0.0.1:0", None).await;
    let url: Uri = format!("https://{addr}/").parse().unwrap();
    let signer = signer();
    let result = through(proxy.url()).deliver(&request(&url, &signer)).await;
    assert!(
        matches!(result.error, Some(AttemptError::Tls(_))),
        "{:?}",
        result.error
    );
    assert_eq!(proxy.connect().target, addr.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_targets_never_reach_the_proxy() {
    let tripwire = Tripwire::bind("127.0.0.1:0");
    let proxy_url: Uri = format!("http://{}", tripwire.addr).parse().unwrap();
    let deliverer = Deliverer::new(DeliveryConfig {
        proxy: Some(proxy_url),
        ..DeliveryConfig::default()
    })
    .unwrap();
    let signer = signer();
    for url in [
        "http://127.0.0.1:8080/",
        "https://localhost/",
        "http://2130706433/",
        "http://169.254.169.254/latest/meta-data/",
        "https://[::ffff:10.0.0.1]/",
    ] {
        let url: Uri = url.parse().unwrap();
        let result = deliverer.deliver(&request(&url, &signer)).await;
        assert!(
            matches!(result.error, Some(AttemptError::Refused(_))),
            "{url}: {:?}",
            result.error
        );
    }
    assert!(
        !tripwire.tripped(),
        "a refused target was sent to the proxy"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_address_itself_is_trusted() {
    // Only the endpoint (127.0.0.1) is allow-listed; the proxy listens on 127.0.0.2,
    // which the policy would refuse as a target.
    let mut rx = Receiver::start(|| reply(204, &[], b"")).await;
    let mut proxy = ConnectProxy::start("127.0.0.2:0", None).await;
    let deliverer = Deliverer::new(DeliveryConfig {
        egress: herald_delivery::EgressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()]),
        proxy: Some(proxy.url()),
        ..DeliveryConfig::default()
    })
    .unwrap();
    let signer = signer();
    let url = rx.url("/");
    let result = deliverer.deliver(&request(&url, &signer)).await;
    assert_eq!(result.status, Some(204), "{:?}", result.error);
    assert_eq!(proxy.connect().target, rx.addr.to_string());
    rx.recorded();

    // The same address as a target is refused.
    let url: Uri = format!("http://{}/", proxy.addr).parse().unwrap();
    let result = deliverer.deliver(&request(&url, &signer)).await;
    assert!(matches!(result.error, Some(AttemptError::Refused(_))));
    assert!(proxy.try_connect().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_in_the_proxy_url_are_sent_as_basic_auth() {
    let mut rx = Receiver::start(|| reply(200, &[], b"")).await;
    let mut proxy = ConnectProxy::start("127.0.0.1:0", None).await;
    let proxy_url: Uri = format!("http://herald:s%40cret@{}", proxy.addr)
        .parse()
        .unwrap();
    let url = rx.url("/");
    let signer = signer();
    let result = through(proxy_url).deliver(&request(&url, &signer)).await;
    assert_eq!(result.status, Some(200), "{:?}", result.error);
    let token = base64::engine::general_purpose::STANDARD.encode("herald:s@cret");
    let head = proxy.connect().head;
    assert!(
        head.contains(&format!(
            "proxy-authorization: basic {}\r\n",
            token.to_ascii_lowercase()
        )),
        "{head}"
    );
    // The endpoint never sees the proxy's credentials.
    assert!(rx.recorded().headers.get("proxy-authorization").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_refusals_are_connect_errors_and_nothing_reaches_the_endpoint() {
    let mut rx = Receiver::start(|| reply(200, &[], b"")).await;
    let url = rx.url("/");
    let signer = signer();
    for (answer, expected) in [
        ("407 Proxy Authentication Required", "answered 407"),
        ("403 Forbidden", "answered 403"),
        ("502 Bad Gateway", "answered 502"),
    ] {
        let mut proxy = ConnectProxy::start("127.0.0.1:0", Some(answer)).await;
        let result = through(proxy.url()).deliver(&request(&url, &signer)).await;
        assert_eq!(result.status, None);
        match result.error {
            Some(AttemptError::Connect(message)) => {
                assert!(message.contains(expected), "{message}");
                if answer.starts_with("407") {
                    assert!(message.contains("credentials"), "{message}");
                }
            }
            other => panic!("expected Connect, got {other:?}"),
        }
        assert_eq!(proxy.connect().target, rx.addr.to_string());
    }
    assert!(rx.try_recorded().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_proxy_is_a_connect_error() {
    let closed = support::closed_port().await;
    let proxy_url: Uri = format!("http://{closed}").parse().unwrap();
    let mut rx = Receiver::start(|| reply(200, &[], b"")).await;
    let url = rx.url("/");
    let signer = signer();
    let result = through(proxy_url).deliver(&request(&url, &signer)).await;
    match result.error {
        Some(AttemptError::Connect(message)) => {
            assert!(
                message.contains("could not connect to the egress proxy"),
                "{message}"
            )
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(rx.try_recorded().is_none());
}

#[test]
fn unusable_proxy_urls_are_rejected_at_build_time() {
    for url in [
        "https://proxy.internal:3128",
        "http://proxy.internal:3128/path",
        "http://user:p%zz@proxy.internal:3128",
    ] {
        let err = Deliverer::new(DeliveryConfig {
            proxy: Some(url.parse().unwrap()),
            ..DeliveryConfig::default()
        })
        .unwrap_err();
        assert!(
            matches!(err, DeliveryError::InvalidProxy { .. }),
            "{url}: {err}"
        );
        assert!(!err.to_string().contains("p%zz"), "password shown: {err}");
    }
}
