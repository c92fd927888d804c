//! Hostile segments: random bytes of a live segment are overwritten (header, lock words,
//! control words, slot data), then the segment is attached and used. Errors are allowed;
//! panics, out-of-bounds accesses (a crash of this test binary) and hangs are not: every
//! operation must return within a bound. A map that grew is damaged too: its root, or the
//! table it now lives in (`name.t<g>`) edited, truncated, removed or swapped for another map's.
mod common;

use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use shmap::{MapBackend, MapParams};

use common::hostile::{timed, watchdog, STALL};
use common::TestName;

fn corrupt_then_use<M: MapBackend>(edits: &[(f64, u8)]) -> Result<(), TestCaseError> {
    shmap::set_stall_timeout(STALL);
    let _alive = watchdog(); // dropped at the end of the case: the watchdog stands down
    let name = TestName::new("corrupt");
    let params = MapParams {
        capacity: 32,
        max_key_size: 16,
        max_value_size: 24,
        max_capacity: 32,
    };
    let map = M::create(name.as_str(), params).unwrap();
    for i in 0..20u8 {
        map.insert(&[i; 3], &[i; 10]).unwrap();
    }
    let path = format!("/dev/shm/{}", name.as_str());
    let len = std::fs::metadata(&path).unwrap().len();
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for &(at, byte) in edits {
        file.seek(SeekFrom::Start((at * len as f64) as u64 % len))
            .unwrap();
        file.write_all(&[byte]).unwrap();
    }
    drop(file);
    // The handle that was open before the corruption, and a fresh attach (which may refuse).
    let fresh = timed("attach", || M::attach(name.as_str()))?;
    for m in std::iter::once(&map).chain(fresh.as_ref().ok()) {
        for i in 0..24u8 {
            let _ = timed("get", || m.get(&[i; 3]))?;
            let _ = timed("contains", || m.contains_key(&[i; 3]))?;
        }
        for i in 0..24u8 {
            let _ = timed("insert", || m.insert(&[i; 3], &[!i; 7]))?;
            let _ = timed("remove", || m.remove(&[i ^ 1; 3]))?;
        }
        let _ = timed("entries", || m.entries())?;
        // A corrupt generation word is an error here, not a table of that number.
        if let Ok(n) = m.len() {
            prop_assert!(n <= m.capacity());
        }
    }
    Ok(())
}

fn edits() -> impl Strategy<Value = Vec<(f64, u8)>> {
    proptest::collection::vec((0.0f64..1.0, any::<u8>()), 1..24)
}

macro_rules! corruption_test {
    ($name:ident, $M:ty) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn $name(edits in edits()) {
                corrupt_then_use::<$M>(&edits)?;
            }
        }
    };
}

corruption_test!(
    lockfree_survives_random_corruption,
    shmap_backends::LockFreeMap
);
corruption_test!(
    spinlock_survives_random_corruption,
    shmap_backends::SpinLockMap
);
corruption_test!(mutex_survives_random_corruption, shmap_backends::MutexMap);

/// What a hostile or unlucky process does to a map that grew, whose current table lives in
/// `name.t<g>`.
#[derive(Debug, Clone)]
enum Damage {
    /// Bytes of the root (header, generation word, backend area, the old table) or of the
    /// current table's file overwritten.
    Edit { table: bool, edits: Vec<(f64, u8)> },
    /// The current table's file cut to a fraction of its length (every handle dropped first:
    /// a mapped file truncated under a process faults with SIGBUS, as the README says).
    Truncate(f64),
    /// The current table's file removed.
    Remove,
    /// The current table's file replaced by another map's table of the same generation.
    Swap,
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<bool>(), edits()).prop_map(|(table, edits)| Damage::Edit { table, edits }),
        (0.0f64..1.0).prop_map(Damage::Truncate),
        Just(Damage::Remove),
        Just(Damage::Swap),
    ]
}

/// Every operation of `m`, each within the bound; errors allowed. Inserts past the table's
/// size, so growth runs on whatever the damage left.
fn use_within_bound<M: MapBackend>(m: &M) -> Result<(), TestCaseError> {
    for i in 0..40u8 {
        let _ = timed("get", || m.get(&[i; 3]))?;
        let _ = timed("insert", || m.insert(&[i; 3], &[!i; 7]))?;
        let _ = timed("remove", || m.remove(&[i ^ 1; 3]))?;
    }
    let _ = timed("entries", || m.entries())?;
    let _ = timed("len", || m.len())?;
    Ok(())
}

