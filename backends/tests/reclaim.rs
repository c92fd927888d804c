//! Returning tombstones to EMPTY (`backends/src/lifecycle/reclaim.rs`): under churn the table keeps
//! EMPTY slots, so lookups of absent keys and inserts of new keys stay short, and every key is
//! still where it should be. (That readers of other processes never miss a key while it runs
//! is `multiprocess.rs`'s `no_torn_or_missing_reads`, whose churners reclaim many times.)

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmap::{Location, MapBackend, MapOps, MapParams, Meta, SlotState};
use shmap_backends::{Protocol, SharedMap};

use common::TestName;

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:010}").into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    i.to_le_bytes().repeat(3)
}

/// The mean probe of a miss, over every home bucket: the slots up to and including the next
/// EMPTY one (the whole table when there is none).
/// A map of 1,024 buckets that cannot grow (keys up to 32 bytes, values up to 32), with its
/// name (unlinked even if the test fails).
fn fixed_table<P: Protocol>(tag: &str) -> (TestName, SharedMap<P>) {
    fixed_table_of(tag, 1024)
}

/// A map of `capacity` buckets that cannot grow, as [`fixed_table`].
fn fixed_table_of<P: Protocol>(tag: &str, capacity: usize) -> (TestName, SharedMap<P>) {
    let name = TestName::new(tag);
    let params = MapParams {
        capacity,
        max_key_size: 32,
        max_value_size: 32,
        max_capacity: capacity,
    };
    let map = SharedMap::<P>::create_in(&Location::Shm(name.as_str().to_owned()), params);
    (name, map.unwrap())
}

/// Reclaims of tombstones the map's current table has had.
fn reclaims_of<P: Protocol>(map: &SharedMap<P>) -> u64 {
    let t = map.raw_table().unwrap();
    t.segment().header().reclaims().load(Ordering::Relaxed)
}

fn mean_miss_probe<P: Protocol>(map: &SharedMap<P>) -> f64 {
    let t = map.raw_table().expect("current table");
    let cap = t.capacity();
    // Relaxed: a quiescent map.
    let empty: Vec<bool> = (0..cap)
        .map(|i| Meta(t.meta(i).load(Ordering::Relaxed)).state() == Some(SlotState::Empty))
        .collect();
    let total: usize = (0..cap)
        .map(|home| {
            (0..cap)
                .find(|d| empty[(home + d) % cap])
                .map_or(cap, |d| d + 1)
        })
        .sum();
    total as f64 / cap as f64
}

/// 50x capacity of churn at load 5/8: without reclaims every EMPTY slot is used up and a miss
/// probes the whole table; with them, misses stay short and every key is right. (At load 3/4
/// the tombstones left lie mostly on present keys' probes: see `docs/growth.md`.)
fn churn_keeps_empty_slots<P: Protocol>(tag: &str) {
    let (_name, map) = fixed_table::<P>(&format!("reclaim-{tag}"));
    let params = map.initial_params();
    let mut present: Vec<u64> = (0..640).collect();
    for &k in &present {
        map.insert(&key(k), &value(k)).unwrap();
    }
    let mut next = present.len() as u64;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..50 * params.capacity {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = (x % present.len() as u64) as usize;
        assert!(map.remove(&key(present[at])).unwrap());
        map.insert(&key(next), &value(next)).unwrap();
        present[at] = next;
        next += 1;
    }
    let reclaims = reclaims_of(&map);
    let miss = mean_miss_probe(&map);
    assert!(reclaims > 0, "no reclaim ran");
    assert!(
        miss < 64.0, // without reclaims: 1024, the whole table
        "a miss probes {miss:.1} slots on average after {reclaims} reclaims"
    );
    assert_eq!(map.len().unwrap(), present.len());
    for &k in &present {
        assert_eq!(map.get(&key(k)).unwrap(), Some(value(k)), "key {k}");
    }
    for k in next..next + 1000 {
        assert_eq!(map.get(&key(k)).unwrap(), None);
    }
    // An explicit reclaim on a quiet map runs and changes no entry.
    let done = map
        .reclaim_tombstones()
        .unwrap()
        .expect("nobody holds a lock");
    assert!(!done.aborted);
    assert_eq!(map.len().unwrap(), present.len());
    map.unlink().unwrap();
}

