//! `try_insert` and `try_remove` (for callers holding Python's GIL): where `insert` and
//! `remove` would wait for a lock another writer holds, they give up at once with nothing
//! changed; otherwise they do exactly what `insert` and `remove` do.

mod common;

use std::time::{Duration, Instant};

use shmap::{Inserted, Location, MapBackend, MapOps, MapParams};
use shmap_backends::{Protocol, SharedMap};

use common::TestName;

fn try_ops_give_up_instead_of_waiting<P: Protocol>(tag: &str) {
    let name = TestName::new(&format!("impatient-{tag}")); // unlinked even if the test fails
    let loc = Location::Shm(name.as_str().to_owned());
    let map = SharedMap::<P>::create_in(&loc, MapParams::default()).unwrap();
    map.insert(b"held", b"v1").unwrap();
    let t = map.raw_table().expect("current table");
    let held = map
        .protocol()
        .lock_key(map.tables(), &t.hash(b"held"))
        .unwrap();
    let started = Instant::now();
    assert_eq!(map.try_insert(b"held", b"v2").unwrap(), None);
    assert_eq!(map.try_remove(b"held").unwrap(), None);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        map.get(b"held").unwrap().as_deref(),
        Some(&b"v1"[..]),
        "nothing changed"
    );
    drop(held);
    assert_eq!(
        map.try_insert(b"held", b"v2").unwrap(),
        Some(Inserted::Replaced)
    );
    assert_eq!(map.get(b"held").unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(map.try_insert(b"new", b"x").unwrap(), Some(Inserted::New));
    assert_eq!(map.try_remove(b"held").unwrap(), Some(true));
    assert_eq!(map.try_remove(b"held").unwrap(), Some(false));
    assert_eq!(map.len().unwrap(), 1, "counts as insert and remove do");
    map.unlink().unwrap();
}

#[test]
fn lockfree_try_ops_give_up_instead_of_waiting() {
    try_ops_give_up_instead_of_waiting::<shmap_backends::Striped<shmap_backends::Seqlock>>(
        "lockfree",
    );
}

#[test]
fn spinlock_try_ops_give_up_instead_of_waiting() {
    try_ops_give_up_instead_of_waiting::<shmap_backends::Striped<shmap_backends::SlotLocks>>(
        "spinlock",
    );
}
