//! A map emptied by removes, one key at a time, gives its table's pages back to the kernel as
//! `clear()` does (`shmap::RawTable::watch_emptying`, `lifecycle/clear.rs`; issue 32 item 3):
//! the remove that empties it notices, however the removes were spread over handles, and no
//! remove before it does; readers meanwhile never see a torn or foreign value.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use shmap::{MapBackend, MapOps, MapParams, EMPTIED};
use shmap_backends::{Protocol, SharedMap};
use shmap_testkit::checked::{make, verify, SplitMix};
use shmap_testkit::{shm_bytes_held, shm_table_bytes};

use common::{reopen_clean, StopOnDrop, TempFileMap, TestName};

fn key(id: u64) -> Vec<u8> {
    format!("gone-key-{id:07}").into_bytes()
}

/// Times the map's table was emptied in place (by `clear()` or by a give-back).
fn times_emptied<P: Protocol>(map: &SharedMap<P>) -> u64 {
    map.tables().generation() / EMPTIED
}

/// One handle removes 100,000 entries in a shuffled order: with one left the table is kept
/// (and that entry reads), and the last remove gives it back. The table keeps its generation
/// and capacity, and fills again.
fn removing_every_entry_gives_the_memory_back<P: Protocol>(tag: &str) {
    const KEYS: u64 = 100_000;
    let name = TestName::new(tag);
    let params = MapParams::with_capacity(1024).without_size_limits();
    let map = SharedMap::<P>::create(name.as_str(), params).unwrap();
    for id in 0..KEYS {
        map.insert(&key(id), &make(id, 1, 20 + id as usize % 100))
            .unwrap();
    }
    let (generation, capacity) = (map.generation(), map.params().capacity);
    assert!(capacity >= shmap::GIVE_BACK_MIN_CAPACITY, "{capacity}");
    let full = shm_bytes_held(name.as_str());
    let mut order: Vec<u64> = (0..KEYS).collect();
    let mut rng = SplitMix(7);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let (last, rest) = order.split_last().unwrap();
    for &id in rest {
        assert!(map.remove(&key(id)).unwrap(), "key {id}");
    }
    assert_eq!(times_emptied(&map), 0, "given back with an entry left");
    assert_eq!(
        verify(*last, &map.get(&key(*last)).unwrap().unwrap()),
        Ok(1)
    );
    let one_left = shm_bytes_held(name.as_str());
    assert!(map.remove(&key(*last)).unwrap());
    let emptied = shm_bytes_held(name.as_str());
    eprintln!(
        "{tag}: {KEYS} entries held {} KiB; with one left {} KiB; none {} KiB",
        full / 1024,
        one_left / 1024,
        emptied / 1024
    );
    assert_eq!(times_emptied(&map), 1);
    assert!(
        emptied * 20 <= full,
        "emptied by removes the map holds {emptied} bytes, full {full}"
    );
    assert_eq!(
        (map.generation(), map.params().capacity),
        (generation, capacity)
    );
    assert_eq!(map.len().unwrap(), 0);
    for id in (0..KEYS).step_by(11) {
        assert_eq!(map.get(&key(id)).unwrap(), None, "key {id}");
    }
    for id in 0..KEYS / 10 {
        map.insert(&key(id), &make(id, 2, 30)).unwrap();
    }
    for id in 0..KEYS / 10 {
        assert_eq!(verify(id, &map.get(&key(id)).unwrap().unwrap()), Ok(2));
    }
    assert_eq!(map.len().unwrap(), (KEYS / 10) as usize);
}

/// Four handles, each with its own records, remove interleaved quarters, in turn and then at
/// once: the count is a sum over their records, and the remove that empties the map still
/// notices. Each handle removes 63 more than a multiple of the sample, so its last count
/// comes 63 removes before its end, with about 4 * 63 entries left: the watch must turn to
/// counting every remove by then (`near` grows with the records), or no one counts at 0.
fn removers_on_many_handles_notice_the_map_empty<P: Protocol>(tag: &str) {
    const HANDLES: u64 = 4;
    const KEYS: u64 = HANDLES * (shmap::EMPTYING_SAMPLE as u64 * 200 + 63);
    let name = TestName::new(tag);
    let params = MapParams::with_capacity(1024).without_size_limits();
    let map = SharedMap::<P>::create(name.as_str(), params).unwrap();
    let handles: Vec<_> = (0..HANDLES)
        .map(|_| SharedMap::<P>::attach(name.as_str()).unwrap())
        .collect();
    for round in 0..4 {
        for id in 0..KEYS {
            map.insert(&key(id), &make(id, round, 40)).unwrap();
        }
        let full = shm_table_bytes(name.as_str());
        if round % 2 == 0 {
            for id in 0..KEYS {
                let handle = &handles[(id % HANDLES) as usize];
                assert!(handle.remove(&key(id)).unwrap(), "key {id}");
            }
        } else {
            std::thread::scope(|s| {
                for (h, handle) in handles.iter().enumerate() {
                    s.spawn(move || {
                        for id in (h as u64..KEYS).step_by(HANDLES as usize) {
                            assert!(handle.remove(&key(id)).unwrap(), "key {id}");
                        }
                    });
                }
            });
        }
        let emptied = shm_table_bytes(name.as_str());
        assert_eq!(times_emptied(&map), round + 1, "round {round}");
        // The table's pages, all of them: the heap's runs may keep the blocks the other live
        // handles' magazines hold (up to 16 KiB of blocks a class each), and the pages around.
        assert!(emptied <= 64 << 10, "round {round}: {emptied} of {full}");
        assert_eq!(map.len().unwrap(), 0);
    }
}