/// A live writer that keeps its key's lock (stopped, say) makes a reclaim give up at once,
/// holding nothing: other writers are not held up behind it.
fn a_held_lock_makes_a_reclaim_give_up<P: Protocol>(tag: &str) {
    let name = TestName::new(&format!("reclaim-held-{tag}")); // unlinked even if the test fails
    let loc = Location::Shm(name.as_str().to_owned());
    let map = SharedMap::<P>::create_in(&loc, MapParams::default()).unwrap();
    let t = map.raw_table().expect("current table");
    let held = map
        .protocol()
        .lock_key(map.tables(), &t.hash(b"held"))
        .unwrap();
    let started = Instant::now();
    assert!(map.reclaim_tombstones().unwrap().is_none());
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    drop(held);
    map.insert(b"other", b"v").unwrap(); // nothing was left held
    assert!(map.reclaim_tombstones().unwrap().is_some());
    map.unlink().unwrap();
}

#[test]
fn lockfree_churn_keeps_empty_slots() {
    churn_keeps_empty_slots::<shmap_backends::Striped<shmap_backends::Seqlock>>("lockfree");
}

#[test]
fn spinlock_churn_keeps_empty_slots() {
    churn_keeps_empty_slots::<shmap_backends::Striped<shmap_backends::SlotLocks>>("spinlock");
}

#[test]
fn mutex_churn_keeps_empty_slots() {
    churn_keeps_empty_slots::<shmap_backends::GlobalMutex>("mutex");
}

#[test]
fn lockfree_a_held_lock_makes_a_reclaim_give_up() {
    a_held_lock_makes_a_reclaim_give_up::<shmap_backends::Striped<shmap_backends::Seqlock>>(
        "lockfree",
    );
}

#[test]
fn spinlock_a_held_lock_makes_a_reclaim_give_up() {
    a_held_lock_makes_a_reclaim_give_up::<shmap_backends::Striped<shmap_backends::SlotLocks>>(
        "spinlock",
    );
}

/// A reclaim of a table much larger than one hold (`CHUNK`, 4,096 slots) releases the writers
/// between runs of slots, so writers insert and remove between its holds, filling the EMPTY
/// slot a hold ended at, or the one the next run starts after. Readers of keys that sit behind
/// tombstones never miss one, in any of the rounds; the last reclaim leaves the map whole.
fn a_reclaim_in_many_holds_never_hides_a_key<P: Protocol + 'static>(tag: &str) {
    let name = TestName::new(&format!("reclaim-chunks-{tag}"));
    let loc = Location::Shm(name.as_str().to_owned());
    let params = MapParams {
        capacity: 16_384,
        max_key_size: 16,
        max_value_size: 32,
        max_capacity: 16_384,
    };
    let map = SharedMap::<P>::create_in(&loc, params).unwrap();
    // Stable keys behind fillers that are then removed: tombstones on their probes.
    let stable: Vec<u64> = (0..3000).map(|i| 1_000_000 + i).collect();
    for (n, &k) in stable.iter().enumerate() {
        for f in 0..3 {
            map.insert(&key(10_000_000 + 3 * n as u64 + f), b"filler")
                .unwrap();
        }
        map.insert(&key(k), &value(k)).unwrap();
    }
    for n in 0..stable.len() as u64 {
        for f in 0..3 {
            assert!(map.remove(&key(10_000_000 + 3 * n + f)).unwrap());
        }
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (mut freed, mut rounds) = (0, 0);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (map, stable, stop) = (&map, &stable, &stop);
                s.spawn(move || {
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for &k in stable.iter().skip(r).step_by(2) {
                            assert_eq!(map.get(&key(k)).unwrap(), Some(value(k)), "key {k}");
                            reads += 1;
                        }
                    }
                    reads
                })
            })
            .collect();
        let churner = {
            let (map, stop) = (&map, &stop);
            s.spawn(move || {
                let mut n = 20_000_000u64;
                while !stop.load(Ordering::Relaxed) {
                    for k in n..n + 64 {
                        // `try_insert`, which never reclaims itself: an `insert` of a new key
                        // reclaimed the fillers' tombstones when it found them due, and then
                        // waited for its stripe while this thread's reclaims held every stripe
                        // in turn, so that this thread's reclaims found nothing to free (CI,
                        // once: "nothing was freed in 412 reclaims").
                        while map.try_insert(&key(k), &value(k)).unwrap().is_none() {
                            std::thread::yield_now();
                        }
                    }
                    for k in n..n + 64 {
                        assert!(map.remove(&key(k)).unwrap());
                    }
                    n += 64;
                }
            })
        };
        let started = Instant::now();
        while rounds < 20 || started.elapsed() < Duration::from_millis(300) {
            if let Some(done) = map.reclaim_tombstones().unwrap() {
                assert!(!done.aborted);
                freed += done.freed;
                rounds += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        churner.join().unwrap();
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    });
    assert!(freed > 0, "nothing was freed in {rounds} reclaims");
    assert_eq!(map.len().unwrap(), stable.len());
    for &k in &stable {
        assert_eq!(map.get(&key(k)).unwrap(), Some(value(k)), "key {k}");
    }
    map.unlink().unwrap();
}