fn damage_a_grown_map<M: MapBackend>(damage: &Damage) -> Result<(), TestCaseError> {
    shmap::set_stall_timeout(STALL);
    let _alive = watchdog();
    let name = TestName::new("corrupt-grown");
    let params = MapParams {
        capacity: 8,
        max_key_size: 16,
        max_value_size: 24,
        max_capacity: 256,
    };
    let map = M::create(name.as_str(), params).unwrap();
    for i in 0..20u8 {
        map.insert(&[i; 3], &[i; 10]).unwrap();
    }
    let root = format!("/dev/shm/{}", name.as_str());
    let g = (1..=shmap::MAX_GENERATIONS)
        .find(|g| std::path::Path::new(&format!("{root}.t{g}")).exists())
        .expect("the map grew into a table of its own");
    let table = format!("{root}.t{g}");
    let edit = |path: &str, edits: &[(f64, u8)]| {
        let len = std::fs::metadata(path).unwrap().len();
        let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        for &(at, byte) in edits {
            file.seek(SeekFrom::Start((at * len as f64) as u64 % len))
                .unwrap();
            file.write_all(&[byte]).unwrap();
        }
    };
    let mut old = Some(map);
    match damage {
        Damage::Edit {
            table: false,
            edits,
        } => edit(&root, edits),
        Damage::Edit { table: true, edits } => edit(&table, edits),
        Damage::Truncate(at) => {
            old = None;
            let len = std::fs::metadata(&table).unwrap().len();
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&table)
                .unwrap();
            file.set_len((at * len as f64) as u64).unwrap();
        }
        Damage::Remove => std::fs::remove_file(&table).unwrap(),
        Damage::Swap => {
            // The same generation of another map of the same shape (another hash seed), under
            // the current table's name (a new file: the old handle keeps its mapping).
            let other_name = TestName::new("corrupt-other");
            let other = M::create(other_name.as_str(), params).unwrap();
            for i in 0..20u8 {
                other.insert(&[i; 3], &[i; 10]).unwrap();
            }
            let theirs = format!("/dev/shm/{}.t{g}", other_name.as_str());
            std::fs::remove_file(&table).unwrap();
            std::fs::copy(theirs, &table).unwrap();
            drop(other);
        }
    }
    let fresh = timed("attach", || M::attach(name.as_str()))?;
    for m in old.iter().chain(fresh.as_ref().ok()) {
        use_within_bound(m)?;
    }
    drop((old, fresh));
    // Whatever the damage, unlink by name leaves nothing of the map.
    let _ = shmap::unlink(name.as_str());
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.starts_with(name.as_str()))
        .collect();
    prop_assert!(left.is_empty(), "{left:?}");
    Ok(())
}

macro_rules! grown_corruption_test {
    ($name:ident, $M:ty) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn $name(damage in damage()) {
                damage_a_grown_map::<$M>(&damage)?;
            }
        }
    };
}

grown_corruption_test!(
    lockfree_survives_damage_to_a_grown_map,
    shmap_backends::LockFreeMap
);
grown_corruption_test!(
    spinlock_survives_damage_to_a_grown_map,
    shmap_backends::SpinLockMap
);
grown_corruption_test!(
    mutex_survives_damage_to_a_grown_map,
    shmap_backends::MutexMap
);

/// A busy word stamped with a registry record nobody ever registered cannot be waited out:
/// it is reported as corruption at once, not after the stall timeout (5 s by default).
fn busy_word_of_an_unused_record_is_corruption<M: MapBackend>(
    table: impl Fn(&M) -> &shmap::RawTable,
) {
    let name = TestName::new("unusedowner");
    let map = M::create(
        name.as_str(),
        MapParams {
            capacity: 16,
            max_key_size: 8,
            max_value_size: 8,
            max_capacity: 16,
        },
    )
    .unwrap();
    map.insert(b"k", b"v").unwrap();
    let t = table(&map);
    let i = (0..t.capacity())
        .find(|&i| t.entry(i).is_some_and(|e| e.key_matches(b"k")))
        .expect("the key's slot");
    let meta = t.meta(i);
    let stable = shmap::Meta(meta.load(std::sync::atomic::Ordering::Acquire));
    // Record 1000, generation 1: this map has only ever registered record 0.
    let stranger = 1 << 10 | 1000;
    meta.store(
        stable.busy(stranger).0,
        std::sync::atomic::Ordering::Release,
    );
    let start = Instant::now();
    let got = map.get(b"k");
    assert!(
        matches!(got, Err(shmap::Error::Corrupt { .. })),
        "expected a corruption error, got {got:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn lockfree_busy_word_of_an_unused_record_is_corruption() {
    busy_word_of_an_unused_record_is_corruption::<shmap_backends::LockFreeMap>(|m| {
        m.raw_table().unwrap()
    });
}

#[test]
fn spinlock_busy_word_of_an_unused_record_is_corruption() {
    busy_word_of_an_unused_record_is_corruption::<shmap_backends::SpinLockMap>(|m| {
        m.raw_table().unwrap()
    });
}
