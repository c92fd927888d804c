//! What tombstones cost lookups today (issue 13's measurement, the baseline for the rebuild
//! designed in `docs/growth.md`): a lock-free map churned for 50x its capacity (remove a random
//! present key, insert a new one) against a map freshly built with the same keys, at the same
//! load. Per table: the mean and longest probe (buckets visited to reach a present key: its
//! distance from its home bucket, plus one), the tombstones and EMPTY slots left, gets of every
//! present key and of 2,000 absent ones in one process (7 interleaved rounds, median ns), and
//! what one churn step (a remove and an insert of a new key) cost on average while churning.
//!
//! An insert claims the first free slot of its probe, EMPTY or TOMBSTONE; nothing returns to
//! EMPTY. So under churn the EMPTY slots are used up one by one, and a probe for an absent key,
//! which ends only at an EMPTY slot, grows towards the whole table.
//!
//! `cargo run --release -p shmap-benches --example tombstone_tax`

use std::sync::atomic::Ordering;
use std::time::Instant;

use shmap::{Location, MapBackend, MapOps, MapParams, Meta, SlotState};
use shmap_backends::LockFreeMap;
use shmap_testkit::checked::SplitMix;

const CAPACITY: usize = 4_096;
const ROUNDS: usize = 7;

fn key(i: u64) -> [u8; 16] {
    let mut k = *b"key-............";
    k[8..].copy_from_slice(&i.to_le_bytes());
    k
}

/// (mean probe, longest probe, tombstones, empty slots) of a quiescent map.
fn probes(map: &LockFreeMap) -> (f64, usize, usize, usize) {
    let t = map.raw_table().expect("current table");
    let (mut sum, mut longest, mut full, mut tombstones, mut empty) = (0, 0, 0, 0, 0);
    let mut k = Vec::new();
    for i in 0..t.capacity() {
        // Relaxed: nothing else runs; a diagnostic scan.
        match Meta(t.meta(i).load(Ordering::Relaxed)).state() {
            Some(SlotState::Full) => {
                t.read_key(i, &mut k);
                let home = t.hash(&k).home;
                let probe = (i + t.capacity() - home) % t.capacity() + 1;
                sum += probe;
                longest = longest.max(probe);
                full += 1;
            }
            Some(SlotState::Tombstone) => tombstones += 1,
            _ => empty += 1,
        }
    }
    (sum as f64 / full as f64, longest, tombstones, empty)
}

/// ns per get over `keys`, one pass; every key must be `present` or every one absent.
fn get_ns(map: &LockFreeMap, keys: &[u64], present: bool) -> f64 {
    let mut out = Vec::new();
    let started = Instant::now();
    for &k in keys {
        assert_eq!(map.get_into(&key(k), &mut out).expect("get"), present);
    }
    started.elapsed().as_nanos() as f64 / keys.len() as f64
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
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
    println!(
        "| load | table | mean probe | longest probe | tombstones | EMPTY slots | get ns, present \
         | get ns, absent | remove + insert ns |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for load in [0.375, 0.5, 0.625, 0.75] {
        let n = (CAPACITY as f64 * load) as u64;
        let churned_loc = Location::Shm(format!("shmap-tax-churned-{pid}"));
        let fresh_loc = Location::Shm(format!("shmap-tax-fresh-{pid}"));
        let churned = LockFreeMap::create_in(&churned_loc, params).expect("create");
        let mut present: Vec<u64> = (0..n).collect();
        for &k in &present {
            churned.insert(&key(k), &value).expect("insert");
        }
        let mut rng = SplitMix(42);
        let mut next = n;
        let started = Instant::now();
        for _ in 0..50 * CAPACITY {
            let at = rng.below(present.len());
            assert!(churned.remove(&key(present[at])).expect("remove"));
            churned.insert(&key(next), &value).expect("insert");
            present[at] = next;
            next += 1;
        }
        let churn_ns = started.elapsed().as_nanos() as f64 / (50 * CAPACITY) as f64;
        let fresh = LockFreeMap::create_in(&fresh_loc, params).expect("create");
        for &k in &present {
            fresh.insert(&key(k), &value).expect("insert");
        }
        let absent: Vec<u64> = (next..next + 2_000).collect();
        let mut ns = [[vec![], vec![]], [vec![], vec![]]]; // [fresh, churned] x [present, absent]
        for _ in 0..ROUNDS {
            for (m, map) in [&fresh, &churned].into_iter().enumerate() {
                ns[m][0].push(get_ns(map, &present, true));
                ns[m][1].push(get_ns(map, &absent, false));
            }
        }
        let [ns_fresh, ns_churned] = ns;
        let rows = [
            ("fresh", &fresh, ns_fresh, None),
            ("churned 50x", &churned, ns_churned, Some(churn_ns)),
        ];
        for (name, map, [hit, miss], churn) in rows {
            let (mean, longest, tombstones, empty) = probes(map);
            let churn = churn.map_or("-".to_owned(), |c| format!("{c:.0}"));
            println!(
                "| {load} | {name} | {mean:.2} | {longest} | {tombstones} | {empty} | {:.1} | {:.1} | {churn} |",
                median(hit),
                median(miss)
            );
        }
        churned.unlink().expect("unlink");
        fresh.unlink().expect("unlink");
    }
}
