//! Pass counts (`src/raw_table/passes.rs`): after any mix of inserts, updates, removes,
//! compactions, reclaims and resizes, by one thread or several at once, every bucket's count
//! is exactly the number of entries whose probe passes it; and because lookups of absent keys
//! stop at the first bucket no probe passes, churn no longer lengthens them. (That no lookup
//! stops short of a present key while writers run in other processes is `multiprocess.rs`;
//! that a killed writer leaves counts high, never low, is `kill.rs`.)

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use shmap::{Location, MapBackend, MapOps, MapParams, Meta, RawTable, SlotState};
use shmap_backends::{GlobalMutex, Protocol, Seqlock, SharedMap, SlotLocks, Striped};

use common::{Rng, TestName};

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:010}").into_bytes()
}

fn assert_exact(t: &RawTable, what: &str) {
    let exact = t.exact_passes().expect("a readable table");
    for (i, &n) in exact.iter().enumerate() {
        assert_eq!(
            usize::from(t.passes(i)),
            n.min(255),
            "{what}: bucket {i} of {}",
            t.capacity()
        );
    }
}

/// The mean probe of a miss over every home bucket, as lookups now walk: up to and including
/// the first slot that is EMPTY or that no probe passes; and as they walked before pass counts
/// (to the first EMPTY slot).
fn mean_miss_probes(t: &RawTable) -> (f64, f64) {
    let cap = t.capacity();
    // Relaxed: a quiescent map.
    let empty: Vec<bool> = (0..cap)
        .map(|i| Meta(t.meta(i).load(Ordering::Relaxed)).state() == Some(SlotState::Empty))
        .collect();
    let walk = |home: usize, stop: &dyn Fn(usize) -> bool| {
        (0..cap)
            .find(|d| stop((home + d) % cap))
            .map_or(cap, |d| d + 1)
    };
    let (mut now, mut before) = (0, 0);
    for home in 0..cap {
        now += walk(home, &|i| empty[i] || t.passes(i) == 0);
        before += walk(home, &|i| empty[i]);
    }
    (now as f64 / cap as f64, before as f64 / cap as f64)
}

fn params(capacity: usize, max_capacity: usize) -> MapParams {
    MapParams {
        capacity,
        max_key_size: 16,
        max_value_size: 16,
        max_capacity,
    }
}

/// One thread: random inserts, updates and removes over 3x as many keys as fit, at a load
/// that crosses half (removes shift entries back), in a table that grows twice.
fn one_thread_keeps_counts_exact<P: Protocol>(tag: &str) {
    let name = TestName::new(&format!("passes-{tag}"));
    let loc = Location::Shm(name.as_str().to_owned());
    let map = SharedMap::<P>::create_in(&loc, params(256, 1024)).unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for round in 0..40_000u64 {
        let k = rng.below(if round < 20_000 { 300 } else { 700 });
        match rng.below(3) {
            0 => {
                map.remove(&key(k)).unwrap();
            }
            _ => {
                map.insert(&key(k), &round.to_le_bytes()).unwrap();
            }
        }
        if round % 5_000 == 0 {
            assert_exact(map.raw_table().unwrap(), &format!("{tag}, round {round}"));
        }
    }
    assert!(map.generation() > 0, "the table never grew");
    assert_exact(map.raw_table().unwrap(), tag);
    let done = map
        .reclaim_tombstones()
        .unwrap()
        .expect("nobody holds a lock");
    assert!(!done.aborted);
    assert_exact(map.raw_table().unwrap(), &format!("{tag}, after a reclaim"));
    map.unlink().unwrap();
}

