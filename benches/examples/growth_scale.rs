//! What growing to millions of entries costs, as the kernel and a writer see it (issue 32,
//! items 1 and 5): one process inserts N keys into a map that starts at the default 1,024
//! buckets and grows by itself, and reports
//!
//! - every 100,000 entries: the bytes per entry the kernel holds for the map's files (the
//!   root, the heap and the current table: `st_blocks` of each `/dev/shm` file named for the
//!   map), and the highest figure since the last line, from a thread that reads the files
//!   and the count every millisecond (a resize holds two tables at once for the length of its
//!   copy, which lasts far longer);
//! - every resize: the entries at that moment, the new table's buckets, and how long the
//!   insert that made it took (it copies the whole table while every other writer waits);
//! - at the end: the longest insert of all, the total time, and a check that every key reads
//!   back its value;
//! - with `OTHER=1` in the environment, a second writer (a thread with the same handle) sets
//!   1,000 keys of its own again and again meanwhile, and its longest set is reported: what
//!   a resize costs the writers that did not make it (each resize's line gives the longest
//!   of its sets that the resize overlapped);
//! - with `UPKEEP=1`, how long a sweep and a compaction of the heap hold the writers at the
//!   end (`SharedMap::sweep_heap`, `compact_heap`).
//!
//! `cargo run --release -p shmap-benches --example growth_scale -- [N] [KEY_BYTES]
//! [VALUE_BYTES] [MAX_KEY] [MAX_VALUE]`; defaults: 10,000,000 keys of 4 bytes with 4-byte
//! values (SharedHashFile's own benchmark), the map's default limits (256, 1,024). Keys are
//! the little-endian bytes of `i`, padded with zeros to KEY_BYTES (at least 4); the second
//! writer's keys are 12 bytes, so they never meet the first's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmap::{MapBackend, MapOps, MapParams};
use shmap_backends::LockFreeMap;
use shmap_benches::shm_bytes::shm_bytes;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .map_or(default, |a| a.replace('_', "").parse().expect("a number"))
}

fn key_of(i: u64, key: &mut [u8]) {
    key[..4].copy_from_slice(&(i as u32).to_le_bytes());
    if key.len() >= 8 {
        key[4..8].copy_from_slice(&((i >> 32) as u32).to_le_bytes());
    }
}

fn value_of(i: u64, value: &mut [u8]) {
    for (j, b) in value.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(j as u8) ^ 0x5a;
    }
}

