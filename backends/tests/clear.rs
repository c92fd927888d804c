//! `clear` (`lifecycle/clear.rs`, issue 32 item 3): every entry goes at once, the memory the
//! entries took goes back to the kernel (the table's pages as well as the heap's runs), the
//! table keeps its capacity and generation, and readers and writers that run meanwhile never
//! see a torn or foreign value, nor a key twice.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use shmap::{MapBackend, MapOps, MapParams};
use shmap_backends::{Protocol, SharedMap};
use shmap_testkit::checked::{make, verify, SplitMix};
use shmap_testkit::shm_bytes_held;

use common::{reopen_clean, StopOnDrop, TempFileMap, TestName};

fn key(id: u64) -> Vec<u8> {
    format!("clear-key-{id:06}").into_bytes()
}

fn empties_the_map_and_gives_its_memory_back<P: Protocol>(tag: &str) {
    const KEYS: u64 = 20_000;
    let name = TestName::new(tag);
    let params = MapParams::with_capacity(1024).without_size_limits();
    let map = SharedMap::<P>::create(name.as_str(), params).unwrap();
    for round in 0..2 {
        for id in 0..KEYS {
            map.insert(&key(id), &make(id, round, 100 + (id as usize % 200)))
                .unwrap();
        }
        let (generation, capacity) = (map.generation(), map.params().capacity);
        assert!(generation > 0, "the table never grew");
        let full = shm_bytes_held(name.as_str());
        assert_eq!(map.clear().unwrap(), KEYS as usize);
        let cleared = shm_bytes_held(name.as_str());
        eprintln!(
            "{tag}: {KEYS} entries held {} KiB; after clear() {} KiB",
            full / 1024,
            cleared / 1024
        );
        assert_eq!(map.len().unwrap(), 0);
        assert!(map.entries().unwrap().is_empty());
        for id in (0..KEYS).step_by(7) {
            assert_eq!(map.get(&key(id)).unwrap(), None, "key {id} after clear()");
        }
        // The table stays (its generation and capacity), its pages and the records' go.
        assert_eq!(
            (map.generation(), map.params().capacity),
            (generation, capacity)
        );
        assert!(
            cleared * 10 <= full,
            "after clear() the map holds {cleared} bytes, full {full}"
        );
    }
    // It fills again, and every value reads back.
    for id in 0..KEYS {
        map.insert(&key(id), &make(id, 9, 50)).unwrap();
    }
    assert_eq!(map.len().unwrap(), KEYS as usize);
    for id in 0..KEYS {
        assert_eq!(verify(id, &map.get(&key(id)).unwrap().unwrap()), Ok(9));
    }
    assert_eq!(map.clear().unwrap(), KEYS as usize);
    assert_eq!(map.clear().unwrap(), 0);
}

