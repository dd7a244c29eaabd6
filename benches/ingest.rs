//! Measures the per-event CPU work between a publish request and the
//! dispatcher's lane, for a 1 KiB JSON payload:
//! - `ingest/validate`: the payload check ingest runs on every publish
//!   (`herald_core::validate::payload`: JSON walked with every string
//!   decoded, so lone surrogates are refused; `serde_ignored_any` beside it
//!   skips strings unread), the
//!   full field check (`validate::id`, `validate::event_type`, payload),
//!   and, for reference, parsing into `IgnoredAny` directly and into a
//!   `serde_json::Value` tree;
//! - `ingest/event_id`: a new event id (`herald_core::ids::new_event_id`, a
//!   UUIDv7 whose random bits come from a thread-local generator, not a
//!   system call per id);
//! - `envelope`: prost encoding of the `EventEnvelope` ingest writes to the
//!   events topic (`encode_to_vec`, as `Publisher` does) and decoding it
//!   from a `Bytes` record value as the dispatcher's intake does (the
//!   payload is then a slice of the record, not a copy), plus decoding from
//!   a plain `&[u8]` (which copies the payload) for comparison.

mod common;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herald_core::validate;
use herald_proto::v1::EventEnvelope;
use prost::Message as _;

use common::{envelope, json_payload, EVENT_ID, PAYLOAD_LEN};

/// The default `grpc.max_payload_bytes` (256 KiB).
const MAX_PAYLOAD: usize = 256 * 1024;

const ENDPOINT_ID: &str = "ep_0197a3c2e4b87f10a5d6c3b2e1f09a00";

fn bench_validate(c: &mut Criterion) {
    let payload = json_payload(PAYLOAD_LEN, 2);
    let mut g = c.benchmark_group("ingest/validate");
    g.throughput(Throughput::Bytes(payload.len() as u64));

    g.bench_function("payload", |b| {
        b.iter(|| validate::payload(black_box(&payload), MAX_PAYLOAD).expect("valid"))
    });
    g.bench_function("publish_fields", |b| {
        b.iter(|| {
            validate::id("endpoint_id", black_box(ENDPOINT_ID)).expect("valid");
            validate::event_type(black_box("invoice.paid")).expect("valid");
            validate::payload(black_box(&payload), MAX_PAYLOAD).expect("valid");
        })
    });
    g.bench_function("serde_ignored_any", |b| {
        b.iter(|| {
            serde_json::from_str::<serde::de::IgnoredAny>(black_box(&payload)).expect("valid")
        })
    });
    g.bench_function("serde_value", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&payload)).expect("valid"))
    });
    g.finish();
}

fn bench_envelope(c: &mut Criterion) {
    let payload = Bytes::from(json_payload(PAYLOAD_LEN, 3));
    let env = envelope(EVENT_ID, ENDPOINT_ID, payload);
    let encoded: Bytes = env.encode_to_vec().into();

    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Bytes(encoded.len() as u64));

    g.bench_function("encode_to_vec", |b| {
        b.iter(|| black_box(&env).encode_to_vec())
    });
    g.bench_function("decode_bytes", |b| {
        b.iter(|| {
            let e = EventEnvelope::decode(black_box(&encoded).clone()).expect("decodes");
            // The intake checks the record key against the envelope.
            assert_eq!(e.endpoint_id.as_bytes(), ENDPOINT_ID.as_bytes());
            e
        })
    });
    g.bench_function("decode_slice", |b| {
        b.iter(|| EventEnvelope::decode(black_box(&encoded[..])).expect("decodes"))
    });
    g.finish();

    // Sanity: a round trip keeps everything.
    assert_eq!(EventEnvelope::decode(encoded).expect("decodes"), env);
}

fn bench_event_id(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    g.bench_function("event_id", |b| b.iter(herald_core::ids::new_event_id));
    g.finish();
}

criterion_group!(benches, bench_validate, bench_envelope, bench_event_id);
criterion_main!(benches);
