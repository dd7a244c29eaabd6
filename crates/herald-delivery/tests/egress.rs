//! The SSRF guard end to end: real deliveries and [`check_url`] against loopback written
//! every way a URL can spell it (literals, names, decimal/octal/hex IPv4, IPv4-mapped
//! IPv6), private and metadata targets, and what an allow-list opens.
//!
//! "Nothing was sent" is proven with a listener nobody accepts on: a connection attempt
//! would sit in its backlog.

mod support;

use bytes::Bytes;
use herald_delivery::{
    check_url, AttemptError, Cidr, Deliverer, DeliveryConfig, DeliveryRequest, EgressPolicy,
    UrlCheckError,
};
use herald_signing::{Secret, Signer};
use http::Uri;
use support::{reply, Receiver, Tripwire};

fn signer() -> Signer {
    Signer::new(vec![Secret::generate()])
}

fn request<'a>(url: &'a Uri, signer: &'a Signer) -> DeliveryRequest<'a> {
    DeliveryRequest {
        url,
        msg_id: "msg_egress",
        timestamp: 1_700_000_000,
        body: Bytes::from_static(b"{}"),
        signer,
        headers: &[],
        timeout: None,
    }
}

fn policy(cidrs: &[&str]) -> EgressPolicy {
    EgressPolicy::new(cidrs.iter().map(|c| c.parse::<Cidr>().unwrap()).collect())
}

/// Hosts that all reach 127.0.0.1 (or the local host), and the address each refusal must
/// name. The numeric oddities are not IP literals to the URL parser or to hyper; the
/// system resolver turns them into 127.0.0.1, which is why the guard sits at resolution.
const LOOPBACK_SPELLINGS: &[(&str, &str)] = &[
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("127.9.8.7", "127.9.8.7 is a loopback address"),
    (
        "localhost",
        "localhost resolves to 127.0.0.1, a loopback address",
    ),
    (
        "LOCALHOST",
        "LOCALHOST resolves to 127.0.0.1, a loopback address",
    ),
    (
        "2130706433",
        "2130706433 resolves to 127.0.0.1, a loopback address",
    ),
    (
        "0x7f000001",
        "0x7f000001 resolves to 127.0.0.1, a loopback address",
    ),
    ("0x7f.1", "0x7f.1 resolves to 127.0.0.1, a loopback address"),
    (
        "017700000001",
        "017700000001 resolves to 127.0.0.1, a loopback address",
    ),
    (
        "0177.0.0.1",
        "0177.0.0.1 resolves to 127.0.0.1, a loopback address",
    ),
    ("127.1", "127.1 resolves to 127.0.0.1, a loopback address"),
    (
        "[::ffff:127.0.0.1]",
        "::ffff:127.0.0.1 is an IPv4-mapped IPv6 address for 127.0.0.1, a loopback address",
    ),
    (
        "[::ffff:7f00:1]",
        "::ffff:127.0.0.1 is an IPv4-mapped IPv6 address for 127.0.0.1, a loopback address",
    ),
    (
        "[::127.0.0.1]",
        "::7f00:1 is an IPv4-compatible IPv6 address for 127.0.0.1, a loopback address",
    ),
    ("[::1]", "::1 is a loopback address"),
    ("0.0.0.0", "0.0.0.0 is an unspecified address"),
    ("0", "0 resolves to 0.0.0.0, an unspecified address"),
    ("[::]", ":: is an unspecified address"),
];