#[test]
fn lockfree_a_reclaim_in_many_holds_never_hides_a_key() {
    a_reclaim_in_many_holds_never_hides_a_key::<shmap_backends::Striped<shmap_backends::Seqlock>>(
        "lockfree",
    );
}

#[test]
fn spinlock_a_reclaim_in_many_holds_never_hides_a_key() {
    a_reclaim_in_many_holds_never_hides_a_key::<shmap_backends::Striped<shmap_backends::SlotLocks>>(
        "spinlock",
    );
}

/// A table with no EMPTY slot left is one circular run, reclaimed in one hold; probes that
/// wrap past the last slot must be marked too, or the keys behind them would be lost.
fn a_table_without_empty_slots_is_reclaimed_whole<P: Protocol>(tag: &str) {
    let name = TestName::new(&format!("reclaim-whole-{tag}"));
    let loc = Location::Shm(name.as_str().to_owned());
    let params = MapParams {
        capacity: 64,
        max_key_size: 16,
        max_value_size: 32,
        max_capacity: 64,
    };
    let map = SharedMap::<P>::create_in(&loc, params).unwrap();
    // Two keys whose home is the last slot go in first: the second wraps to slot 0. Then
    // fill every slot; keep the wrapped key and every other key, remove the rest.
    let t = map.raw_table().expect("current table");
    let last: Vec<u64> = (1000..)
        .filter(|&k| t.hash(&key(k)).home == 63)
        .take(2)
        .collect();
    let all: Vec<u64> = last.iter().copied().chain(0..62).collect();
    for &k in &all {
        map.insert(&key(k), &value(k)).unwrap();
    }
    let kept: Vec<u64> = all
        .iter()
        .copied()
        .enumerate()
        .filter(|&(n, _)| n % 2 == 1)
        .map(|(_, k)| k)
        .collect();
    assert!(kept.contains(&last[1]), "the wrapped key is kept");
    // Removes in a table marked sparse leave their tombstones where they are (a dense one's
    // shift entries back): the wrapped key's probe must keep one for this test.
    t.note_live(0);
    for k in all.iter().filter(|k| !kept.contains(k)) {
        assert!(map.remove(&key(*k)).unwrap());
    }
    let empty = |i| Meta(t.meta(i).load(Ordering::Relaxed)).state() == Some(SlotState::Empty);
    assert!(
        !(0..64).any(empty),
        "the test needs a table without EMPTY slots"
    );
    let done = map
        .reclaim_tombstones()
        .unwrap()
        .expect("nobody holds a lock");
    assert!(!done.aborted && done.kept > 0, "{done:?}");
    for &k in &kept {
        assert_eq!(map.get(&key(k)).unwrap(), Some(value(k)), "key {k}");
    }
    assert_eq!(map.len().unwrap(), kept.len());
    map.unlink().unwrap();
}

#[test]
fn lockfree_a_table_without_empty_slots_is_reclaimed_whole() {
    a_table_without_empty_slots_is_reclaimed_whole::<
        shmap_backends::Striped<shmap_backends::Seqlock>,
    >("lockfree");
}

/// Writers of a table that cannot grow, churning keys at the fill limit: an insert that needs
/// an EMPTY slot needs a reclaim, which needs every writer lock, and other writers hold theirs
/// for a moment all the time. A patient insert waits for the reclaim (or for another writer's)
/// rather than report a full table: 4 processes of the harness's `exchange` on a table of
/// fixed size met that error when the reclaim found a lock held between the growth's attempt
/// and its own.
fn writers_at_the_fill_limit_never_see_a_full_table<P: Protocol>(tag: &str) {
    let (_name, map) = fixed_table::<P>(&format!("reclaim-wait-{tag}"));
    let until = Instant::now() + Duration::from_millis(1500);
    std::thread::scope(|s| {
        for w in 0..4u64 {
            let map = &map;
            s.spawn(move || churn_new_keys(map, w, 64, until)); // 64 live keys per writer
        }
    });
    let reclaims = reclaims_of(&map);
    assert!(reclaims > 0, "no reclaim ran: the test tested nothing");
    map.unlink().unwrap();
}

