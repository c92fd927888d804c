//! Real multi-process tests: every worker is a separate OS process running `stress_worker`.
//!
//! - torn reads: writers rewrite shared keys with self-checking values of varying length while
//!   readers check every value they get; churners insert and remove other keys around them so
//!   claims and tombstones pass by. Any torn or missing read fails the reader.
//! - neighbours: in a small sparse table, processes insert (reading back) and remove their own
//!   keys next to each other's, while a reader checks stable keys.
//! - unique keys: many processes insert the same keys at once; exactly one insert per key may
//!   report `New`, and the map must then hold each key exactly once with an exact `len`.
//! - snapshots: while processes remove and re-insert their keys in a nearly full table (so keys
//!   move between slots, around the end of the table too), every `entries()` snapshot lists
//!   each key at most once, and every key no one touches exactly once.
mod common;

use shmap::{MapBackend, MapParams};

use common::{field, finish, spawn_worker, TestName};

const KEYS: u64 = 64;

fn no_torn_or_missing_reads<M: MapBackend>(backend: &str) {
    let name = TestName::new("torn");
    // Under half live even with every filler in (128 of 512): removes leave their tombstones
    // in front of the stable keys, and reclaims must run. Entries moving under readers, in
    // tables over half live, is `compact.rs`'s test.
    let map = M::create(
        name.as_str(),
        MapParams {
            capacity: 512,
            max_key_size: 32,
            max_value_size: 200,
            max_capacity: 512,
        },
    )
    .unwrap();
    // Interleave fillers and remove them, so most stable keys sit behind tombstones.
    for id in 0..KEYS {
        map.insert(format!("filler-{id}").as_bytes(), b"x").unwrap();
        map.insert(
            format!("key-{id:08}").as_bytes(),
            &shmap_testkit::checked::make(id, 0, 16),
        )
        .unwrap();
    }
    for id in 0..KEYS {
        assert!(map.remove(format!("filler-{id}").as_bytes()).unwrap());
    }
    let s = |v: u64| v.to_string();
    let mut workers = Vec::new();
    for w in 1..=2 {
        workers.push(spawn_worker(
            backend,
            "update",
            name.as_str(),
            &[s(KEYS), s(w), s(300)],
        ));
    }
    for r in 0..2 {
        workers.push(spawn_worker(
            backend,
            "read",
            name.as_str(),
            &[s(KEYS), s(1500)],
        ));
        workers.push(spawn_worker(
            backend,
            "churn",
            name.as_str(),
            &[format!("c{r}"), s(40), s(100)],
        ));
    }
    // Reclaims while the readers run: the churners trigger them, but each handle that finds a
    // lock held past a short spin waits 10 ms before it tries again, and on two busy cores
    // the churners were sometimes done before any try found every lock free (about one run
    // in 15 once churn got faster). This handle keeps trying until the workers are done.
    let done = std::sync::atomic::AtomicBool::new(false);
    let summaries: Vec<String> = std::thread::scope(|scope| {
        scope.spawn(|| {
            let kind: shmap::BackendKind = backend.parse().unwrap();
            shmap_backends::with_backend!(kind, S => {
                let map = S::attach(name.as_str()).unwrap();
                // Relaxed: a stop flag; the join at the end of the scope orders the rest.
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    map.reclaim_tombstones().unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            })
        });
        let summaries = workers.into_iter().map(finish).collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        summaries
    });
    let reads: u64 = summaries
        .iter()
        .filter(|l| l.starts_with("reads="))
        .map(|l| field(l, "reads"))
        .sum();
    assert!(
        reads > 1000,
        "readers made too few reads to prove anything: {summaries:?}"
    );
    assert_eq!(
        map.len().unwrap() as u64,
        KEYS,
        "churners removed all their keys: {summaries:?}"
    );
    // The churners used up the EMPTY slots many times over, so tombstones were returned to
    // EMPTY while the readers ran (`reclaim.rs`): the readers' stable keys sit behind
    // tombstones that must stay. Header word 15 counts reclaims (`segment.rs`).
    let header = std::fs::read(format!("/dev/shm/{}", name.as_str())).unwrap();
    let reclaims = u64::from_le_bytes(header[120..128].try_into().unwrap());
    assert!(reclaims > 0, "no reclaim ran: {summaries:?}");
}

/// In a small, sparse table, four processes insert (reading each key back at once) and remove
/// their own keys next to each other's, while a reader checks stable keys: claims, tombstones
/// and reclaims all happen next to other writers' slots. A key placed behind an EMPTY slot
/// would be missed by its own writer's get or remove, a stable key missing fails the reader.
/// (Written for removes that free their own slot, `docs/tombstones.md`: with the fence pair
/// left out it failed every run.)
fn neighbouring_inserts_and_removes_never_lose_a_key<M: MapBackend>(backend: &str) {
    let name = TestName::new("neighbours");
    let map = M::create(
        name.as_str(),
        MapParams {
            capacity: 128,
            max_key_size: 32,
            max_value_size: 64,
            max_capacity: 128,
        },
    )
    .unwrap();
    let stable = 16u64;
    for id in 0..stable {
        map.insert(
            format!("key-{id:08}").as_bytes(),
            &shmap_testkit::checked::make(id, 0, 16),
        )
        .unwrap();
    }
    let s = |v: u64| v.to_string();
    let mut workers = vec![spawn_worker(
        backend,
        "read",
        name.as_str(),
        &[s(stable), s(1000)],
    )];
    for c in 0..4 {
        workers.push(spawn_worker(
            backend,
            "churn",
            name.as_str(),
            &[format!("n{c}"), s(8), s(4000)],
        ));
    }
    let summaries: Vec<String> = workers.into_iter().map(finish).collect();
    assert_eq!(
        map.len().unwrap() as u64,
        stable,
        "churners removed all their keys: {summaries:?}"
    );
}

