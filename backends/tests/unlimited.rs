//! Maps without size limits (issue 32, item 2): `MapParams::without_size_limits` takes keys
//! and values of any size, here a value past 1 GiB and a 64 MiB key, on shared memory and on
//! a file (whose checksums cover them, and whose first open checks them), and gives a large
//! record's pages back to the kernel when it goes.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use shmap::{AttachOptions, Location, MapBackend, MapOps, MapParams};
use shmap_backends::{Protocol, SharedMap};

use common::TestName;

/// 1 GiB and one page: "at least 1 GiB" with a length that is no power of two.
const BIG: usize = (1 << 30) + 4096 + 3;

/// A value that checks itself: byte `i` depends on `i` and on `seed`, so a torn, shifted or
/// stale copy differs somewhere.
fn big_value(seed: u8) -> Vec<u8> {
    (0..BIG)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// Bytes the kernel holds for a file (its allocated blocks): what a map's pages cost.
fn held(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn round_trip<P: Protocol>(loc: &Location, heap: &Path) {
    let params = MapParams::with_capacity(64).without_size_limits();
    let map = SharedMap::<P>::create_in(loc, params).unwrap();
    let value = big_value(1);
    map.insert(b"big", &value).unwrap();
    let key: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    map.insert(&key, b"a long key").unwrap();
    map.insert(b"small", b"v").unwrap();
    assert!(
        map.get(b"big").unwrap().as_deref() == Some(&value[..]),
        "1 GiB value differs"
    );
    assert_eq!(map.get(&key).unwrap().as_deref(), Some(&b"a long key"[..]));
    assert!(held(heap) > BIG as u64, "the value is not in the heap?");

    // Another handle sees the same entries (a file's attach checks them).
    drop(map);
    let map = SharedMap::<P>::attach_in(loc, AttachOptions::default()).unwrap();
    assert!(
        map.get(b"big").unwrap().as_deref() == Some(&value[..]),
        "differs after attach"
    );
    assert_eq!(
        map.initial_params().max_value_size,
        shmap::MAX_VALUE_SIZE_LIMIT
    );

    // Replaced by another large value, then by a small one, then removed: the large runs'
    // pages go back to the kernel each time (they are punched out when freed).
    drop(value);
    let other = big_value(2);
    map.insert(b"big", &other).unwrap();
    assert!(
        map.get(b"big").unwrap().as_deref() == Some(&other[..]),
        "the update differs"
    );
    assert!(
        held(heap) < 2 * BIG as u64 + (64 << 20),
        "the old value's pages were kept"
    );
    drop(other);
    map.insert(b"big", b"now small").unwrap();
    assert!(map.remove(&key).unwrap());
    assert!(
        held(heap) < 16 << 20,
        "{} bytes held after the large records went",
        held(heap)
    );
    assert_eq!(map.get(b"big").unwrap().as_deref(), Some(&b"now small"[..]));
    assert_eq!(map.len().unwrap(), 2);
    map.unlink().unwrap();
}

#[test]
fn lockfree_shm_holds_a_value_past_one_gib() {
    let name = TestName::new("unlimited-shm");
    let loc = Location::Shm(name.as_str().to_owned());
    let heap = Path::new("/dev/shm").join(format!("{}.heap", name.as_str()));
    round_trip::<shmap_backends::Striped<shmap_backends::Seqlock>>(&loc, &heap);
}

#[test]
fn mutex_file_holds_a_value_past_one_gib() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unlimited.map");
    let heap = dir.path().join("unlimited.map.heap");
    round_trip::<shmap_backends::GlobalMutex>(&Location::File(path), &heap);
}
