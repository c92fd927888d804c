//! The heap's sweep from the table (`lifecycle/sweep.rs`, issue 32 item 6): with other
//! handles open and writing, it frees exactly the blocks nothing names (what a writer killed
//! between the heap's handing it a block and its journal's naming it leaves), and never a live
//! record or a block a live handle's magazine holds, while readers go on and check every value.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use shmap::{MapBackend, MapOps, MapParams};
use shmap_backends::{Protocol, SharedMap};
use shmap_testkit::checked::{make, verify, SplitMix};

use common::{StopOnDrop, TestName};

const KEYS: u64 = 500;

fn key(id: u64) -> Vec<u8> {
    format!("sweep-key-{id:06}").into_bytes()
}

/// A block the heap handed out that nothing names: what a killed writer leaves.
fn leak<P: Protocol>(map: &SharedMap<P>, bytes: usize) {
    map.raw_table().unwrap().heap().alloc(bytes).unwrap();
}

fn frees_what_nothing_names<P: Protocol>(tag: &str) {
    let name = TestName::new(tag);
    let params = MapParams::with_capacity(1024).without_size_limits();
    let map = SharedMap::<P>::create(name.as_str(), params).unwrap();
    let mut rng = SplitMix(7);
    for id in 0..KEYS {
        map.insert(&key(id), &make(id, 0, 16 + rng.below(3000)))
            .unwrap();
    }
    for bytes in [24, 100, 2000, 40_000] {
        leak(&map, bytes);
    }
    let done = map.sweep_heap().unwrap().expect("it waits");
    assert_eq!((done.live, done.leaked), (KEYS as usize, 4), "{done:?}");
    for id in 0..KEYS {
        verify(id, &map.get(&key(id)).unwrap().expect("present")).unwrap();
    }
    // Nothing is left to find, and the map writes on.
    let again = map.sweep_heap().unwrap().unwrap();
    assert_eq!(again.leaked, 0, "{again:?}");
    for id in 0..KEYS {
        map.insert(&key(id), &make(id, 1, 16 + rng.below(3000)))
            .unwrap();
    }
    for id in 0..KEYS {
        assert_eq!(verify(id, &map.get(&key(id)).unwrap().unwrap()), Ok(1));
    }
}

