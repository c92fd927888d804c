//! File-backed maps: the same map in a file instead of `/dev/shm` (one layout, one code path
//! after the mapping). Created exclusively with mode 0600, attached by path, flushed with
//! msync, reopened with every entry after every process that used it is gone, and repaired
//! after a writer is SIGKILLed, as in shared memory.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use shmap::{AttachOptions, Error, Location, MapBackend, MapParams};
use shmap_backends::checked;

use common::spawn_worker;

fn params() -> MapParams {
    MapParams {
        capacity: 256,
        max_key_size: 32,
        max_value_size: 200,
    }
}

fn key(id: u64) -> Vec<u8> {
    format!("key-{id:08}").into_bytes()
}

fn file_map_outlives_its_processes<M: MapBackend>() {
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::File(dir.path().join("cache.map"));
    {
        let map = M::create_in(&loc, params()).unwrap();
        for id in 0..100 {
            map.insert(&key(id), &checked::make(id, 7, 40)).unwrap();
        }
        map.remove(&key(3)).unwrap();
        map.flush().unwrap();
        let mode = std::fs::metadata(loc.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            M::create_in(&loc, params()),
            Err(Error::AlreadyExists(_))
        ));
    } // every handle gone: only the file remains
    let map = M::attach_in(&loc, AttachOptions::default()).unwrap();
    assert_eq!(map.len(), 99);
    for id in (0..100).filter(|&id| id != 3) {
        let v = map.get(&key(id)).unwrap().expect("a flushed key is there");
        assert_eq!(checked::verify(id, &v).unwrap(), 7);
    }
    assert_eq!(map.location(), &loc);
    map.unlink().unwrap();
    assert!(!loc.path().exists());
    assert!(matches!(
        M::attach_in(&loc, AttachOptions::default()),
        Err(Error::NotFound(_))
    ));
}

/// A writer of a file-backed map SIGKILLed mid-run: the next process repairs what it left, and
/// every value is whole.
fn file_map_is_repaired_after_a_killed_writer<M: MapBackend>(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::File(dir.path().join("killed.map"));
    let map = M::create_in(&loc, params()).unwrap();
    for id in 0..64 {
        map.insert(&key(id), &checked::make(id, 0, 16)).unwrap();
    }
    let path = loc.path().to_str().unwrap().to_owned();
    for round in 0..5u64 {
        let s = |v: u64| v.to_string();
        let mut w = spawn_worker(
            backend,
            "update",
            &path,
            &[s(64), s(round + 1), s(1_000_000)],
        );
        std::thread::sleep(Duration::from_millis(30 + 17 * round));
        w.kill().unwrap(); // SIGKILL, somewhere in a write
        w.wait().unwrap();
        let fresh = M::attach_in(&loc, AttachOptions::default()).unwrap();
        assert_eq!(fresh.len(), 64, "round {round}");
        for id in 0..64 {
            let v = fresh.get(&key(id)).unwrap().expect("never removed");
            checked::verify(id, &v).unwrap_or_else(|e| panic!("round {round}: {e}"));
            fresh.insert(&key(id), &checked::make(id, 0, 16)).unwrap(); // writable again
        }
    }
    map.flush().unwrap();
    map.unlink().unwrap();
}

macro_rules! persistent_tests {
    ($backend:ident, $M:ty) => {
        mod $backend {
            #[test]
            fn file_map_outlives_its_processes() {
                super::file_map_outlives_its_processes::<$M>();
            }
            #[test]
            fn file_map_is_repaired_after_a_killed_writer() {
                super::file_map_is_repaired_after_a_killed_writer::<$M>(stringify!($backend));
            }
        }
    };
}

persistent_tests!(lockfree, shmap_backends::LockFreeMap);
persistent_tests!(spinlock, shmap_backends::SpinLockMap);