/// A writer fills the map and empties it by removes, round after round, while two readers
/// check every value they find: each round gives the table back once, and no read is torn
/// or of another key (the give-back moves the generation word on before it punches).
fn fill_and_empty_among_readers<P: Protocol>(tag: &str) {
    const KEYS: u64 = 6_000;
    const ROUNDS: u64 = 12;
    let name = TestName::new(tag);
    let params = MapParams::with_capacity(shmap::GIVE_BACK_MIN_CAPACITY).without_size_limits();
    let map = SharedMap::<P>::create(name.as_str(), params).unwrap();
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for r in 0..2 {
            let (stop, reads) = (&stop, &reads);
            let reader = SharedMap::<P>::attach(name.as_str()).unwrap();
            s.spawn(move || {
                let mut rng = SplitMix(r + 50);
                while !stop.load(Ordering::Relaxed) {
                    let id = rng.below(KEYS as usize) as u64;
                    if let Some(v) = reader.get(&key(id)).unwrap() {
                        verify(id, &v).unwrap();
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        let _stop = StopOnDrop(&stop); // a failed assertion below must stop the readers
        let mut rng = SplitMix(3);
        for round in 0..ROUNDS {
            for id in 0..KEYS {
                map.insert(&key(id), &make(id, round, 16 + rng.below(400)))
                    .unwrap();
            }
            for id in (0..KEYS).rev() {
                assert!(map.remove(&key(id)).unwrap());
            }
            assert_eq!(times_emptied(&map), round + 1, "round {round}");
        }
    });
    assert!(
        reads.load(Ordering::Relaxed) > 0,
        "no reader found an entry"
    );
    assert_eq!(map.generation(), 0);
}

/// A large table that churns a few keys (a queue) empties at nearly every remove, but is
/// given back only once per 1/16 of its slots newly taken: the passes are paid for.
fn a_queue_is_not_given_back_at_every_remove<P: Protocol>(tag: &str) {
    const OPS: u64 = 40_000;
    let name = TestName::new(tag);
    let capacity = shmap::GIVE_BACK_MIN_CAPACITY;
    let params = MapParams::with_capacity(capacity).without_size_limits();
    let map = SharedMap::<P>::create(name.as_str(), params).unwrap();
    for id in 0..OPS {
        map.insert(&key(id), &make(id, 0, 16)).unwrap();
        assert!(map.remove(&key(id)).unwrap());
    }
    let emptied = times_emptied(&map);
    let bound = OPS / (capacity as u64 / 16) + 1;
    eprintln!("{tag}: {OPS} inserts and removes of one key emptied the table {emptied} times");
    assert!(emptied <= bound, "{emptied} give-backs, bound {bound}");
}

/// A file-backed map emptied by removes and reopened: the first open finds it clean, and
/// what was written after survives.
fn an_emptied_file_map_reopens_clean<P: Protocol>(tag: &str) {
    let file = TempFileMap::new(&format!("gone-{tag}"));
    let params = MapParams::with_capacity(shmap::GIVE_BACK_MIN_CAPACITY).without_size_limits();
    {
        let map = SharedMap::<P>::create_in(&file.location, params).unwrap();
        for id in 0..8_000 {
            map.insert(&key(id), &make(id, 1, 200)).unwrap();
        }
        for id in 0..8_000 {
            map.remove(&key(id)).unwrap();
        }
        assert_eq!(times_emptied(&map), 1);
        for id in 0..100 {
            map.insert(&key(id), &make(id, 2, 40)).unwrap();
        }
    }
    let map = reopen_clean::<P>(&file.location, 100);
    for id in 0..100 {
        assert_eq!(verify(id, &map.get(&key(id)).unwrap().unwrap()), Ok(2));
    }
}

on_every_backend!(
    removing_every_entry_gives_the_memory_back,
    removers_on_many_handles_notice_the_map_empty,
    fill_and_empty_among_readers,
    a_queue_is_not_given_back_at_every_remove,
    an_emptied_file_map_reopens_clean,
);
