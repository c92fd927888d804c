//! Hostile heaps (issue 32, item 7): the heap file of a populated map (`name.heap`) is damaged
//! where it hurts most (the header's lengths, free-list heads and carve words; run headers,
//! bitmaps and free blocks' links; records' length words), cut short or lengthened, or the
//! table's reference words are made to name places no record is (past the file, the header,
//! the middle of a block, a free block, another bucket's record). Then the map is used through
//! the handle that was open and through a new one: every call must return, within a bound,
//! `Ok` or an error. A panic, a crash of this binary (SIGSEGV, SIGBUS) or a hang fails.
//! A file-backed map is damaged while closed and opened again: the first open validates and
//! rebuilds the heap, and must refuse the file or drop what it cannot trust.
//! (The specific shapes: free lists that loop, lengths past the file, are unit tests of the
//! heap itself, in `src/heap/hostile.rs`.)
mod common;

use proptest::prelude::*;
use shmap::heap::classes::{Class, CLASSES, PAGE};
use shmap::{AttachOptions, Location, MapBackend, MapOps, Update};
use shmap_backends::{GlobalMutex, Protocol, Seqlock, SharedMap, SlotLocks, Striped};

use common::heap_damage::*;
use common::hostile::{timed, watchdog, STALL};
use common::TestName;

/// Every operation of `m`, each within the bound; errors allowed. Records of every class and
/// large ones are inserted, so every damaged free list and carve word is used, then removed,
/// so frees meet them too, then the heap is trimmed and used again.
fn use_within_bound<P: Protocol>(m: &SharedMap<P>) -> Result<(), TestCaseError>
where
    SharedMap<P>: MapBackend,
{
    for i in 0..KEYS + 4 {
        let _ = timed("get", || m.get(&key(i)))?;
        let _ = timed("contains", || m.contains_key(&key(i)))?;
    }
    let sized = |c: usize| {
        let block = Class::from_index(c).map_or(50_000, Class::block);
        vec![c as u8; block.saturating_sub(8).min(PARAMS.max_value_size)]
    };
    for c in 0..=CLASSES {
        let _ = timed("insert", || m.insert(&key(100 + c), &sized(c)))?;
    }
    let _ = timed("insert", || m.insert(b"large", &[7; 100_000]))?;
    for i in 0..KEYS {
        let _ = timed("update", || {
            m.update(&key(i), |v| {
                let n = v.map_or(1, |v| v.len() + 9);
                (Update::Set(vec![1; n.min(PARAMS.max_value_size)]), ())
            })
        })?;
        let _ = timed("compare_exchange", || {
            m.compare_exchange(&key(i + 100), None, Some(b"v"))
        })?;
        let _ = timed("get_or_insert", || m.get_or_insert(&key(i + 200), b"w"))?;
        let _ = timed("remove_entry", || m.remove_entry(&key(i ^ 1)))?;
    }
    for c in (0..=CLASSES).step_by(2) {
        let _ = timed("remove", || m.remove(&key(100 + c)))?;
    }
    let _ = timed("len", || m.len())?;
    let _ = timed("entries", || m.entries())?;
    let _ = timed("iter", || m.iter().map(|it| it.count()))?;
    let _ = timed("trim", || m.trim())?;
    for c in 0..=CLASSES {
        let _ = timed("insert after trim", || m.insert(&key(100 + c), &sized(c)))?;
    }
    let _ = timed("remove", || m.remove(b"large"))?;
    let _ = timed("trim", || m.trim())?;
    Ok(())
}

fn damage_the_heap<P: Protocol>(damage: &Damage) -> Result<(), TestCaseError>
where
    SharedMap<P>: MapBackend,
{
    shmap::set_stall_timeout(STALL);
    let _alive = watchdog(); // dropped at the end of the case: the watchdog stands down
    let name = TestName::new("heap-corrupt");
    let at = Location::Shm(name.as_str().to_owned());
    let map = SharedMap::<P>::create_in(&at, PARAMS).unwrap();
    let targets = populate(&map, &at);
    let old = (!matches!(damage, Damage::Truncate(_))).then_some(map);
    apply(damage, &targets, &heap_path(&at));
    let fresh = timed("attach", || {
        SharedMap::<P>::attach_in(&at, AttachOptions::default())
    })?;
    for m in old.iter().chain(fresh.as_ref().ok()) {
        use_within_bound(m)?;
    }
    Ok(())
}

/// A file map damaged while closed: its next open validates it and rebuilds the heap, and
/// must refuse it (an error) or open it with the entries it cannot trust dropped and counted.
fn damage_a_closed_file_map<P: Protocol>(damage: &Damage) -> Result<(), TestCaseError>
where
    SharedMap<P>: MapBackend,
{
    shmap::set_stall_timeout(STALL);
    let _alive = watchdog();
    let dir = tempfile::tempdir().unwrap();
    let at = Location::File(dir.path().join("map"));
    let map = SharedMap::<P>::create_in(&at, PARAMS).unwrap();
    let targets = populate(&map, &at);
    drop(map);
    apply(damage, &targets, &heap_path(&at));
    let opened = timed("open", || {
        SharedMap::<P>::attach_in(&at, AttachOptions::default())
    })?;
    if let Ok(m) = opened {
        let report = m.validation();
        prop_assert!(report.is_some(), "the first open validates the file");
        let entries = timed("entries", || m.entries())?;
        if let (Ok(entries), Some(v)) = (entries, report) {
            // What the report says was kept is what a scan finds.
            prop_assert_eq!(entries.len(), v.entries, "{:?}", v);
        }
        use_within_bound(&m)?;
    }
    Ok(())
}

