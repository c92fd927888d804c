//! What a miss costs in a table that cannot grow, at the load where it stops taking new keys
//! (7/8 of its buckets: issue 33, item 3), beside the same table at load 0.7:
//! `cargo run --release -p shmap-benches --example fill_limit_misses`.
//!
//! Before the limit, such a table filled to 100% and a miss probed nearly all of it (23-42 us
//! per miss measured at 1M buckets). Prints ns per miss, median of 5 rounds with the range.

use std::time::Instant;

use shmap::{MapBackend, MapOps, MapParams};
use shmap_backends::LockFreeMap;

const CAP: usize = 1 << 20;

fn misses(map: &LockFreeMap) -> (f64, f64, f64) {
    let mut ns: Vec<f64> = (0..5)
        .map(|round| {
            let t = Instant::now();
            for i in 0..200_000u64 {
                let key = format!("absent-{round}-{i}");
                std::hint::black_box(map.contains_key(key.as_bytes()).unwrap());
            }
            t.elapsed().as_nanos() as f64 / 200_000.0
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    (ns[2], ns[0], ns[4])
}

fn main() {
    let name = format!("shmap-fill-limit-{}", std::process::id());
    let params = MapParams {
        capacity: CAP,
        max_capacity: CAP,
        max_key_size: 16,
        max_value_size: 8,
    };
    let map = LockFreeMap::create(&name, params).unwrap();
    let mut n = 0u64;
    let report = |map: &LockFreeMap, n: u64| {
        let (m, lo, hi) = misses(map);
        println!(
            "load {:.3}: {m:.0} ns per miss [{lo:.0}, {hi:.0}]",
            n as f64 / CAP as f64
        );
    };
    while n < (CAP as u64) * 7 / 10 {
        map.insert(format!("k-{n}").as_bytes(), b"v").unwrap();
        n += 1;
    }
    report(&map, n);
    while map.insert(format!("k-{n}").as_bytes(), b"v").is_ok() {
        n += 1;
    }
    report(&map, n);
    map.unlink().unwrap();
}
