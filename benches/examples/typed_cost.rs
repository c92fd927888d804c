//! The typed get against the bytes get, alternated in one run (issue 35 item 6): per size,
//! rounds of `GETS` gets of each side (`typed`, `bytes`, `bytes_string`: see the fixture,
//! `benches/src/typed_cost.rs`), the order rotated every round; prints each side's median
//! nanoseconds per get and the medians of the per-round ratios with their range.
//!
//! `cargo run --release -p shmap-benches --example typed_cost [-- ROUNDS [--pair]]`, or
//! `... -- --only typed|bytes|string ENTRIES ROUNDS` for one side alone (under `perf stat`).

use std::hint::black_box;
use std::time::Instant;

use shmap_benches::typed_cost::Fixture;

const GETS: usize = 200_000;

fn per_get(f: &Fixture, n: usize, side: usize) -> f64 {
    // One untimed pass first: the side before may have used other lines (the bytes + String
    // side reads a map of its own), and in a rotation of three sides the typed side followed
    // that one twice as often as the bytes side did; timed cold, it paid for those misses.
    gets(f, n, side, n.min(GETS));
    let started = Instant::now();
    gets(f, n, side, GETS);
    started.elapsed().as_nanos() as f64 / GETS as f64
}

fn gets(f: &Fixture, n: usize, side: usize, count: usize) {
    for j in 0..count {
        let i = j % n;
        match side {
            0 => drop(black_box(f.typed_get(i))),
            1 => drop(black_box(f.bytes_get(i))),
            _ => drop(black_box(f.bytes_string_get(i))),
        }
    }
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [only, side, n, rounds] = &args[..] {
        if only == "--only" {
            // One side alone, for `perf stat` (instructions per get are noise-free).
            let side = ["typed", "bytes", "string"]
                .iter()
                .position(|s| s == side)
                .expect("SIDE: typed, bytes or string");
            let n: usize = n.parse().expect("ENTRIES");
            let f = Fixture::new(n);
            let ns: Vec<f64> = (0..rounds.parse().expect("ROUNDS"))
                .map(|_| per_get(&f, n, side))
                .collect();
            println!("{:.1} ns/get", ns.iter().sum::<f64>() / ns.len() as f64);
            return;
        }
    }
    let rounds: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(21);
    // `--pair`: typed and bytes only, alternated (the third side's own map out of the caches).
    let sides = if args.iter().any(|a| a == "--pair") {
        2
    } else {
        3
    };
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
            for k in 0..sides {
                let side = (round + k) % sides;
                t[side] = per_get(&f, n, side);
            }
            if sides == 2 {
                t[2] = f64::NAN; // not run
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