fn main() {
    let n = arg(1, 10_000_000) as u64;
    let key_bytes = arg(2, 4).max(4);
    let value_bytes = arg(3, 4);
    let defaults = MapParams::default();
    let params = MapParams {
        max_key_size: arg(4, defaults.max_key_size),
        max_value_size: arg(5, defaults.max_value_size),
        ..defaults
    };
    assert!(
        n <= u32::MAX as u64 || key_bytes >= 8,
        "more keys than 4 bytes can name"
    );
    let name = format!("shmap-growth-scale-{}", std::process::id());
    let map = LockFreeMap::create(&name, params).expect("create");

    // The sampler: the most bytes per entry the kernel held, read every millisecond, as
    // hundredths of a byte (`peak`), and the most bytes (`peak_bytes`). Below 100,000
    // entries the first tables' fixed share says nothing of the scale: not counted.
    let entries = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let peak_bytes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (entries, peak, peak_bytes, stop, name) = (
            entries.clone(),
            peak.clone(),
            peak_bytes.clone(),
            stop.clone(),
            name.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // Read the count before and after the files: the smaller one is the ratio's
                // honest denominator (no entry counted that the bytes may not hold).
                let before = entries.load(Ordering::Relaxed);
                let held = shm_bytes(&name);
                let count = before.min(entries.load(Ordering::Relaxed));
                peak_bytes.fetch_max(held, Ordering::Relaxed);
                if count >= 100_000 {
                    peak.fetch_max(held * 100 / count, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };

    println!(
        "# {n} keys of {key_bytes} B, values of {value_bytes} B; limits {} / {}; from {} buckets",
        params.max_key_size, params.max_value_size, params.capacity
    );
    println!("entries,bytes_per_entry,highest_bytes_per_entry_since_last_line,longest_insert_ms_since_last_line");
    let (mut key, mut value) = (vec![0u8; key_bytes], vec![0u8; value_bytes]);
    let mut generation = map.generation();
    let (mut longest, mut longest_here) = (Duration::ZERO, Duration::ZERO);
    let mut resizes = Vec::new();
    let mut worst = 0f64;
    let other = std::env::var_os("OTHER").is_some_and(|v| v == "1");
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let other_writer = other.then(|| {
            let (map, done) = (&map, &done);
            scope.spawn(move || {
                // Keys of its own (12 bytes): 1,000 of them, set again and again (updates
                // leave no tombstones, whose reclaim would be another pause than a resize's).
                // A set during which the generation moved waited for that resize.
                let (mut longest, mut ops, mut key) = (Duration::ZERO, 0u64, [0u8; 12]);
                let mut waits = std::collections::BTreeMap::<u64, Duration>::new();
                while !done.load(Ordering::Relaxed) {
                    key[..8].copy_from_slice(&(ops % 1000).to_le_bytes());
                    let g = map.generation();
                    let t = Instant::now();
                    map.insert(&key, &ops.to_le_bytes()).expect("insert");
                    let took = t.elapsed();
                    longest = longest.max(took);
                    if map.generation() != g {
                        let w = waits.entry(map.generation()).or_default();
                        *w = (*w).max(took);
                    }
                    ops += 1;
                }
                (longest, ops, waits)
            })
        });
        let started = Instant::now();
        for i in 0..n {
            key_of(i, &mut key);
            value_of(i, &mut value);
            let t = Instant::now();
            map.insert(&key, &value).expect("insert");
            let took = t.elapsed();
            entries.store(i + 1, Ordering::Relaxed);
            longest_here = longest_here.max(took);
            if map.generation() != generation {
                generation = map.generation();
                resizes.push((generation, i + 1, map.capacity(), took));
            }
            if (i + 1) % 100_000 == 0 || i + 1 == n {
                let count = i + 1;
                let held = shm_bytes(&name);
                // The highest since the last line (and this reading), then start over.
                let top = peak.swap(0, Ordering::Relaxed) as f64 / 100.0;
                let now = held as f64 / count as f64;
                println!(
                    "{count},{now:.1},{:.1},{:.2}",
                    top.max(now),
                    longest_here.as_secs_f64() * 1e3
                );
                worst = worst.max(top.max(now));
                longest = longest.max(longest_here);
                longest_here = Duration::ZERO;
            }
        }
        let total = started.elapsed();
        done.store(true, Ordering::Relaxed);
        let other = other_writer.map(|w| w.join().expect("the other writer"));
        stop.store(true, Ordering::Relaxed);
        sampler.join().expect("sampler");

        println!("# resizes: entries,buckets,stall_ms,the_other_writers_longest_set_in_it_ms");
        for (g, entries, buckets, took) in &resizes {
            let waited = other
                .as_ref()
                .and_then(|(_, _, waits)| waits.get(g))
                .map_or(String::new(), |w| format!("{:.1}", w.as_secs_f64() * 1e3));
            println!(
                "# {entries},{buckets},{:.1},{waited}",
                took.as_secs_f64() * 1e3
            );
        }
        let mut wrong = 0u64;
        let mut got = Vec::new();
        for i in 0..n {
            key_of(i, &mut key);
            value_of(i, &mut value);
            got.clear();
            if !map.get_into(&key, &mut got).expect("get") || got != value {
                wrong += 1;
            }
        }
        let held = shm_bytes(&name);
        println!(
        "# total {:.2} s ({:.0} ns per insert); longest insert {:.1} ms; end {:.1} B per entry; \
         peak {worst:.1} B per entry (from 100,000 entries on), {:.0} MiB; \
         {wrong} keys missing or wrong",
        total.as_secs_f64(),
        total.as_nanos() as f64 / n as f64,
        longest.as_secs_f64() * 1e3,
        held as f64 / n as f64,
        peak_bytes.load(Ordering::Relaxed).max(held) as f64 / (1 << 20) as f64,
    );
        if let Some((longest, ops, _)) = other {
            println!(
                "# the other writer: {ops} sets, longest {:.1} ms",
                longest.as_secs_f64() * 1e3
            );
        }
        if std::env::var_os("UPKEEP").is_some_and(|v| v == "1") {
            // What the heap's upkeep stops writers for at this size (readers go on).
            let t = Instant::now();
            map.sweep_heap().expect("sweep");
            let sweep = t.elapsed();
            let t = Instant::now();
            map.compact_heap().expect("compaction");
            println!(
                "# a sweep of the heap: {:.1} ms; a compaction: {:.1} ms",
                sweep.as_secs_f64() * 1e3,
                t.elapsed().as_secs_f64() * 1e3
            );
        }
        map.unlink().expect("unlink");
        assert_eq!(wrong, 0, "keys missing or wrong");
    });
}