/// Four threads churn overlapping keys at once in a dense table (removes shift entries back
/// while other threads insert next to them); quiescent again, every count is exact and every
/// present key is found.
fn threads_keep_counts_exact<P: Protocol + 'static>(tag: &str) {
    let name = TestName::new(&format!("passes-mt-{tag}"));
    let loc = Location::Shm(name.as_str().to_owned());
    let map = Arc::new(SharedMap::<P>::create_in(&loc, params(512, 512)).unwrap());
    // About 300 live of 450 keys (inserts 2 in 3): over half the table, so removes shift.
    for k in 0..300 {
        map.insert(&key(k), b"v").unwrap();
    }
    map.reclaim_tombstones().unwrap(); // counts the table as dense
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let map = map.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 + t);
                for _ in 0..30_000 {
                    let k = rng.below(450);
                    if rng.below(3) == 0 {
                        map.remove(&key(k)).unwrap();
                    } else {
                        map.insert(&key(k), &t.to_le_bytes()).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let table = map.raw_table().unwrap();
    assert!(
        table.moves() > 0,
        "nothing moved: the test tested no compaction"
    );
    assert_exact(table, tag);
    let entries = map.entries().unwrap();
    for k in 0..450 {
        let present = map.contains_key(&key(k)).unwrap();
        let stored = entries.iter().any(|(e, _)| *e == key(k));
        assert_eq!(present, stored, "key {k}");
    }
    map.unlink().unwrap();
}

/// Churn at load 3/8 leaves tombstones everywhere (20-25% of the slots): a miss that walks to
/// the first EMPTY slot, as misses did before pass counts, gets 1.8-2.2x longer than in a
/// table freshly built with the same keys (3.1-4.0 slots here). One that stops at the first
/// bucket no probe passes lengthens only as much as the present keys' probes do (churn leaves
/// them longer below half load, where removes do not shift entries back): 1.36-1.46x in 24
/// runs (1.6-1.7 slots), half the walk to EMPTY. Bounds: 1.6x, and 0.65 of that walk.
fn churn_does_not_lengthen_misses<P: Protocol>(tag: &str) {
    const CAPACITY: usize = 16_384;
    let name = TestName::new(&format!("passes-miss-{tag}"));
    let loc = Location::Shm(name.as_str().to_owned());
    let map = SharedMap::<P>::create_in(&loc, params(CAPACITY, CAPACITY)).unwrap();
    let mut present: Vec<u64> = (0..CAPACITY as u64 * 3 / 8).collect();
    for &k in &present {
        map.insert(&key(k), b"v").unwrap();
    }
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut next = present.len() as u64;
    for _ in 0..10 * CAPACITY {
        let at = rng.below(present.len() as u64) as usize;
        assert!(map.remove(&key(present[at])).unwrap());
        map.insert(&key(next), b"v").unwrap();
        present[at] = next;
        next += 1;
    }
    let table = map.raw_table().unwrap();
    let (churned, to_empty) = mean_miss_probes(table);
    // Relaxed: a quiescent map.
    let tombstones = (0..CAPACITY)
        .filter(|&i| Meta(table.meta(i).load(Ordering::Relaxed)).is_stable_tombstone())
        .count();

    let fresh_name = TestName::new(&format!("passes-fresh-{tag}"));
    let fresh_loc = Location::Shm(fresh_name.as_str().to_owned());
    let fresh = SharedMap::<P>::create_in(&fresh_loc, params(CAPACITY, CAPACITY)).unwrap();
    for &k in &present {
        fresh.insert(&key(k), b"v").unwrap();
    }
    let (fresh_now, fresh_to_empty) = mean_miss_probes(fresh.raw_table().unwrap());
    eprintln!(
        "{tag}: {tombstones} tombstones; a miss probes {churned:.2} slots after churn \
         ({to_empty:.2} to the first EMPTY), {fresh_now:.2} in a fresh table ({fresh_to_empty:.2})"
    );
    assert!(
        tombstones > CAPACITY / 10,
        "churn left {tombstones} tombstones: too few to test anything"
    );
    assert!(
        churned <= 1.6 * fresh_now && churned <= 0.65 * to_empty,
        "a miss probes {churned:.2} slots after churn, {fresh_now:.2} in a fresh table, \
         {to_empty:.2} to the first EMPTY slot"
    );
    for k in next..next + 2000 {
        assert!(!map.contains_key(&key(k)).unwrap());
    }
    for &k in &present {
        assert!(map.contains_key(&key(k)).unwrap(), "key {k}");
    }
    fresh.unlink().unwrap();
    map.unlink().unwrap();
}

/// A file whose pass counts were lost (a torn page written back older than the entries: here
/// all zero, too low for every entry past its home) is counted afresh by the first open.
fn a_file_open_recounts_lost_counts<P: Protocol>() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passes.map");
    let loc = Location::File(path.clone());
    let (offset, capacity) = {
        let map = SharedMap::<P>::create_in(&loc, params(256, 256)).unwrap();
        for k in 0..160 {
            map.insert(&key(k), b"v").unwrap();
        }
        let t = map.raw_table().unwrap();
        assert!((0..256).any(|i| t.passes(i) > 0), "no entry past its home");
        (t.segment().layout().passes_offset, t.capacity())
    };
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(offset as u64)).unwrap();
    file.write_all(&vec![0u8; capacity]).unwrap();
    drop(file);
    let map = SharedMap::<P>::attach_in(&loc, shmap::AttachOptions::default()).unwrap();
    assert_exact(map.raw_table().unwrap(), "reopened file");
    for k in 0..160 {
        assert!(map.contains_key(&key(k)).unwrap(), "key {k}");
    }
}

#[test]
fn lockfree_file_open_recounts_lost_counts() {
    a_file_open_recounts_lost_counts::<Striped<Seqlock>>();
}

#[test]
fn mutex_file_open_recounts_lost_counts() {
    a_file_open_recounts_lost_counts::<GlobalMutex>();
}

#[test]
fn lockfree_one_thread_keeps_counts_exact() {
    one_thread_keeps_counts_exact::<Striped<Seqlock>>("lockfree");
}

#[test]
fn spinlock_one_thread_keeps_counts_exact() {
    one_thread_keeps_counts_exact::<Striped<SlotLocks>>("spinlock");
}

#[test]
fn mutex_one_thread_keeps_counts_exact() {
    one_thread_keeps_counts_exact::<GlobalMutex>("mutex");
}

#[test]
fn lockfree_threads_keep_counts_exact() {
    threads_keep_counts_exact::<Striped<Seqlock>>("lockfree");
}

#[test]
fn spinlock_threads_keep_counts_exact() {
    threads_keep_counts_exact::<Striped<SlotLocks>>("spinlock");
}

#[test]
fn mutex_threads_keep_counts_exact() {
    threads_keep_counts_exact::<GlobalMutex>("mutex");
}

#[test]
fn lockfree_churn_does_not_lengthen_misses() {
    churn_does_not_lengthen_misses::<Striped<Seqlock>>("lockfree");
}

#[test]
fn mutex_churn_does_not_lengthen_misses() {
    churn_does_not_lengthen_misses::<GlobalMutex>("mutex");
}
