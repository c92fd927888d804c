//! A file-backed map that grew, closed cleanly and opened again: the first open's validation
//! (and the protocol's reset after it) changes no word of the current table. The mutex
//! backend's reset once made its mutex anew at the current table's backend offset, which in a
//! table a resize made is where the buckets start: its first buckets were overwritten, and a
//! key there was lost after a clear and a reopen about one run in twenty.

mod common;

use std::sync::atomic::Ordering;

use shmap::{MapBackend, MapOps, MapParams};

use common::{reopen_clean, TempFileMap};
use shmap_backends::{Protocol, SharedMap};
use shmap_testkit::checked::{make, verify};

fn key(id: u64) -> Vec<u8> {
    format!("reopen-key-{id:06}").into_bytes()
}

/// Every bucket's control word and reference.
fn words<P: Protocol>(map: &SharedMap<P>) -> Vec<(u64, u64)> {
    let t = map.raw_table().unwrap();
    (0..t.capacity())
        .map(|i| {
            let meta = t.meta(i).load(Ordering::Relaxed);
            (meta, t.ref_of(i).offset())
        })
        .collect()
}

fn a_clean_reopen_changes_no_word_of_a_grown_table<P: Protocol>(tag: &str) {
    const KEYS: u64 = 5_000;
    let file = TempFileMap::new(&format!("reopen-{tag}"));
    let params = MapParams::with_capacity(1024).without_size_limits();
    let before = {
        let map = SharedMap::<P>::create_in(&file.location, params).unwrap();
        for id in 0..KEYS {
            map.insert(&key(id), &make(id, 1, 24)).unwrap();
        }
        assert!(map.generation() > 0, "the table never grew");
        words(&map)
    };
    let map = reopen_clean::<P>(&file.location, KEYS as usize);
    let after = words(&map);
    let changed: Vec<usize> = (0..before.len().max(after.len()))
        .filter(|&i| before.get(i) != after.get(i))
        .collect();
    assert!(
        changed.is_empty(),
        "buckets changed by the reopen: {changed:?}"
    );
    for id in 0..KEYS {
        assert_eq!(verify(id, &map.get(&key(id)).unwrap().unwrap()), Ok(1));
    }
    // The mutex made anew still excludes: writes after the reopen work.
    map.insert(&key(KEYS), &make(KEYS, 2, 24)).unwrap();
    assert_eq!(map.len().unwrap(), KEYS as usize + 1);
}

on_every_backend!(a_clean_reopen_changes_no_word_of_a_grown_table);