#[tokio::test(flavor = "multi_thread")]
async fn loopback_in_every_spelling_is_refused_and_nothing_is_sent() {
    let tripwire = Tripwire::bind("127.0.0.1:0");
    let port = tripwire.addr.port();
    let signer = signer();
    let deliverer = Deliverer::new(DeliveryConfig::default()).unwrap();
    for scheme in ["http", "https"] {
        for &(host, reason) in LOOPBACK_SPELLINGS {
            let url: Uri = format!("{scheme}://{host}:{port}/hook").parse().unwrap();
            let result = deliverer.deliver(&request(&url, &signer)).await;
            assert_eq!(result.status, None, "{url}");
            match &result.error {
                Some(AttemptError::Refused(message)) => {
                    assert!(message.starts_with(reason), "{url}: {message}");
                    assert!(
                        message.ends_with("; allow it with delivery.allow_cidrs"),
                        "{url}: {message}"
                    );
                    let error = result.error.as_ref().unwrap();
                    assert_eq!(error.kind(), "refused");
                    assert!(error
                        .to_string()
                        .starts_with("the egress policy refuses the endpoint: "));
                }
                // For https, hyper-rustls rejects hosts that cannot be a certificate name
                // (`2130706433`, `0x7f.1`) before connecting: final, and nothing is sent.
                Some(AttemptError::InvalidRequest(message)) if scheme == "https" => {
                    assert!(
                        message.contains("not a valid TLS server name"),
                        "{url}: {message}"
                    )
                }
                other => panic!("{url}: expected Refused, got {other:?}"),
            }
        }
    }
    assert!(!tripwire.tripped(), "a refused target was connected to");
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_listed_loopback_is_reached_in_every_ipv4_spelling() {
    // Proves the odd spellings really lead to 127.0.0.1, so refusing them above is the
    // guard at work, not a parse failure.
    let mut rx = Receiver::start(|| reply(200, &[], b"ok")).await;
    let port = rx.addr.port();
    let signer = signer();
    let deliverer = Deliverer::new(support::config()).unwrap();
    for host in [
        "127.0.0.1",
        "localhost",
        "2130706433",
        "0x7f000001",
        "0x7f.1",
        "017700000001",
        "0177.0.0.1",
        "127.1",
    ] {
        let url: Uri = format!("http://{host}:{port}/hook").parse().unwrap();
        let result = deliverer.deliver(&request(&url, &signer)).await;
        assert_eq!(result.status, Some(200), "{url}: {:?}", result.error);
        assert_eq!(rx.recorded().uri.path(), "/hook");
    }
    // 127.0.0.0/8 does not open other loopback-like addresses.
    for host in ["[::1]", "0.0.0.0", "[::]"] {
        let url: Uri = format!("http://{host}:{port}/").parse().unwrap();
        let result = deliverer.deliver(&request(&url, &signer)).await;
        assert!(
            matches!(result.error, Some(AttemptError::Refused(_))),
            "{url}: {:?}",
            result.error
        );
    }
    assert!(rx.try_recorded().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn private_link_local_and_metadata_targets_are_refused_before_connecting() {
    // Had any of these been dialled, the attempt would end in a connect error or timeout
    // instead of an immediate refusal naming the address.
    let signer = signer();
    let deliverer = Deliverer::new(DeliveryConfig::default()).unwrap();
    for (url, reason) in [
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("https://172.16.5.4:8443/", "172.16.5.4 is a private address"),
        ("http://192.168.1.1/", "192.168.1.1 is a private address"),
        ("http://100.64.0.1/", "100.64.0.1 is a carrier-grade NAT address"),
        ("http://169.254.1.1/", "169.254.1.1 is a link-local address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
        ("http://100.100.100.200/", "100.100.100.200 is a cloud metadata address"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254 is an IPv4-mapped IPv6 address for 169.254.169.254, a cloud metadata address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("http://[fd12::1]/", "fd12::1 is a unique-local address"),
        ("http://[64:ff9b::10.0.0.1]/", "64:ff9b::a00:1 is a NAT64 address (64:ff9b::/96) for 10.0.0.1, a private address"),
        ("http://[2002:c0a8:101::1]/", "2002:c0a8:101::1 is a 6to4 address (2002::/16) for 192.168.1.1, a private address"),
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "2001:0:4136:e378:8000:63bf:3fff:fdd2 is a Teredo address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://255.255.255.255/", "255.255.255.255 is the broadcast address"),
        ("http://198.18.0.1/", "198.18.0.1 is a benchmarking address"),
        ("http://192.0.2.1/", "192.0.2.1 is a documentation address"),
        ("http://0.1.2.3/", "0.1.2.3 is a \"this network\" address"),
        ("http://167772161/", "167772161 resolves to 10.0.0.1, a private address"),
        ("http://0xa9fea9fe/", "0xa9fea9fe resolves to 169.254.169.254, a cloud metadata address"),
    ] {
        let url: Uri = url.parse().unwrap();
        let result = deliverer.deliver(&request(&url, &signer)).await;
        match &result.error {
            Some(AttemptError::Refused(message)) => {
                assert!(message.starts_with(reason), "{url}: {message}")
            }
            other => panic!("{url}: expected Refused, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_stays_refused_under_a_broad_allow_list() {
    let signer = signer();
    let deliverer = Deliverer::new(DeliveryConfig {
        egress: policy(&["169.254.0.0/16", "0.0.0.0/0"]),
        ..DeliveryConfig::default()
    })
    .unwrap();
    let url: Uri = "http://169.254.169.254/latest/meta-data/".parse().unwrap();
    let result = deliverer.deliver(&request(&url, &signer)).await;
    match result.error {
        Some(AttemptError::Refused(message)) => assert!(
            message.contains("only an exact entry for it (169.254.169.254/32)"),
            "{message}"
        ),
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_url_refuses_what_deliveries_would_refuse() {
    let strict = EgressPolicy::default();
    for &(host, reason) in LOOPBACK_SPELLINGS {
        let url: Uri = format!("https://{host}/hook").parse().unwrap();
        match check_url(&strict, &url).await {
            Err(UrlCheckError::Refused(refused)) => {
                assert!(refused.to_string().starts_with(reason), "{url}: {refused}")
            }
            other => panic!("{url}: expected Refused, got {other:?}"),
        }
    }
    for url in [
        "http://10.1.2.3/",
        "http://[fd00:ec2::254]/",
        "http://167772161/",
        "https://[::ffff:192.168.0.1]:8443/x",
    ] {
        let url: Uri = url.parse().unwrap();
        assert!(
            matches!(
                check_url(&strict, &url).await,
                Err(UrlCheckError::Refused(_))
            ),
            "{url}"
        );
    }
    // Public literals need no DNS and pass.
    for url in [
        "https://93.184.216.34/hook",
        "http://[2606:4700:4700::1111]:8080/",
        "https://[::ffff:8.8.8.8]/",
    ] {
        let url: Uri = url.parse().unwrap();
        assert_eq!(check_url(&strict, &url).await, Ok(()), "{url}");
    }

    let loopback = policy(&["127.0.0.0/8"]);
    for url in [
        "http://localhost:8080/",
        "http://2130706433/",
        "http://127.0.0.1/",
    ] {
        let url: Uri = url.parse().unwrap();
        assert_eq!(check_url(&loopback, &url).await, Ok(()), "{url}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_url_names_bad_urls_and_unresolvable_hosts() {
    let strict = EgressPolicy::default();
    for url in ["/relative", "ftp://example.com/", "example.com:80"] {
        let url: Uri = url.parse().unwrap();
        assert!(
            matches!(
                check_url(&strict, &url).await,
                Err(UrlCheckError::Invalid(_))
            ),
            "{url}"
        );
    }
    // `.invalid` never resolves (RFC 2606).
    let url: Uri = "https://hooks.herald.invalid/".parse().unwrap();
    match check_url(&strict, &url).await {
        Err(UrlCheckError::Unresolvable { host, .. }) => assert_eq!(host, "hooks.herald.invalid"),
        other => panic!("expected Unresolvable, got {other:?}"),
    }
}
