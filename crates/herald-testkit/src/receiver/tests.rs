//! Unit tests of the recording test receiver.

use super::*;
use crate::http;
use herald_signing::Signer;

const GUARD: Duration = Duration::from_secs(30);

#[tokio::test]
async fn records_method_path_query_headers_and_body() {
    let rx = TestReceiver::start().await.unwrap();
    assert_eq!(rx.url_for("ep-1"), rx.url_for("/ep-1"));
    let url = format!("{}?x=1", rx.url_for("ep-1"));
    let a = http::post(
        &url,
        &[
            ("Webhook-Id", "msg_1"),
            ("X-Custom", "A"),
            ("x-custom", "B"),
        ],
        "{\"a\":1}",
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);

    let all = rx.requests();
    assert_eq!(all.len(), 1);
    let r = &all[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/ep-1");
    assert_eq!(r.query.as_deref(), Some("x=1"));
    assert_eq!(r.header("webhook-id"), Some("msg_1"));
    assert_eq!(r.header("X-CUSTOM"), Some("A, B"));
    assert!(r
        .headers
        .keys()
        .all(|k| k.chars().all(|c| !c.is_ascii_uppercase())));
    assert_eq!(r.webhook_id(), "msg_1");
    assert_eq!(&r.body[..], b"{\"a\":1}");
    assert_eq!((r.path_seq, r.id_attempt), (1, 1));
    assert_eq!(rx.requests_for("ep-1").len(), 1);
    assert!(rx.requests_for("/other").is_empty());
}

#[tokio::test]
async fn fail_first_counts_attempts_per_webhook_id_and_path() {
    let rx = TestReceiver::with_policy(Policy::fail_first(2, 503))
        .await
        .unwrap();
    let post = |path: &'static str, id: &'static str| {
        let url = rx.url_for(path);
        async move {
            http::post(&url, &[("webhook-id", id)], "{}")
                .await
                .unwrap()
                .status
        }
    };
    assert_eq!(post("a", "m1").await, 503);
    assert_eq!(post("a", "m1").await, 503);
    assert_eq!(post("a", "m1").await, 200);
    assert_eq!(post("a", "m2").await, 503);
    // Another path counts on its own.
    assert_eq!(post("b", "m1").await, 503);

    let a = rx.requests_for("a");
    let seqs: Vec<_> = a.iter().map(|r| (r.path_seq, r.id_attempt)).collect();
    assert_eq!(seqs, vec![(1, 1), (2, 2), (3, 3), (4, 1)]);
    assert_eq!(rx.requests_for("b")[0].path_seq, 1);
}

#[tokio::test]
async fn replies_carry_status_headers_and_body() {
    let policy = Policy::new(|_, n| {
        if n == 1 {
            Reply::status(429)
                .header("retry-after", "3")
                .body("slow down")
        } else {
            Reply::status(204)
        }
    });
    let rx = TestReceiver::with_policy(policy).await.unwrap();
    let first = http::post(&rx.url_for("x"), &[], "{}").await.unwrap();
    assert_eq!(first.status, 429);
    assert_eq!(
        first.headers.get("retry-after").map(String::as_str),
        Some("3")
    );
    assert_eq!(first.text(), "slow down");
    assert_eq!(
        http::post(&rx.url_for("x"), &[], "{}")
            .await
            .unwrap()
            .status,
        204
    );
}

#[tokio::test]
async fn by_path_and_set_policy_choose_answers() {
    let rx = TestReceiver::with_policy(Policy::by_path(
        [("gone".to_string(), Policy::always(410))],
        Policy::always(202),
    ))
    .await
    .unwrap();
    assert_eq!(
        http::post(&rx.url_for("gone"), &[], "{}")
            .await
            .unwrap()
            .status,
        410
    );
    assert_eq!(
        http::post(&rx.url_for("ok"), &[], "{}")
            .await
            .unwrap()
            .status,
        202
    );
    rx.set_policy(Policy::always(500));
    assert_eq!(
        http::post(&rx.url_for("ok"), &[], "{}")
            .await
            .unwrap()
            .status,
        500
    );
}

#[tokio::test]
async fn wait_for_wakes_on_requests_sent_later() {
    let rx = Arc::new(TestReceiver::start().await.unwrap());
    let waiter = {
        let rx = rx.clone();
        tokio::spawn(async move { rx.wait_for_ids(&["m0", "m1", "m2"], GUARD).await })
    };
    for i in 0..3 {
        let id = format!("m{i}");
        http::post(&rx.url_for("p"), &[("webhook-id", &id)], "{}")
            .await
            .unwrap();
    }
    waiter.await.unwrap().unwrap();
    rx.wait_for_count(3, GUARD).await.unwrap();
    rx.wait_for(|all| all.iter().all(|r| r.path == "/p"), GUARD)
        .await
        .unwrap();
}

#[tokio::test]
async fn wait_for_reports_a_timeout() {
    // Nothing is ever sent, so the (short) guard is what ends the wait.
    let rx = TestReceiver::start().await.unwrap();
    let err = rx
        .wait_for_count(1, Duration::from_millis(20))
        .await
        .unwrap_err();
    assert_eq!(err.recorded, 0);
    assert!(err.to_string().contains("0 requests"), "{err}");
}

#[tokio::test]
async fn verify_checks_the_standard_webhooks_signature() {
    let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let (id, ts, body) = (
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330_i64,
        "{\"test\": 2432232314}",
    );
    let sig = Signer::new(vec![secret.clone()]).signature_header(id, ts, body.as_bytes());
    assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    let rx = TestReceiver::start().await.unwrap();
    let ts_text = ts.to_string();
    let headers = [
        ("webhook-id", id),
        ("webhook-timestamp", ts_text.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    http::post(&rx.url_for("s"), &headers, body).await.unwrap();
    http::post(&rx.url_for("s"), &headers, "{\"test\": 1}")
        .await
        .unwrap();
    let got = rx.requests();
    got[0].verify(std::slice::from_ref(&secret), ts).unwrap();
    assert_eq!(
        got[1].verify(std::slice::from_ref(&secret), ts),
        Err(VerifyError::NoMatchingSignature)
    );
    assert!(got[0].verify(&[Secret::generate()], ts).is_err());
}

#[tokio::test]
async fn first_arrivals_keeps_the_first_of_each_id() {
    let rx = TestReceiver::start().await.unwrap();
    for id in ["a", "b", "a", "c", "b"] {
        http::post(&rx.url_for("p"), &[("webhook-id", id)], "{}")
            .await
            .unwrap();
    }
    let all = rx.requests();
    let firsts: Vec<_> = first_arrivals(&all)
        .iter()
        .map(|r| (r.webhook_id(), r.path_seq))
        .collect();
    assert_eq!(firsts, vec![("a", 1), ("b", 2), ("c", 4)]);
}
