//! Measures Standard Webhooks signing of a 1 KiB payload, the work done once
//! per delivery attempt: `Signer::signature_header` (allocates the header)
//! and `Signer::write_signature_header` (appends to a reused buffer), with
//! one secret and with two (a secret rotation), plus `Verifier::verify` on
//! the receiving side for comparison.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herald_signing::{Secret, Signer, Verifier};

use common::{json_payload, EVENT_ID, NOW_MS, PAYLOAD_LEN};

/// Two fixed 24-byte keys (the length `Secret::generate` makes).
fn secrets() -> (Secret, Secret) {
    let old = Secret::from_bytes(&[0x11; 24]).expect("valid key");
    let new = Secret::from_bytes(&[0x5a; 24]).expect("valid key");
    (old, new)
}

fn bench_signing(c: &mut Criterion) {
    let body = json_payload(PAYLOAD_LEN, 1).into_bytes();
    let ts = NOW_MS / 1000;
    let (old, new) = secrets();
    let one = Signer::new(vec![new.clone()]);
    // During a rotation the newest secret signs first.
    let two = Signer::new(vec![new.clone(), old.clone()]);

    let mut g = c.benchmark_group("signing");
    g.throughput(Throughput::Bytes(body.len() as u64));

    for (name, signer) in [("1_secret", &one), ("2_secrets", &two)] {
        g.bench_function(format!("signature_header/{name}"), |b| {
            b.iter(|| {
                black_box(signer).signature_header(
                    black_box(EVENT_ID),
                    black_box(ts),
                    black_box(&body),
                )
            })
        });
        g.bench_function(format!("write_signature_header/{name}"), |b| {
            let mut out = String::with_capacity(signer.header_len());
            b.iter(|| {
                out.clear();
                black_box(signer).write_signature_header(
                    black_box(EVENT_ID),
                    black_box(ts),
                    black_box(&body),
                    &mut out,
                );
                black_box(out.len())
            })
        });
    }

    // The receiver holds one secret and the header carries one signature.
    let header_one = one.signature_header(EVENT_ID, ts, &body);
    let verify_one = Verifier::new(vec![new.clone()]);
    let ts_text = ts.to_string();
    let mut bench_verify = |name: &str, verifier: &Verifier, header: &str| {
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(verifier)
                    .verify(
                        black_box(EVENT_ID),
                        black_box(&ts_text),
                        black_box(header),
                        black_box(&body),
                        ts,
                    )
                    .expect("signature verifies")
            })
        });
    };
    bench_verify("verify/1_secret", &verify_one, &header_one);

    // Mid-rotation: the header carries both signatures (new first) and the
    // receiver still holds only the old secret, so the match is the second
    // candidate (one HMAC, two base64 decodes).
    let header_two = two.signature_header(EVENT_ID, ts, &body);
    let verify_old = Verifier::new(vec![old.clone()]);
    bench_verify("verify/rotation_header", &verify_old, &header_two);

    // The receiver tries its secrets in order: holding [old, new] against a
    // header signed only with `new` costs two HMACs (the worst case a
    // rotation produces).
    let verify_two = Verifier::new(vec![old, new]);
    bench_verify("verify/2_secrets_worst", &verify_two, &header_one);
    g.finish();
}

criterion_group!(benches, bench_signing);
criterion_main!(benches);
