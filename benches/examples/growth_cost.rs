//! What growth costs a writer: one process inserts N keys into a table that starts at 1,024
//! buckets and doubles as it fills, and into one sized for N from the start, alternately
//! (A B A B ...), five rounds; medians with their range, per insert.
//!
//! `cargo run --release -p shmap-benches --example growth_cost [N]` (default 1,000,000).

use std::time::Instant;

use shmap::{MapBackend, MapOps, MapParams};
use shmap_backends::LockFreeMap;

fn fill(n: u64, capacity: usize) -> (f64, usize, u64) {
    let name = format!("shmap-growth-cost-{}", std::process::id());
    let params = MapParams {
        capacity,
        max_key_size: 16,
        max_value_size: 64,
        ..MapParams::default()
    };
    let map = LockFreeMap::create(&name, params).expect("create");
    map.unlink().expect("unlink"); // nothing left behind, whatever happens below
    let value = [7u8; 64];
    let t = Instant::now();
    for i in 0..n {
        map.insert(&i.to_le_bytes(), &value).expect("insert");
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(map.len().unwrap(), n as usize);
    (ns, map.capacity(), map.generation())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("N"));
    let sized = (n as usize * 4 / 3 + 1).next_power_of_two();
    let (mut grown, mut fixed) = (Vec::new(), Vec::new());
    let (mut end, mut gens) = (0, 0);
    for _ in 0..5 {
        let (ns, cap, g) = fill(n, 1024);
        (end, gens) = (cap, g);
        grown.push(ns);
        fixed.push(fill(n, sized).0);
    }
    let range = |v: &[f64]| format!("{:.1}-{:.1}", v[0], v[v.len() - 1]);
    let (g, f) = (median(&mut grown), median(&mut fixed));
    println!("inserts of {n} keys, 5 interleaved rounds, ns per insert (median, range):");
    println!(
        "  from 1,024 buckets, growing to {end} ({gens} resizes): {g:.1} ({})",
        range(&grown)
    );
    println!(
        "  sized for them ({sized} buckets):                     {f:.1} ({})",
        range(&fixed)
    );
    println!("  growing / sized: {:.2}x", g / f);
}
