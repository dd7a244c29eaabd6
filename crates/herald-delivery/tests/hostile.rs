//! Hostile receivers: one that never answers, one that trickles its body, one that sends a
//! 1 GiB body, and redirects. Each attempt ends in a recorded failure (or a capped
//! success) within the configured bounds, and never reads more than the body cap.
//!
//! Timeouts are configured small as behaviour; nothing waits on the clock to synchronise.

mod support;

use std::time::Duration;

use bytes::Bytes;
use herald_delivery::{AttemptError, Deliverer, DeliveryConfig, DeliveryRequest};
use herald_signing::{Secret, Signer};
use http::Uri;
use support::{reply, Receiver};

fn signer() -> Signer {
    Signer::new(vec![Secret::generate()])
}

fn request<'a>(url: &'a Uri, signer: &'a Signer) -> DeliveryRequest<'a> {
    DeliveryRequest {
        url,
        msg_id: "msg_hostile",
        timestamp: 1_700_000_000,
        body: Bytes::from_static(b"{}"),
        signer,
        headers: &[],
        timeout: None,
    }
}

fn deliverer(cfg: DeliveryConfig) -> Deliverer {
    Deliverer::new(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn receiver_that_never_sends_headers_times_out() {
    let (addr, _server) = support::silent_server().await;
    let url: Uri = format!("http://{addr}/").parse().unwrap();
    let signer = signer();
    let result = deliverer(DeliveryConfig {
        request_timeout: Duration::from_millis(300),
        ..support::config()
    })
    .deliver(&request(&url, &signer))
    .await;
    assert_eq!(result.status, None);
    assert_eq!(result.error, Some(AttemptError::Timeout));
    assert!(result.body_snippet.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn trickling_body_is_ended_by_the_total_timeout() {
    // One byte every 20 ms: the 4 KiB cap would take over a minute to fill, so only the
    // total timeout can end this attempt.
    let (addr, closed) = support::trickle_server(Duration::from_millis(20)).await;
    let url: Uri = format!("http://{addr}/").parse().unwrap();
    let signer = signer();
    let result = deliverer(DeliveryConfig {
        request_timeout: Duration::from_millis(300),
        ..support::config()
    })
    .deliver(&request(&url, &signer))
    .await;
    // The receiver's answer stands, and the attempt is marked as timed out.
    assert_eq!(result.status, Some(200));
    assert_eq!(result.error, Some(AttemptError::Timeout));
    // What had arrived is kept, within the cap.
    assert!(result.body_snippet.len() <= 4096);
    assert!(result.body_snippet.iter().all(|&b| b == b'x'));
    // The connection was dropped: the trickler's writes start failing.
    let streamed = closed.await.unwrap();
    assert!(!streamed.completed);
}

#[tokio::test(flavor = "multi_thread")]
async fn trickling_body_is_ended_by_the_cap() {
    let (addr, closed) = support::trickle_server(Duration::from_millis(5)).await;
    let url: Uri = format!("http://{addr}/").parse().unwrap();
    let signer = signer();
    // A long timeout that is not meant to fire: the cap ends the read.
    let result = deliverer(DeliveryConfig {
        request_timeout: Duration::from_secs(60),
        max_response_body: 8,
        ..support::config()
    })
    .deliver(&request(&url, &signer))
    .await;
    assert_eq!(result.status, Some(200));
    assert_eq!(result.error, None);
    assert_eq!(result.body_snippet, Bytes::from_static(b"xxxxxxxx"));
    closed.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn gigabyte_body_is_capped_and_never_read_in_full() {
    const GIB: u64 = 1 << 30;
    let (addr, report) = support::huge_body_server(GIB).await;
    let url: Uri = format!("http://{addr}/").parse().unwrap();
    let signer = signer();
    let result = deliverer(support::config())
        .deliver(&request(&url, &signer))
        .await;
    assert_eq!(result.status, Some(200));
    assert_eq!(result.error, None);
    assert_eq!(result.body_snippet.len(), 4096);
    assert!(result.body_snippet.iter().all(|&b| b == b'z'));
    // The client hung up after the cap: the server could not push the whole gigabyte
    // (only what socket buffers absorbed), so nothing near 1 GiB was read or held.
    let streamed = report.await.unwrap();
    assert!(!streamed.completed, "{streamed:?}");
    assert!(streamed.body_bytes < GIB, "{streamed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_recorded_and_never_followed() {
    let signer = signer();
    let deliverer = deliverer(support::config());
    for status in [301, 302, 303, 307, 308] {
        // An absolute Location at the metadata service, and a relative one back at the
        // receiver: neither is followed.
        for location in ["http://169.254.169.254/latest/meta-data/", "/again"] {
            let mut rx =
                Receiver::start(move || reply(status, &[("location", location)], b"moved")).await;
            let url = rx.url("/hook");
            let result = deliverer.deliver(&request(&url, &signer)).await;
            assert_eq!(result.status, Some(status));
            assert_eq!(result.error, None);
            assert!(!result.is_success());
            assert_eq!(result.location.as_deref(), Some(location));
            assert_eq!(result.body_snippet, Bytes::from_static(b"moved"));
            assert_eq!(rx.recorded().uri.path(), "/hook");
            assert!(
                rx.try_recorded().is_none(),
                "{status} {location} was followed"
            );
        }
    }
}
