//! How long a `clear` holds the writers, and where its time goes: one process fills a map
//! (default parameters) with `ENTRIES` entries of 16-byte keys and 64-byte values, then
//! clears it, `ROUNDS` times, and prints each clear's time with the pages held before and
//! after (what the kernel holds for the map's files in `/dev/shm`).
//!
//! `cargo run --release -p shmap-benches --example clear_pause -- [ENTRIES] [ROUNDS]`;
//! defaults: 1,000,000 entries, 3 rounds.

use std::time::Instant;

use shmap::{MapBackend, MapOps, MapParams};
use shmap_backends::LockFreeMap;
use shmap_testkit::shm_bytes_held;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .map_or(default, |a| a.replace('_', "").parse().expect("a number"))
}

fn main() {
    let (entries, rounds) = (arg(1, 1_000_000), arg(2, 3));
    let name = format!("clear-pause-{}", std::process::id());
    let map = LockFreeMap::create(&name, MapParams::default()).expect("create");
    let value = [7u8; 64];
    for round in 0..rounds {
        for i in 0..entries as u64 {
            map.insert(format!("key-{i:012}").as_bytes(), &value)
                .expect("insert");
        }
        let full = shm_bytes_held(&name);
        let started = Instant::now();
        let removed = map.clear().expect("clear");
        let took = started.elapsed();
        assert_eq!((removed, map.len().expect("len")), (entries, 0));
        println!(
            "round {round}: {entries} entries, {:.1} MiB; clear() {:.1} ms; after it {:.2} MiB",
            full as f64 / (1 << 20) as f64,
            took.as_secs_f64() * 1e3,
            shm_bytes_held(&name) as f64 / (1 << 20) as f64
        );
    }
    map.unlink().expect("unlink");
}
