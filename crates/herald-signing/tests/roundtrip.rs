//! End-to-end behaviour of signing and verifying through the public API: the known-answer
//! vector, secret rotation, the timestamp window, tampering, and property tests.

use std::time::Duration;

use herald_signing::{sign, Secret, Signer, Verifier, VerifyError};
use proptest::prelude::*;

const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const VECTOR_TS: i64 = 1614265330;
const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
const VECTOR_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn vector_secret() -> Secret {
    Secret::parse(VECTOR_SECRET).unwrap()
}

#[test]
fn known_answer_vector_signs_and_verifies() {
    let secret = vector_secret();
    assert_eq!(sign(&secret, VECTOR_ID, VECTOR_TS, VECTOR_BODY), VECTOR_SIG);
    let signer = Signer::new(vec![secret.clone()]);
    assert_eq!(
        signer.signature_header(VECTOR_ID, VECTOR_TS, VECTOR_BODY),
        VECTOR_SIG
    );
    Verifier::new(vec![secret])
        .verify(
            VECTOR_ID,
            &VECTOR_TS.to_string(),
            VECTOR_SIG,
            VECTOR_BODY,
            VECTOR_TS,
        )
        .unwrap();
}

#[test]
fn rotation_header_is_accepted_by_old_or_new_secret_alone() {
    let old = Secret::generate();
    let new = Secret::generate();
    let header = Signer::new(vec![new.clone(), old.clone()]).signature_header("msg_1", 1000, b"hi");
    assert_eq!(header.split(' ').count(), 2);
    assert!(header.split(' ').all(|s| s.starts_with("v1,")));
    for only in [old, new] {
        Verifier::new(vec![only])
            .verify("msg_1", "1000", &header, b"hi", 1000)
            .unwrap();
    }
    let stranger = Verifier::new(vec![Secret::generate()]);
    assert_eq!(
        stranger.verify("msg_1", "1000", &header, b"hi", 1000),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn verifier_with_several_secrets_accepts_a_single_signature() {
    let old = Secret::generate();
    let new = Secret::generate();
    let header = sign(&old, "m", 5, b"x");
    Verifier::new(vec![new, old])
        .verify("m", "5", &header, b"x", 5)
        .unwrap();
}

#[test]
fn unknown_versions_and_junk_entries_are_ignored() {
    let secret = vector_secret();
    let header = format!("v2,AAAA v1,bm90LWEtbWFj {VECTOR_SIG} v1a,zzz");
    Verifier::new(vec![secret.clone()])
        .verify(VECTOR_ID, "1614265330", &header, VECTOR_BODY, VECTOR_TS)
        .unwrap();
    assert_eq!(
        Verifier::new(vec![secret]).verify(
            VECTOR_ID,
            "1614265330",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            VECTOR_BODY,
            VECTOR_TS
        ),
        Err(VerifyError::MissingSignature)
    );
}

#[test]
fn tolerance_window_is_inclusive_and_symmetric() {
    let secret = vector_secret();
    let v = Verifier::new(vec![secret]);
    let verify_at = |now: i64| v.verify(VECTOR_ID, "1614265330", VECTOR_SIG, VECTOR_BODY, now);
    verify_at(VECTOR_TS + 300).unwrap();
    verify_at(VECTOR_TS - 300).unwrap();
    assert_eq!(
        verify_at(VECTOR_TS + 301),
        Err(VerifyError::TimestampTooOld {
            age_secs: 301,
            tolerance_secs: 300
        })
    );
    assert_eq!(
        verify_at(VECTOR_TS - 301),
        Err(VerifyError::TimestampInFuture {
            ahead_secs: 301,
            tolerance_secs: 300
        })
    );

    let tight = Verifier::new(vec![vector_secret()]).with_tolerance(Duration::from_secs(10));
    assert!(matches!(
        tight.verify(
            VECTOR_ID,
            "1614265330",
            VECTOR_SIG,
            VECTOR_BODY,
            VECTOR_TS + 11
        ),
        Err(VerifyError::TimestampTooOld { .. })
    ));
    tight
        .verify(
            VECTOR_ID,
            "1614265330",
            VECTOR_SIG,
            VECTOR_BODY,
            VECTOR_TS + 10,
        )
        .unwrap();
    // Extreme values never overflow.
    assert!(matches!(
        v.verify(
            VECTOR_ID,
            &i64::MIN.to_string(),
            VECTOR_SIG,
            VECTOR_BODY,
            i64::MAX
        ),
        Err(VerifyError::TimestampTooOld { .. })
    ));
}

#[test]
fn tampering_is_rejected() {
    let v = Verifier::new(vec![vector_secret()]);
    let tampered_body = br#"{"test": 2432232315}"#;
    assert_eq!(
        v.verify(
            VECTOR_ID,
            "1614265330",
            VECTOR_SIG,
            tampered_body,
            VECTOR_TS
        ),
        Err(VerifyError::NoMatchingSignature)
    );
    assert_eq!(
        v.verify(
            "msg_other",
            "1614265330",
            VECTOR_SIG,
            VECTOR_BODY,
            VECTOR_TS
        ),
        Err(VerifyError::NoMatchingSignature)
    );
    assert_eq!(
        v.verify(VECTOR_ID, "1614265331", VECTOR_SIG, VECTOR_BODY, VECTOR_TS),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn malformed_inputs_have_clear_errors() {
    let v = Verifier::new(vec![vector_secret()]);
    assert_eq!(
        v.verify(VECTOR_ID, "1614265330", "", VECTOR_BODY, VECTOR_TS),
        Err(VerifyError::MissingSignature)
    );
    let err = v
        .verify(VECTOR_ID, "yesterday", VECTOR_SIG, VECTOR_BODY, VECTOR_TS)
        .unwrap_err();
    assert_eq!(err, VerifyError::BadTimestamp("yesterday".into()));
    assert!(err.to_string().contains("unix seconds"), "{err}");
    let err = v
        .verify(VECTOR_ID, "1614265330", VECTOR_SIG, b"x", VECTOR_TS)
        .unwrap_err();
    assert!(err.to_string().contains("wrong secret"), "{err}");
}

#[test]
fn verify_headers_reads_standard_header_names() {
    let v = Verifier::new(vec![vector_secret()]);
    let headers = [
        ("webhook-id", VECTOR_ID),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", VECTOR_SIG),
    ];
    let lookup = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    v.verify_headers(lookup, VECTOR_BODY, VECTOR_TS).unwrap();
    let without = |missing: &'static str| {
        move |name: &str| {
            if name == missing {
                None
            } else {
                lookup(name)
            }
        }
    };
    assert_eq!(
        v.verify_headers(without("webhook-id"), VECTOR_BODY, VECTOR_TS),
        Err(VerifyError::MissingMessageId)
    );
    assert_eq!(
        v.verify_headers(without("webhook-timestamp"), VECTOR_BODY, VECTOR_TS),
        Err(VerifyError::MissingTimestamp)
    );
    assert_eq!(
        v.verify_headers(without("webhook-signature"), VECTOR_BODY, VECTOR_TS),
        Err(VerifyError::MissingSignature)
    );
}

proptest! {
    #[test]
    fn sign_then_verify_round_trips(
        id in ".{0,64}",
        ts in -1_000_000_000_000i64..1_000_000_000_000,
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        key in proptest::collection::vec(any::<u8>(), 16..=64),
    ) {
        let secret = Secret::from_bytes(&key).unwrap();
        let header = Signer::new(vec![secret.clone()]).signature_header(&id, ts, &body);
        prop_assert!(Verifier::new(vec![secret])
            .verify(&id, &ts.to_string(), &header, &body, ts)
            .is_ok());
    }

    #[test]
    fn any_single_byte_change_fails(
        body in proptest::collection::vec(any::<u8>(), 1..1024),
        index in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let secret = vector_secret();
        let header = sign(&secret, "msg_prop", 77, &body);
        let mut tampered = body.clone();
        let i = index.index(tampered.len());
        tampered[i] ^= flip;
        prop_assert_eq!(
            Verifier::new(vec![secret]).verify("msg_prop", "77", &header, &tampered, 77),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn secrets_round_trip_through_whsec(key in proptest::collection::vec(any::<u8>(), 16..=64)) {
        let secret = Secret::from_bytes(&key).unwrap();
        let again = Secret::parse(&secret.to_whsec()).unwrap();
        prop_assert_eq!(again.to_whsec(), secret.to_whsec());
        prop_assert_eq!(sign(&again, "m", 1, b"b"), sign(&secret, "m", 1, b"b"));
    }
}