/// Clears over and over while two handles write keys with values of random sizes (each a
/// self-checking value, its round in it) and a third reads and checks every value it finds:
/// no read is torn or of another key, no write fails, and at the end the map's count is
/// exactly the keys a scan finds, each once, every one whole.
fn clears_among_writers_and_readers<P: Protocol>(tag: &str) {
    const KEYS: u64 = 2_000;
    const CLEARS: usize = 30;
    let name = TestName::new(tag);
    let params = MapParams::with_capacity(1024).without_size_limits();
    let map = SharedMap::<P>::create(name.as_str(), params).unwrap();
    let stop = AtomicBool::new(false);
    let (reads, writes) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        for w in 0..2u64 {
            let (stop, writes) = (&stop, &writes);
            let handle = SharedMap::<P>::attach(name.as_str()).unwrap();
            s.spawn(move || {
                let _stop = StopOnDrop(stop);
                let mut rng = SplitMix(w + 1);
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = rng.below(KEYS as usize) as u64;
                    round += 1;
                    handle
                        .insert(&key(id), &make(id, round, 16 + rng.below(3000)))
                        .unwrap();
                    if rng.below(8) == 0 {
                        handle.remove(&key(id)).unwrap();
                    }
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let (stop, reads) = (&stop, &reads);
        let reader = SharedMap::<P>::attach(name.as_str()).unwrap();
        s.spawn(move || {
            let _stop = StopOnDrop(stop);
            let mut rng = SplitMix(99);
            while !stop.load(Ordering::Relaxed) {
                let id = rng.below(KEYS as usize) as u64;
                if let Some(v) = reader.get(&key(id)).unwrap() {
                    verify(id, &v).unwrap();
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        });
        let _stop = StopOnDrop(stop);
        for _ in 0..CLEARS {
            std::thread::sleep(Duration::from_millis(5));
            map.clear().unwrap();
        }
        // The writers fill the map again before they stop.
        std::thread::sleep(Duration::from_millis(20));
    });
    let entries = map.entries().unwrap();
    let mut seen = HashSet::new();
    for (k, v) in &entries {
        assert!(seen.insert(k.clone()), "a key listed twice");
        let id: u64 = std::str::from_utf8(&k[10..]).unwrap().parse().unwrap();
        verify(id, v).unwrap();
    }
    assert_eq!(map.len().unwrap(), entries.len());
    eprintln!(
        "{tag}: {CLEARS} clears among {} writes and {} checked reads; {} entries left",
        writes.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
        entries.len()
    );
    assert!(writes.load(Ordering::Relaxed) > 0 && reads.load(Ordering::Relaxed) > 0);
}

/// A file-backed map cleared and reopened: the first open finds a clean, empty map (the
/// punched table reads as EMPTY buckets, the swept heap holds no record), and entries
/// written after the clear survive the reopen.
fn a_cleared_file_map_reopens_clean<P: Protocol>(tag: &str) {
    let file = TempFileMap::new(&format!("clear-{tag}"));
    let params = MapParams::with_capacity(1024).without_size_limits();
    {
        let map = SharedMap::<P>::create_in(&file.location, params).unwrap();
        for id in 0..5_000 {
            map.insert(&key(id), &make(id, 1, 300)).unwrap();
        }
        assert_eq!(map.clear().unwrap(), 5_000);
        for id in 0..100 {
            map.insert(&key(id), &make(id, 2, 40)).unwrap();
        }
    }
    let map = reopen_clean::<P>(&file.location, 100);
    assert_eq!(map.len().unwrap(), 100);
    for id in 0..100 {
        assert_eq!(verify(id, &map.get(&key(id)).unwrap().unwrap()), Ok(2));
    }
}

/// A slot busy in a free state (a claim a dead writer left, which its repair could not
/// settle, and whose record only its journal names) would have that record freed by the
/// clear's sweep and then by its repair: the clear removes the entries one by one instead,
/// and leaves that slot as it found it.
#[test]
fn a_claim_left_unsettled_makes_clear_remove_one_by_one() {
    use shmap::{Meta, SlotState};
    use shmap_backends::LockFreeMap;

    let name = TestName::new("clear-unsettled");
    let map = LockFreeMap::create(name.as_str(), MapParams::with_capacity(1024)).unwrap();
    for id in 0..100 {
        map.insert(&key(id), &make(id, 1, 40)).unwrap();
    }
    let table = map.raw_table().unwrap();
    let i = (0..table.capacity())
        .find(|&i| Meta(table.meta(i).load(Ordering::Relaxed)).state() == Some(SlotState::Empty))
        .unwrap();
    let busy = Meta(table.meta(i).load(Ordering::Relaxed)).busy(12345);
    table.meta(i).store(busy.0, Ordering::Relaxed);
    assert_eq!(map.clear().unwrap(), 100);
    assert_eq!(map.len().unwrap(), 0);
    assert!((0..100).all(|id| map.get(&key(id)).unwrap().is_none()));
    assert_eq!(
        table.meta(i).load(Ordering::Relaxed),
        busy.0,
        "the claim's slot changed"
    );
    assert_eq!(map.generation(), 0);
}

on_every_backend!(
    empties_the_map_and_gives_its_memory_back,
    clears_among_writers_and_readers,
    a_cleared_file_map_reopens_clean,
);
