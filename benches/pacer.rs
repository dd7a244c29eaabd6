//! Measures the per-send rate-limit check of `herald_dispatch::rate::Pacer`:
//! `Pacer::acquire` for an endpoint without a limit (an atomic load and a
//! clock read) and with one (the GCRA check of `governor` under the pacer's
//! mutex). The configured limit is far above the send rate here, so every
//! check admits at once and the figure is the check's own cost, not a wait.
//! Both run on a current-thread Tokio runtime, many checks per `block_on`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herald_core::endpoint::RateLimit;
use herald_dispatch::rate::Pacer;

/// One request per nanosecond: no send in this loop is ever held back.
const HIGH_LIMIT: RateLimit = RateLimit {
    per_second: 1_000_000_000,
    burst: 1_000,
};

/// Times `iters` sequential `acquire` calls on `pacer`.
fn time_acquires(rt: &tokio::runtime::Runtime, pacer: &Pacer, iters: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(pacer).acquire().await;
        }
        start.elapsed()
    })
}

fn bench_pacer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let unlimited = Pacer::new(None);
    let limited = Pacer::new(Some(HIGH_LIMIT));
    // A new pacer starts with an empty bucket: let it refill before timing.
    std::thread::sleep(Duration::from_millis(5));
    time_acquires(&rt, &limited, 1);

    let mut g = c.benchmark_group("pacer/acquire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("no_limit", |b| {
        b.iter_custom(|iters| time_acquires(&rt, &unlimited, iters))
    });
    g.bench_function("limit", |b| {
        b.iter_custom(|iters| time_acquires(&rt, &limited, iters))
    });
    g.finish();
}

criterion_group!(benches, bench_pacer);
criterion_main!(benches);
