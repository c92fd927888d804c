//! What the heap's allocation costs one thread (issue 32, step 2), to weigh against a write
//! in step 3: `cargo run --release -p shmap-benches --example heap_alloc`.
//!
//! - carve: 1,000,000 blocks of 88 bytes (a 16-byte key and a 65-byte value) from new runs;
//! - reuse: alloc then free of one block, 1,000,000 times (a pop and a push);
//! - churn: free and alloc of random blocks among 100,000 held, across 8 classes;
//! - large: alloc then free of a 100 KB record (the heap lock, a punch), 10,000 times.
//!
//! Prints ns per operation (median of 5 rounds, with the range) and the bytes held per block.

use std::time::Instant;

use shmap::heap::{Heap, DEFAULT_RESERVE};
use shmap::Location;

fn median_ns(rounds: &mut [f64]) -> (f64, f64, f64) {
    rounds.sort_by(f64::total_cmp);
    (
        rounds[rounds.len() / 2],
        rounds[0],
        rounds[rounds.len() - 1],
    )
}

fn timed(label: &str, ops: usize, mut round: impl FnMut() -> f64) {
    let mut ns: Vec<f64> = (0..5).map(|_| round() / ops as f64).collect();
    let (m, lo, hi) = median_ns(&mut ns);
    println!("{label:>8}: {m:7.1} ns per op [{lo:.1}, {hi:.1}]");
}

fn main() {
    let name = format!("shmap-heap-alloc-{}", std::process::id());
    let location = Location::Shm(name);
    let mut held_per_block = 0.0;
    timed("carve", 1_000_000, || {
        let _ = location.unlink_one();
        let heap = Heap::create(&location, DEFAULT_RESERVE).unwrap();
        let t = Instant::now();
        for _ in 0..1_000_000 {
            std::hint::black_box(heap.alloc(88).unwrap());
        }
        let ns = t.elapsed().as_nanos() as f64;
        held_per_block = heap.resident_bytes().unwrap() as f64 / 1e6;
        ns
    });
    println!("          {held_per_block:.1} bytes held per 88-byte block");
    let heap = Heap::create(
        &Location::Shm(format!("{}-2", location.label())),
        DEFAULT_RESERVE,
    )
    .unwrap();
    timed("reuse", 1_000_000, || {
        let t = Instant::now();
        for _ in 0..1_000_000 {
            let b = heap.alloc(88).unwrap();
            heap.free(std::hint::black_box(b), 88).unwrap();
        }
        t.elapsed().as_nanos() as f64
    });
    let sizes = [8, 24, 88, 200, 500, 1000, 2000, 4000];
    let mut held: Vec<(u64, usize)> = (0..100_000)
        .map(|i| {
            let s = sizes[i % 8];
            (heap.alloc(s).unwrap(), s)
        })
        .collect();
    let mut x = 0x9E37_79B9u64;
    timed("churn", 1_000_000, || {
        let t = Instant::now();
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % held.len() as u64) as usize;
            let (b, s) = held[i];
            heap.free(b, s).unwrap();
            let s = sizes[(x >> 32) as usize % 8];
            held[i] = (heap.alloc(s).unwrap(), s);
        }
        t.elapsed().as_nanos() as f64
    });
    timed("large", 10_000, || {
        let t = Instant::now();
        for _ in 0..10_000 {
            let b = heap.alloc(100_000).unwrap();
            heap.free(std::hint::black_box(b), 100_000).unwrap();
        }
        t.elapsed().as_nanos() as f64
    });
    let _ = location.unlink_one();
    let _ = Location::Shm(format!("{}-2", location.label())).unlink_one();
}