fn same_keys_from_many_processes_are_stored_once<M: MapBackend>(backend: &str) {
    let name = TestName::new("same");
    let keys = 2000u64;
    let map = M::create(
        name.as_str(),
        MapParams {
            capacity: 4096,
            max_key_size: 32,
            max_value_size: 32,
            max_capacity: 4096,
        },
    )
    .unwrap();
    let workers: Vec<_> = (0..6)
        .map(|_| spawn_worker(backend, "insert-same", name.as_str(), &[keys.to_string()]))
        .collect();
    let new: u64 = workers.into_iter().map(|w| field(&finish(w), "new")).sum();
    assert_eq!(
        new, keys,
        "each key must be inserted as new by exactly one process"
    );
    assert_eq!(map.len().unwrap() as u64, keys);
    let entries = map.entries().unwrap();
    let mut seen: Vec<_> = entries.iter().map(|(k, _)| k.clone()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        (entries.len(), seen.len()),
        (keys as usize, keys as usize),
        "a key is stored twice"
    );
}

fn snapshots_never_list_a_key_twice<M: MapBackend>(backend: &str) {
    let name = TestName::new("snap");
    let capacity = 64;
    let map = M::create(
        name.as_str(),
        MapParams {
            capacity,
            max_key_size: 32,
            max_value_size: 16,
            max_capacity: capacity,
        },
    )
    .unwrap();
    // 0.9 load: 26 keys nobody touches, 2 x 15 that two processes keep moving.
    let stable: Vec<Vec<u8>> = (0..26)
        .map(|i| format!("stable-{i}").into_bytes())
        .collect();
    for k in &stable {
        map.insert(k, b"s").unwrap();
    }
    for p in ["f0", "f1"] {
        for id in 0..15 {
            map.insert(format!("{p}-{id}").as_bytes(), b"flip").unwrap();
        }
    }
    let workers: Vec<_> = ["f0", "f1"]
        .iter()
        .map(|p| {
            spawn_worker(
                backend,
                "flip",
                name.as_str(),
                &[p.to_string(), "15".into(), "1500".into()],
            )
        })
        .collect();
    let (mut scans, mut twice) = (0u64, Vec::new());
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1400);
    while std::time::Instant::now() < deadline {
        let entries = map.entries().unwrap();
        let mut keys: Vec<&[u8]> = entries.iter().map(|(k, _)| k.as_slice()).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        if keys.len() != before && twice.len() < 5 {
            twice.push(before - keys.len());
        }
        for k in &stable {
            assert!(
                keys.binary_search(&k.as_slice()).is_ok(),
                "stable key {k:?} missing from a snapshot"
            );
        }
        scans += 1;
    }
    let summaries: Vec<String> = workers.into_iter().map(finish).collect();
    assert!(
        twice.is_empty(),
        "snapshots listed keys twice ({twice:?} duplicates) in {scans} scans"
    );
    assert!(scans > 100, "too few scans to prove anything: {scans}");
    assert!(
        summaries.iter().all(|s| field(s, "flips") > 1000),
        "{summaries:?}"
    );
    assert_eq!(map.len().unwrap(), 56);
}

/// N processes each add 1 to one key M times through `update`: exactly N x M, for a counter
/// that a read-then-write would lose increments of.
fn atomic_increments_from_many_processes_are_exact<M: MapBackend>(backend: &str) {
    let name = TestName::new("incr");
    let map = M::create(
        name.as_str(),
        MapParams {
            capacity: 16,
            max_key_size: 16,
            max_value_size: 8,
            max_capacity: 16,
        },
    )
    .unwrap();
    let (procs, times) = (4u64, 3000u64);
    let workers: Vec<_> = (0..procs)
        .map(|_| {
            spawn_worker(
                backend,
                "incr",
                name.as_str(),
                &["counter".into(), times.to_string()],
            )
        })
        .collect();
    let done: u64 = workers
        .into_iter()
        .map(|w| field(&finish(w), "incrs"))
        .sum();
    assert_eq!(done, procs * times);
    let v = map.get(b"counter").unwrap().expect("the counter exists");
    assert_eq!(u64::from_le_bytes(v.try_into().unwrap()), procs * times);
}

macro_rules! multiprocess_tests {
    ($backend:ident, $M:ty) => {
        mod $backend {
            #[test]
            fn no_torn_or_missing_reads() {
                super::no_torn_or_missing_reads::<$M>(stringify!($backend));
            }
            #[test]
            fn neighbouring_inserts_and_removes_never_lose_a_key() {
                super::neighbouring_inserts_and_removes_never_lose_a_key::<$M>(stringify!(
                    $backend
                ));
            }
            #[test]
            fn atomic_increments_from_many_processes_are_exact() {
                super::atomic_increments_from_many_processes_are_exact::<$M>(stringify!($backend));
            }
            #[test]
            fn snapshots_never_list_a_key_twice() {
                super::snapshots_never_list_a_key_twice::<$M>(stringify!($backend));
            }
            #[test]
            fn same_keys_from_many_processes_are_stored_once() {
                super::same_keys_from_many_processes_are_stored_once::<$M>(stringify!($backend));
            }
        }
    };
}

multiprocess_tests!(lockfree, shmap_backends::LockFreeMap);
multiprocess_tests!(spinlock, shmap_backends::SpinLockMap);
multiprocess_tests!(mutex, shmap_backends::MutexMap);
