//! A typed get's own work on its key, in a standalone loop: hashing and comparing a `&str` key
//! as tag + payload where it lies (`shmap::Tagged`) against the same 17 bytes contiguous
//! (`[u8]`), over 1,000 keys from L1. Rounds alternate the sides; prints the medians of the
//! per-round ratios with their range.
//!
//! `cargo run --release -p shmap-benches --example tagged_key`

use std::hint::black_box;
use std::time::Instant;

use shmap::{ProbeKey, Tagged};

const N: usize = 20_000_000;
const ROUNDS: usize = 15;

fn timed(f: impl FnOnce() -> u64) -> f64 {
    let started = Instant::now();
    black_box(f());
    started.elapsed().as_nanos() as f64 / N as f64
}

/// A stored key's words as a lookup reads them: the key, then a value's first byte.
fn stored(e: &[u8]) -> [u64; 3] {
    let word = |q: usize| u64::from_le_bytes(e[8 * q..8 * q + 8].try_into().expect("8 bytes"));
    [word(0), word(1), u64::from(e[16]) | 0xAB00]
}

fn median_and_range(mut xs: Vec<f64>) -> String {
    xs.sort_by(f64::total_cmp);
    format!(
        "{:.3} [{:.3}, {:.3}]",
        xs[xs.len() / 2],
        xs[0],
        xs[xs.len() - 1]
    )
}

fn main() {
    let keys: Vec<String> = (0..1000u64)
        .map(|i| format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 4))
        .collect();
    let joined: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| [&[1u8][..], k.as_bytes()].concat())
        .collect();
    let words: Vec<[u64; 3]> = joined.iter().map(|e| stored(e)).collect();
    let tagged = |j: usize| Tagged {
        tag: 1,
        payload: keys[j % 1000].as_bytes(),
    };
    let (mut hash, mut compare) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        let t_hash = timed(|| (0..N).fold(0, |a, j| a ^ black_box(tagged(j)).hash(7)));
        let b_hash = timed(|| (0..N).fold(0, |a, j| a ^ black_box(&joined[j % 1000][..]).hash(7)));
        let t_cmp = timed(|| {
            (0..N).fold(0, |a, j| {
                let w = &words[j % 1000];
                a + u64::from(black_box(tagged(j)).matches(|q| w[q]))
            })
        });
        let b_cmp = timed(|| {
            (0..N).fold(0, |a, j| {
                let w = &words[j % 1000];
                a + u64::from(black_box(&joined[j % 1000][..]).matches(|q| w[q]))
            })
        });
        hash.push(t_hash / b_hash);
        compare.push(t_cmp / b_cmp);
    }
    println!("tagged / bytes, 17-byte keys, {ROUNDS} rounds:");
    println!("  hash:    {}", median_and_range(hash));
    println!("  compare: {}", median_and_range(compare));
}
