//! The typed get against the bytes get, alternated in one run (issue 35 item 6): per size,
//! rounds of `GETS` gets of each side (`typed`, `bytes`, `bytes_string`: see the fixture,
//! `benches/src/typed_cost.rs`), the order rotated every round; prints each side's median
//! nanoseconds per get and the medians of the per-round ratios with their range.
//!
//! `cargo run --release -p shmap-benches --example typed_cost [-- ROUNDS]`

use std::hint::black_box;
use std::time::Instant;

use shmap_benches::typed_cost::Fixture;

const GETS: usize = 200_000;

fn per_get(f: &Fixture, n: usize, side: usize) -> f64 {
    let started = Instant::now();
    for j in 0..GETS {
        let i = j % n;
        match side {
            0 => drop(black_box(f.typed_get(i))),
            1 => drop(black_box(f.bytes_get(i))),
            _ => drop(black_box(f.bytes_string_get(i))),
        }
    }
    started.elapsed().as_nanos() as f64 / GETS as f64
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn spread(xs: &mut [f64]) -> String {
    let m = median(xs);
    format!("{m:.3} [{:.3}, {:.3}]", xs[0], xs[xs.len() - 1])
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(21, |a| a.parse().expect("ROUNDS"));
    println!("| entries | typed ns/get | bytes | bytes + String | typed / bytes | typed / (bytes + String) |");
    println!("|---:|---:|---:|---:|---|---|");
    for n in [1_000, 100_000] {
        let f = Fixture::new(n);
        for side in 0..3 {
            per_get(&f, n, side); // warm every path and the tables
        }
        let mut ns = [vec![], vec![], vec![]];
        let (mut vs_bytes, mut vs_string) = (vec![], vec![]);
        for round in 0..rounds {
            let mut t = [0.0; 3];
            for k in 0..3 {
                let side = (round + k) % 3;
                t[side] = per_get(&f, n, side);
            }
            for side in 0..3 {
                ns[side].push(t[side]);
            }
            vs_bytes.push(t[0] / t[1]);
            vs_string.push(t[0] / t[2]);
        }
        println!(
            "| {n} | {:.1} | {:.1} | {:.1} | {} | {} |",
            median(&mut ns[0]),
            median(&mut ns[1]),
            median(&mut ns[2]),
            spread(&mut vs_bytes),
            spread(&mut vs_string)
        );
    }
}
