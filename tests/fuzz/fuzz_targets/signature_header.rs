//! Standard Webhooks verification with an attacker-chosen
//! `webhook-signature`, id, timestamp and body: never panics, and never
//! accepts what the real secret did not sign.
#![no_main]
use herald_signing::{Secret, Signer, Verifier};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (id, ts, sig, body) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let secret = Secret::parse(SECRET).expect("valid secret");
    let verifier = Verifier::new(vec![secret.clone()]);
    let now = 1_700_000_000;
    if verifier.verify(id, ts, sig, body.as_bytes(), now).is_ok() {
        // Only the real signature of exactly this message verifies.
        if let Ok(ts) = ts.trim().parse::<i64>() {
            let real = Signer::new(vec![secret]).signature_header(id, ts, body.as_bytes());
            assert!(
                sig.split_whitespace().any(|s| s == real),
                "{sig:?} verified but is not {real:?}"
            );
        }
    }
});
