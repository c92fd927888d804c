//! What `read-heavy`'s churn leaves in the table, and what it costs gets (issue 13): the
//! harness's defaults (10,000 keys present out of 20,000 that inserts and removes draw from,
//! 26,667 buckets, 16-byte keys, 64-byte values), churned by 2M alternating inserts and
//! removes of random keys of the 20,000, against a table freshly built with the keys that are
//! left. Per table: the mean probe of present keys (buckets to reach the key), the mean probe
//! of absent ones (buckets to the first slot that is EMPTY or that no probe passes, where a
//! miss ends: `raw_table/passes.rs`; and, for comparison, to the first EMPTY slot, where a
//! miss ended before pass counts), the tombstones; then
//! gets of the present keys, of the absent ones, and of random keys of the first 10,000 (half
//! present: `read-heavy`'s gets), in one process, 30 interleaved rounds, median [quartiles].
//! Then the same for the churned table right after a reclaim (`reclaim.rs`), against the
//! fresh one again.
//!
//! `cargo run --release -p shmap-benches --example read_heavy_state`

use std::sync::atomic::Ordering;
use std::time::Instant;

use shmap::{Location, MapBackend, MapOps, MapParams, Meta, SlotState};
use shmap_backends::LockFreeMap;
use shmap_testkit::checked::SplitMix;

const KEYS: u64 = 10_000;
const CAPACITY: usize = 26_667;
const CHURN: u64 = 2_000_000;
const ROUNDS: usize = 30;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.to_le_bytes());
    k
}

/// (mean probe of present keys, mean probe of `absent` keys, the same to the first EMPTY
/// slot, tombstones) of a quiescent map.
fn probes(map: &LockFreeMap, absent: &[u64]) -> (f64, f64, f64, usize) {
    let t = map.raw_table().expect("current table");
    let cap = t.capacity();
    // Relaxed: nothing else runs; a diagnostic scan.
    let meta = |i: usize| Meta(t.meta(i).load(Ordering::Relaxed));
    let (mut sum, mut full, mut tombstones) = (0, 0, 0);
    let mut k = Vec::new();
    for i in 0..cap {
        match meta(i).state() {
            Some(SlotState::Full) => {
                t.read_key(i, &mut k);
                sum += (i + cap - t.hash(&k).home) % cap + 1;
                full += 1;
            }
            Some(SlotState::Tombstone) => tombstones += 1,
            _ => {}
        }
    }
    let mean_miss = |ends: &dyn Fn(usize) -> bool| {
        let total: usize = absent
            .iter()
            .map(|&a| {
                let home = t.hash(&key(a)).home;
                (0..cap)
                    .position(|d| ends((home + d) % cap))
                    .map_or(cap, |d| d + 1)
            })
            .sum();
        total as f64 / absent.len() as f64
    };
    let miss = mean_miss(&|i| meta(i).is_stable_empty() || t.passes(i) == 0);
    let to_empty = mean_miss(&|i| meta(i).is_stable_empty());
    let present = sum as f64 / full as f64;
    (present, miss, to_empty, tombstones)
}

/// ns per get over `keys`, one pass.
fn get_ns(map: &LockFreeMap, keys: &[u64]) -> f64 {
    let mut out = Vec::new();
    let started = Instant::now();
    for &k in keys {
        std::hint::black_box(map.get_into(&key(k), &mut out).expect("get"));
    }
    started.elapsed().as_nanos() as f64 / keys.len() as f64
}

/// ns per get of each of `sets` on each of `maps`, [`ROUNDS`] interleaved rounds.
fn interleaved(maps: [&LockFreeMap; 2], sets: [&Vec<u64>; 3]) -> [[Vec<f64>; 3]; 2] {
    let mut ns: [[Vec<f64>; 3]; 2] = Default::default();
    for _ in 0..ROUNDS {
        for (m, map) in maps.into_iter().enumerate() {
            for (s, keys) in sets.into_iter().enumerate() {
                ns[m][s].push(get_ns(map, keys));
            }
        }
    }
    ns
}

fn quartiles(mut xs: Vec<f64>) -> String {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    format!("{:.1} [{:.1}, {:.1}]", xs[n / 2], xs[n / 4], xs[3 * n / 4])
}

fn main() {
    let params = MapParams {
        capacity: CAPACITY,
        max_key_size: 16,
        max_value_size: 64,
        max_capacity: CAPACITY,
    };
    let value = [7u8; 64];
    let pid = std::process::id();
    let churned_loc = Location::Shm(format!("shmap-rh-churned-{pid}"));
    let fresh_loc = Location::Shm(format!("shmap-rh-fresh-{pid}"));
    let churned = LockFreeMap::create_in(&churned_loc, params).expect("create");
    for k in 0..KEYS {
        churned.insert(&key(k), &value).expect("insert");
    }
    let mut rng = SplitMix(7);
    for step in 0..CHURN {
        let k = key(rng.below(2 * KEYS as usize) as u64);
        if step % 2 == 0 {
            churned.insert(&k, &value).expect("insert");
        } else {
            churned.remove(&k).expect("remove");
        }
    }
    let fresh = LockFreeMap::create_in(&fresh_loc, params).expect("create");
    let (mut present, mut absent) = (Vec::new(), Vec::new());
    for k in 0..2 * KEYS {
        if churned.contains_key(&key(k)).expect("get") {
            fresh.insert(&key(k), &value).expect("insert");
            present.push(k);
        } else {
            absent.push(k);
        }
    }
    let mixed: Vec<u64> = (0..20_000)
        .map(|_| rng.below(KEYS as usize) as u64)
        .collect();
    println!(
        "{} present keys and {} absent of {}, {CAPACITY} buckets, after {CHURN} churn steps\n",
        present.len(),
        absent.len(),
        2 * KEYS
    );
    println!("| table | probe, present | probe, absent (to EMPTY) | tombstones | get ns, present | get ns, absent | get ns, half present (read-heavy's) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let row = |name: &str, map: &LockFreeMap, [hit, miss, half]: [Vec<f64>; 3]| {
        let (p, a, to_empty, tombstones) = probes(map, &absent);
        println!(
            "| {name} | {p:.2} | {a:.2} ({to_empty:.2}) | {tombstones} ({:.0}%) | {} | {} | {} |",
            100.0 * tombstones as f64 / CAPACITY as f64,
            quartiles(hit),
            quartiles(miss),
            quartiles(half)
        );
    };
    let sets = [&present, &absent, &mixed];
    let [fresh_ns, churned_ns] = interleaved([&fresh, &churned], sets);
    row("fresh", &fresh, fresh_ns);
    row("churned", &churned, churned_ns);
    // The same table right after a reclaim: the fewest tombstones churn leaves.
    let done = churned
        .reclaim_tombstones()
        .expect("reclaim")
        .expect("no writer");
    let [fresh_ns, reclaimed_ns] = interleaved([&fresh, &churned], sets);
    row("fresh, again", &fresh, fresh_ns);
    row(
        &format!(
            "churned, just reclaimed ({} freed, {} kept)",
            done.freed, done.kept
        ),
        &churned,
        reclaimed_ns,
    );
    churned.unlink().expect("unlink");
    fresh.unlink().expect("unlink");
}