#[test]
fn lockfree_writers_at_the_fill_limit_never_see_a_full_table() {
    writers_at_the_fill_limit_never_see_a_full_table::<
        shmap_backends::Striped<shmap_backends::Seqlock>,
    >("lockfree");
}

#[test]
fn spinlock_writers_at_the_fill_limit_never_see_a_full_table() {
    writers_at_the_fill_limit_never_see_a_full_table::<
        shmap_backends::Striped<shmap_backends::SlotLocks>,
    >("spinlock");
}

/// Writer `w` inserts new keys until `until`, removing each one `live` inserts later, so it
/// keeps `live` keys present and leaves a tombstone per key: every insert must succeed.
fn churn_new_keys<P: Protocol>(map: &SharedMap<P>, w: u64, live: u64, until: Instant) {
    let mut i = 0u64;
    while Instant::now() < until {
        let k = w << 40 | i;
        map.insert(&key(k), &value(k))
            .unwrap_or_else(|e| panic!("writer {w}, key {i}: {e}"));
        if i >= live {
            assert!(map.remove(&key(w << 40 | (i - live))).unwrap());
        }
        i += 1;
    }
}

/// Slots that are not EMPTY in the map's current table (quiescent).
fn slots_taken<P: Protocol>(map: &SharedMap<P>) -> usize {
    let t = map.raw_table().unwrap();
    // Relaxed: a quiescent map.
    (0..t.capacity())
        .filter(|&i| Meta(t.meta(i).load(Ordering::Relaxed)).state() != Some(SlotState::Empty))
        .count()
}

/// The same at 8 writers on a table larger than one reclaim hold (4,096 slots): a reclaim
/// then lets the writers go between holds, and one of them often keeps its lock past the
/// spin, which cuts the reclaim short. What such a reclaim freed was left out of the table's
/// count of used slots, which then only grew: 8 processes of the harness's `exchange` saw
/// "the table is full" hundreds of times a run with a third of the table EMPTY. And every
/// reclaim started at slot 0, so reclaims cut short went over the same first runs again.
/// The count must be exact once the writers stop.
fn eight_writers_on_a_large_table_never_see_a_full_table<P: Protocol>(tag: &str) {
    let (_name, map) = fixed_table_of::<P>(&format!("reclaim-parts-{tag}"), 16_384);
    let until = Instant::now() + Duration::from_millis(2000);
    let partial = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in 0..8u64 {
            let map = &map;
            // 5,600 live keys in all: no compaction.
            s.spawn(move || churn_new_keys(map, w, 700, until));
        }
        // A writer stopped for a moment with its lock, now and then (the harness's processes
        // are descheduled on 2 cores): it cuts reclaims short between two holds.
        // It takes its lock as soon as it can, often between two holds of a reclaim: its
        // key's stripe is the last of the 512 (`stripes.rs`), the last a reclaim takes again.
        s.spawn(|| {
            let (t, p) = (map.raw_table().unwrap(), map.protocol());
            let last = (0u64..)
                .map(|i| t.hash(format!("held-{i}").as_bytes()))
                .find(|h| h.hash & 511 == 511)
                .unwrap();
            while Instant::now() < until {
                let Some(held) = p.try_lock_key(map.tables(), &last).unwrap() else {
                    continue;
                };
                std::thread::sleep(Duration::from_millis(2));
                drop(held);
                std::thread::sleep(Duration::from_micros(50));
            }
        });
        // Reclaims all the time, as writers at the limit do, counting those cut short (the
        // unit tests in `reclaim.rs` cut them short for sure).
        s.spawn(|| {
            while Instant::now() < until {
                if let Some(r) = map.reclaim_tombstones().unwrap() {
                    partial.fetch_add(usize::from(r.partial), Ordering::Relaxed);
                }
                std::thread::yield_now();
            }
        });
    });
    let t = map.raw_table().unwrap();
    let partial = partial.load(Ordering::Relaxed);
    assert_eq!(
        t.used_slots(),
        slots_taken(&map),
        "the count of used slots drifted ({partial} reclaims cut short)"
    );
    map.unlink().unwrap();
}

#[test]
fn lockfree_eight_writers_on_a_large_table_never_see_a_full_table() {
    eight_writers_on_a_large_table_never_see_a_full_table::<
        shmap_backends::Striped<shmap_backends::Seqlock>,
    >("lockfree");
}

#[test]
fn spinlock_eight_writers_on_a_large_table_never_see_a_full_table() {
    eight_writers_on_a_large_table_never_see_a_full_table::<
        shmap_backends::Striped<shmap_backends::SlotLocks>,
    >("spinlock");
}