/// Sweeps while two other handles update random keys with values of random sizes (each has
/// a magazine area of its own) and a third reads and checks every value: each sweep finds
/// exactly the one block leaked before it (unless a writer's compaction swept first), no
/// reader sees a torn or foreign value, and no write fails (a block freed twice, or handed
/// out while named, would show as one or the other).
fn sweeps_among_writers_and_readers<P: Protocol>(tag: &str) {
    type M<P> = SharedMap<P>;
    let name = TestName::new(tag);
    let params = MapParams::with_capacity(2048).without_size_limits();
    let map = M::<P>::create(name.as_str(), params).unwrap();
    let sweep = |m: &M<P>| m.sweep_heap().unwrap().expect("it waits");
    for id in 0..KEYS {
        map.insert(&key(id), &make(id, 0, 16)).unwrap();
    }
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    std::thread::scope(|s| {
        // Whoever fails stops the others (the scope waits for every thread).
        let _stop = StopOnDrop(&stop);
        for w in 0..2u64 {
            let (stop, name) = (&stop, name.as_str());
            s.spawn(move || {
                let _stop = StopOnDrop(stop);
                let mine = M::<P>::attach(name).unwrap();
                let mut rng = SplitMix(w + 1);
                let mut stamp = 1 + (w << 40);
                while !stop.load(Ordering::Relaxed) {
                    let id = rng.below(KEYS as usize) as u64;
                    let shift = rng.below(4);
                    let len = 16 + rng.below(2048 << shift);
                    mine.insert(&key(id), &make(id, stamp, len)).unwrap();
                    stamp += 1;
                }
            });
        }
        {
            let (stop, reads, name) = (&stop, &reads, name.as_str());
            s.spawn(move || {
                let _stop = StopOnDrop(stop);
                let mine = M::<P>::attach(name).unwrap();
                let mut rng = SplitMix(99);
                while !stop.load(Ordering::Relaxed) {
                    let id = rng.below(KEYS as usize) as u64;
                    let v = mine.get(&key(id)).unwrap().expect("a key is never missing");
                    verify(id, &v).unwrap();
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let heap = map.raw_table().unwrap().heap().clone();
        for round in 0..40 {
            // A writer's compaction (which sweeps too) may find the block first.
            let compactions = heap.compactions();
            leak(&map, 700);
            let done = sweep(&map);
            let by_compaction = done.leaked == 0 && heap.compactions() > compactions;
            assert!(done.leaked == 1 || by_compaction, "round {round}: {done:?}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    assert!(reads.load(Ordering::Relaxed) > 0);
    for id in 0..KEYS {
        verify(id, &map.get(&key(id)).unwrap().unwrap()).unwrap();
    }
    assert_eq!(sweep(&map).leaked, 0);
}

/// Compaction (`heap/compact.rs`): as nine entries in ten of many runs are removed, the trims
/// the frees make find the runs sparse and ask for a compaction, and the next write makes it,
/// moving the records of the sparse runs into fuller ones while a reader checks every value
/// left; the emptied runs go back to the kernel, so the heap ends near what a fresh map with
/// the same entries holds.
fn compaction_empties_sparse_runs<P: Protocol>(tag: &str) {
    const MANY: u64 = 20_000;
    let name = TestName::new(tag);
    let params = MapParams::with_capacity(1 << 15).without_size_limits();
    let map = SharedMap::<P>::create(name.as_str(), params).unwrap();
    let mut rng = SplitMix(11);
    let lens: Vec<usize> = (0..MANY).map(|_| 100 + rng.below(200)).collect();
    for id in 0..MANY {
        map.insert(&key(id), &make(id, 0, lens[id as usize]))
            .unwrap();
    }
    let heap = map.raw_table().unwrap().heap().clone();
    let full = heap.resident_bytes().unwrap();
    let kept: Vec<u64> = (0..MANY).filter(|_| rng.below(10) == 0).collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let (stop, kept, name) = (&stop, &kept, name.as_str());
        let reader = s.spawn(move || {
            let mine = SharedMap::<P>::attach(name).unwrap();
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) || reads == 0 {
                for &id in kept.iter().step_by(7) {
                    let v = mine.get(&key(id)).unwrap().expect("a key is never missing");
                    verify(id, &v).unwrap();
                    reads += 1;
                }
            }
            reads
        });
        // Nine in ten go, at random: every run keeps a few records.
        for id in (0..MANY).filter(|id| kept.binary_search(id).is_err()) {
            assert!(map.remove(&key(id)).unwrap());
        }
        // The last trim's request, if any, is made by the next write.
        map.trim().unwrap();
        map.insert(&key(kept[0]), &make(kept[0], 0, lens[kept[0] as usize]))
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    });
    assert!(heap.compactions() > 0, "no compaction ran");
    map.trim().unwrap();
    let after = heap.resident_bytes().unwrap();
    for &id in &kept {
        verify(id, &map.get(&key(id)).unwrap().unwrap()).unwrap();
    }
    assert_eq!(map.len().unwrap(), kept.len());
    // A fresh map with the same entries.
    let fresh_name = TestName::new(&format!("{tag}-fresh"));
    let fresh = SharedMap::<P>::create(fresh_name.as_str(), params).unwrap();
    for &id in &kept {
        fresh
            .insert(&key(id), &make(id, 0, lens[id as usize]))
            .unwrap();
    }
    let fresh_heap = fresh.raw_table().unwrap().heap().resident_bytes().unwrap();
    eprintln!(
        "{tag}: the heap held {full} bytes full, {after} with a tenth left after {} \
         compactions; a fresh map's {fresh_heap}",
        heap.compactions()
    );
    assert!(
        after * 10 <= fresh_heap * 13,
        "{after} against {fresh_heap}"
    );
    // Another compaction finds at most a straggler, and nothing leaked but the blocks it
    // moved out of.
    let again = map.compact_heap().unwrap().unwrap();
    assert_eq!(again.swept.leaked, again.moved, "{again:?}");
    for &id in &kept {
        verify(id, &map.get(&key(id)).unwrap().unwrap()).unwrap();
    }
}

on_every_backend!(
    frees_what_nothing_names,
    sweeps_among_writers_and_readers,
    compaction_empties_sparse_runs,
);