macro_rules! heap_damage_test {
    ($name:ident, $file:ident, $P:ty) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]
            #[test]
            fn $name(damage in damage()) {
                damage_the_heap::<$P>(&damage)?;
            }

            #[test]
            fn $file(damage in damage()) {
                damage_a_closed_file_map::<$P>(&damage)?;
            }
        }
    };
}

heap_damage_test!(
    lockfree_survives_a_damaged_heap,
    lockfree_file_survives_a_damaged_heap,
    Striped<Seqlock>
);
heap_damage_test!(
    spinlock_survives_a_damaged_heap,
    spinlock_file_survives_a_damaged_heap,
    Striped<SlotLocks>
);
heap_damage_test!(
    mutex_survives_a_damaged_heap,
    mutex_file_survives_a_damaged_heap,
    GlobalMutex
);

/// The header words the damage aims at are where the heap keeps them.
#[test]
fn header_words_are_where_we_say() {
    let name = TestName::new("heap-header");
    let at = Location::Shm(name.as_str().to_owned());
    let map = SharedMap::<GlobalMutex>::create_in(&at, PARAMS).unwrap();
    populate(&map, &at);
    let bytes = std::fs::read(heap_path(&at)).unwrap();
    let w = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
    assert_eq!(w(0), shmap::heap::HEAP_MAGIC);
    assert_eq!(w(W_LEN), bytes.len() as u64);
    assert!(w(W_TOP) <= w(W_LEN) && w(W_TOP) % PAGE as u64 == 0);
    // The trim left free extents, and the removals free blocks of the first classes.
    assert!(w(W_LARGE) % PAGE as u64 == 0 && w(W_LARGE) != 0);
    assert!((0..CLASSES).any(|c| w(W_HEADS + c) != 0));
    // A carve word names a run of its class.
    let c = (0..CLASSES).find(|&c| w(W_CARVE + c) != 0).unwrap();
    let run = (w(W_CARVE + c) >> 24) as usize * PAGE;
    assert_eq!(w(run / 8) & 0xFF, c as u64 + 1);
}

/// Cases the fuzz crashed on (SIGBUS: a lowered heap_len cut the file; a crash cannot be
/// shrunk, so they are kept here as printed).
#[test]
fn lowered_heap_len_never_cuts_the_file() {
    let cases = [
        Damage::Header(vec![
            (HeaderWord::Top, Val::Offset(0.2275)),
            (HeaderWord::Len, Val::Units(0.1765)),
            (HeaderWord::Any(26), Val::Raw(7685870441534717075)),
        ]),
        Damage::Header(vec![
            (HeaderWord::Len, Val::LiveUnits(0.6452)),
            (HeaderWord::Any(3), Val::Max),
            (HeaderWord::Carve(0.4545), Val::Freed(0.7335)),
        ]),
        Damage::Header(vec![(HeaderWord::Len, Val::Units(0.4129))]),
    ];
    for damage in &cases {
        damage_the_heap::<Striped<Seqlock>>(damage).unwrap();
    }
}

/// A record whose length header claims 2^32 - 1 bytes of key and of value: a read that meets
/// it is `Corrupt`, at once; writes return at once.
fn lengths_of_four_gib_are_corrupt<P: Protocol>()
where
    SharedMap<P>: MapBackend,
{
    shmap::set_stall_timeout(STALL);
    let name = TestName::new("heap-lens");
    let at = Location::Shm(name.as_str().to_owned());
    let map = SharedMap::<P>::create_in(&at, PARAMS).unwrap();
    map.insert(b"big", &[1; 5000]).unwrap(); // lengths escaped to a header word
    let t = map.raw_table().unwrap();
    let r = (0..t.capacity())
        .map(|i| t.ref_of(i))
        .find(|r| r.lens().is_none() && r.offset() != 0)
        .expect("the escaped record");
    let lens = u64::from(u32::MAX) | u64::from(u32::MAX) << 32;
    common::hostile::write_at(
        &heap_path(&at),
        &[(r.offset(), lens.to_le_bytes().to_vec())],
    );
    let corrupt = |what: &str, got: shmap::Result<()>| {
        assert!(
            matches!(got, Err(shmap::Error::Corrupt { .. })),
            "{what}: {got:?}"
        );
    };
    let fresh = SharedMap::<P>::attach_in(&at, AttachOptions::default()).unwrap();
    for m in [&map, &fresh] {
        let start = std::time::Instant::now();
        corrupt("get", m.get(b"big").map(drop));
        corrupt("entries", m.entries().map(drop));
        // A writer's probe passes over a record it cannot read as not its key's (so these
        // may succeed, the insert into another bucket): never out of bounds.
        let _ = m.remove(b"big");
        let _ = m.insert(b"big", b"v");
        assert!(start.elapsed() < common::hostile::BOUND);
        assert_eq!(m.get(b"other").unwrap(), None);
    }
}

#[test]
fn lockfree_lengths_of_four_gib_are_corrupt() {
    lengths_of_four_gib_are_corrupt::<Striped<Seqlock>>();
}

#[test]
fn spinlock_lengths_of_four_gib_are_corrupt() {
    lengths_of_four_gib_are_corrupt::<Striped<SlotLocks>>();
}

#[test]
fn mutex_lengths_of_four_gib_are_corrupt() {
    lengths_of_four_gib_are_corrupt::<GlobalMutex>();
}
