//! Memory after churn, and where it lies (issue 32, item 3): Python's
//! `python/bench/churn_memory.py` (log-uniform values from 8 B to 16 KiB, 20x the live set in
//! writes: new keys in and present ones out, and updates that change an entry's size) in
//! Rust, with two handles taking turns, then the map against a fresh one holding the same
//! entries: as churn left it, after a trim, and after a compaction; with the heap's census of
//! each (`Heap::census`: written pages of runs of blocks up to 2 KiB and over, and what was
//! reserved and never written).
//!
//! `cargo run --release -p shmap-benches --example churn_census -- [N]` (default 3,000 keys).
//! Deterministic: a seeded sequence, one thread.

use shmap::heap::Census;
use shmap::{MapBackend, MapOps, MapParams};
use shmap_backends::LockFreeMap;
use shmap_benches::shm_bytes::shm_bytes;

/// KiB of written pages in runs of blocks up to 2 KiB and over, and their runs.
fn split(c: &Census) -> String {
    let part = |small: bool| {
        c.classes
            .iter()
            .filter(|(b, _)| (*b <= 2048) == small)
            .fold((0, 0), |(kib, runs), (_, s)| {
                (kib + s.resident / 1024, runs + s.runs)
            })
    };
    let ((sk, sr), (lk, lr)) = (part(true), part(false));
    format!(
        "blocks up to 2 KiB {sk} KiB ({sr} runs), over {lk} KiB ({lr} runs), free extents {} \
         KiB, reserved and never written {} KiB",
        c.free_extents.resident / 1024,
        c.unwritten / 1024
    )
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(3000, |a| a.parse().expect("N"));
    let mut x: u64 = 7;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (lo, hi) = (8f64.ln(), 16384f64.ln());
    let size = |r: u64| (lo + (r % 1_000_000) as f64 / 1e6 * (hi - lo)).exp() as usize;
    let name = format!("churn-census-{}", std::process::id());
    let params = MapParams::default().without_size_limits();
    let map = LockFreeMap::create(&name, params).expect("create");
    let other = LockFreeMap::attach(&name).expect("attach");
    let mut present: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    for k in &present {
        map.insert(k.as_bytes(), &vec![b'x'; size(rnd())])
            .expect("insert");
    }
    // As churn_memory.py: each pass makes about two writes, 20x the live set in all.
    let mut next = n;
    for pass in 0..10 * n {
        let h = if pass % 2 == 0 { &map } else { &other };
        if rnd() % 10 < 4 {
            let k = format!("k{next}");
            next += 1;
            h.insert(k.as_bytes(), &vec![b'x'; size(rnd())])
                .expect("insert");
            let i = rnd() as usize % present.len();
            h.remove(present[i].as_bytes()).expect("remove");
            present[i] = k;
        } else {
            let i = rnd() as usize % present.len();
            h.insert(present[i].as_bytes(), &vec![b'x'; size(rnd())])
                .expect("update");
        }
    }
    drop(other);
    let churned = shm_bytes(&name);
    let fresh_name = format!("{name}-fresh");
    let fresh = LockFreeMap::create(&fresh_name, params).expect("create");
    let mut v = Vec::new();
    for k in &present {
        assert!(
            map.get_into(k.as_bytes(), &mut v).expect("get"),
            "{k} is missing"
        );
        fresh.insert(k.as_bytes(), &v).expect("insert");
    }
    let base = shm_bytes(&fresh_name) as f64;
    let heap_of = |m: &LockFreeMap| {
        m.raw_table()
            .expect("table")
            .heap()
            .census()
            .expect("census")
    };
    println!("{n} entries, {} writes", 20 * n);
    println!(
        "fresh map: {:.0} KiB; {}",
        base / 1024.0,
        split(&heap_of(&fresh))
    );
    println!(
        "after churn: {:.3}x; {}",
        churned as f64 / base,
        split(&heap_of(&map))
    );
    map.trim().expect("trim");
    println!(
        "after a trim: {:.3}x; {}",
        shm_bytes(&name) as f64 / base,
        split(&heap_of(&map))
    );
    let c = map.compact_heap().expect("compaction").expect("it waits");
    println!(
        "after a compaction ({} runs, {} records moved): {:.3}x; {}",
        c.runs,
        c.moved,
        shm_bytes(&name) as f64 / base,
        split(&heap_of(&map))
    );
    map.unlink().expect("unlink");
    fresh.unlink().expect("unlink");
}
