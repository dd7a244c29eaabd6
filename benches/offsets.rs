//! Measures the dispatcher's per-partition offset tracker
//! (`herald_dispatch::offsets`):
//! - `offsets/tracker`: 10,000 offsets received in order, then finished in
//!   a shuffled order (fixed seed), as deliveries to many endpoints complete
//!   out of order, with `committable()` asked every 100 finishes (the commit
//!   loop's question); the in-order finish is the baseline;
//! - `offsets/commit_point`: encoding the commit metadata when 1,000 or
//!   10,000 received offsets alternate finished/unfinished (one run per
//!   offset, the worst case), with the dispatcher's 4,000-byte budget and
//!   with no effective budget (the full linear encoding);
//! - `offsets/skipset_decode`: a new owner decoding that metadata.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald_dispatch::offsets::{OffsetTracker, SkipSet};

use common::XorShift;

/// Offsets per tracker round.
const OFFSETS: i64 = 10_000;

/// `committable()` is asked after every this many finishes.
const QUERY_EVERY: usize = 100;

/// The metadata budget the dispatcher commits with (`MAX_METADATA` in
/// herald-dispatch's group.rs, under Kafka's 4096-byte default limit).
const MAX_METADATA: usize = 4000;

/// Receives `0..OFFSETS`, finishes them in `order`, asking `committable()`
/// every `QUERY_EVERY` finishes; returns the last answer.
fn run_tracker(order: &[i64]) -> Option<i64> {
    let mut t = OffsetTracker::new(Some(0));
    for o in 0..OFFSETS {
        t.received(o);
    }
    let mut last = None;
    for (i, &o) in order.iter().enumerate() {
        t.finished(o);
        if i % QUERY_EVERY == QUERY_EVERY - 1 {
            last = black_box(t.committable());
        }
    }
    last
}

fn bench_tracker(c: &mut Criterion) {
    let in_order: Vec<i64> = (0..OFFSETS).collect();
    let mut shuffled = in_order.clone();
    XorShift::new(0x0ff5e7).shuffle(&mut shuffled);
    assert_eq!(run_tracker(&shuffled), Some(OFFSETS));

    let mut g = c.benchmark_group("offsets/tracker");
    g.throughput(Throughput::Elements(OFFSETS as u64));
    g.bench_function("in_order_10k", |b| {
        b.iter(|| run_tracker(black_box(&in_order)))
    });
    g.bench_function("shuffled_10k", |b| {
        b.iter(|| run_tracker(black_box(&shuffled)))
    });
    g.finish();
}

/// A tracker that received `0..n` and finished the even offsets: the
/// commit point is 1 and every offset above it starts a new run.
fn alternating(n: i64) -> OffsetTracker {
    let mut t = OffsetTracker::new(Some(0));
    for o in 0..n {
        t.received(o);
    }
    for o in (0..n).step_by(2) {
        t.finished(o);
    }
    t
}

fn bench_commit_metadata(c: &mut Criterion) {
    let mut enc = c.benchmark_group("offsets/commit_point");
    for n in [1_000i64, 10_000] {
        let t = alternating(n);
        assert_eq!(t.unfinished_len() as i64, n / 2);
        for (label, budget) in [("4000B", MAX_METADATA), ("uncapped", 1 << 20)] {
            let cp = t.commit_point(budget).expect("something received");
            assert_eq!(cp.offset, 1);
            assert!(cp.metadata.len() <= budget);
            enc.throughput(Throughput::Elements(n as u64));
            enc.bench_with_input(BenchmarkId::new(label, n), &t, |b, t| {
                b.iter(|| black_box(t).commit_point(black_box(budget)))
            });
        }
    }
    enc.finish();

    let mut dec = c.benchmark_group("offsets/skipset_decode");
    for n in [1_000i64, 10_000] {
        let t = alternating(n);
        for (label, budget) in [("4000B", MAX_METADATA), ("uncapped", 1 << 20)] {
            let cp = t.commit_point(budget).expect("something received");
            let skip = SkipSet::decode(cp.offset, &cp.metadata);
            // Decoded, it skips the finished offsets it covers and not the
            // unfinished ones (i.e. it is not the "skip nothing" fallback).
            assert!(skip.should_skip(2) && !skip.should_skip(3));
            dec.throughput(Throughput::Bytes(cp.metadata.len() as u64));
            dec.bench_with_input(BenchmarkId::new(label, n), &cp, |b, cp| {
                b.iter(|| SkipSet::decode(black_box(cp.offset), black_box(&cp.metadata)))
            });
        }
    }
    dec.finish();
}

criterion_group!(benches, bench_tracker, bench_commit_metadata);
criterion_main!(benches);
