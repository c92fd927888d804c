//! What the typed layer (`shmap-typed`) costs over the bytes API on a get of `String` keys
//! and values (issue 35 item 6): the three sides of `benches/src/typed_cost.rs`, at 1,000 and
//! 100,000 entries, keys in a fixed shuffled order.
//!
//! Run: `cargo bench -p shmap-benches --bench typed`; the two alternated in one run, which is
//! what to quote on a noisy machine: `cargo run --release -p shmap-benches --example typed_cost`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use shmap_benches::typed_cost::Fixture;

fn bench(c: &mut Criterion) {
    for n in [1_000, 100_000] {
        let f = Fixture::new(n);
        let mut g = c.benchmark_group(format!("typed_get_{n}"));
        let mut i = 0;
        g.bench_function("bytes", |b| {
            b.iter(|| {
                i = (i + 1) % n;
                black_box(f.bytes_get(i))
            })
        });
        g.bench_function("bytes_string", |b| {
            b.iter(|| {
                i = (i + 1) % n;
                black_box(f.bytes_string_get(i))
            })
        });
        g.bench_function("typed", |b| {
            b.iter(|| {
                i = (i + 1) % n;
                black_box(f.typed_get(i))
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
