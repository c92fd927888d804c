//! File-backed maps: the same map in a file instead of `/dev/shm` (one layout, one code path
//! after the mapping). Created exclusively with mode 0600, attached by path, flushed with
//! msync, reopened with every entry after every process that used it is gone, and repaired
//! after a writer is SIGKILLed, as in shared memory.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use shmap::{AttachOptions, Error, Location, MapBackend, MapOps, MapParams};
use shmap_backends::{Protocol, SharedMap, Validation};
use shmap_testkit::checked::{self, SplitMix};

use common::spawn_worker;

fn params() -> MapParams {
    MapParams {
        capacity: 256,
        max_key_size: 32,
        max_value_size: 200,
        max_capacity: 256,
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
    assert_eq!(map.len().unwrap(), 99);
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
        assert_eq!(fresh.len().unwrap(), 64, "round {round}");
        for id in 0..64 {
            let v = fresh.get(&key(id)).unwrap().expect("never removed");
            checked::verify(id, &v).unwrap_or_else(|e| panic!("round {round}: {e}"));
            fresh.insert(&key(id), &checked::make(id, 0, 16)).unwrap(); // writable again
        }
    }
    map.flush().unwrap();
    map.unlink().unwrap();
}

const PAGE: usize = 4096;
/// Keys of the first round; the second adds as many again up to [`KEYS`].
const FIRST: u64 = 700;
const KEYS: u64 = 800;

/// What the torn-page test's key `id` may hold after either round: `(stamps, may be absent)`.
fn allowed(id: u64) -> (&'static [u64], bool) {
    match id {
        FIRST.. => (&[2], true),             // inserted in round 2 only
        _ if id % 6 == 0 => (&[1, 2], true), // removed and inserted again, maybe elsewhere
        _ if id % 3 == 0 => (&[1], true),    // removed in round 2
        _ => (&[1, 2], false),               // updated in place (absent only if dropped)
    }
}

/// A map file and its heap file, as the torn-page test reads and writes them.
#[derive(Clone)]
struct Files {
    root: Vec<u8>,
    heap: Vec<u8>,
}

impl Files {
    fn read(loc: &Location) -> Self {
        Self {
            root: std::fs::read(loc.path()).unwrap(),
            heap: std::fs::read(loc.heap().path()).unwrap(),
        }
    }
}

/// Writes the torn-page test's two rounds, each flushed, and returns the files after each.
/// The table is 3/4 full, so probe runs are long and re-inserted keys move to earlier
/// tombstones; its buckets span several pages.
fn two_flushed_rounds<P: Protocol>(loc: &Location) -> (Files, Files) {
    let params = MapParams {
        capacity: 1024,
        max_capacity: 1024, // stays 3/4 full: one table file, whose pages the test tears
        ..params()
    };
    let map = SharedMap::<P>::create_in(loc, params).unwrap();
    let value = |id: u64, stamp: u64| {
        // Records of many size classes: many straddle a page boundary.
        checked::make(id, stamp, 16 + (id * (17 + stamp * 20)) as usize % 180)
    };
    for id in 0..FIRST {
        map.insert(&key(id), &value(id, 1)).unwrap();
    }
    map.flush().unwrap();
    let old = Files::read(loc);
    for id in (0..FIRST).filter(|id| id % 3 == 0) {
        map.remove(&key(id)).unwrap();
    }
    for id in 0..KEYS {
        if id >= FIRST || id % 3 != 0 || id % 6 == 0 {
            map.insert(&key(id), &value(id, 2)).unwrap();
        }
    }
    map.flush().unwrap();
    drop(map);
    (old, Files::read(loc))
}

/// A map's files as the torn-page test reads them: header words as `segment.rs` writes them,
/// buckets as `layout.rs` lays them out (control word, then reference), records as
/// `heap/record.rs` writes them (the test's keys are short: their lengths are in the
/// reference).
struct Image<'a> {
    files: &'a Files,
    capacity: usize,
    seed: u64,
    buckets: usize,
}

fn word_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

impl<'a> Image<'a> {
    fn new(files: &'a Files) -> Self {
        let w = |i: usize| word_at(&files.root, i * 8);
        Self {
            files,
            capacity: w(3) as usize,
            seed: w(6),
            buckets: w(10) as usize,
        }
    }
    /// 0 EMPTY, 1 FULL, 2 TOMBSTONE (`meta.rs`).
    fn state(&self, i: usize) -> u64 {
        (word_at(&self.files.root, self.buckets + i * 16) >> 1) & 3
    }
    fn reference(&self, i: usize) -> u64 {
        word_at(&self.files.root, self.buckets + i * 16 + 8)
    }
    fn key(&self, i: usize) -> &[u8] {
        let r = self.reference(i);
        let (offset, klen) = (
            ((r & ((1 << 40) - 1)) << 3) as usize,
            (r >> 40 & 4095) as usize,
        );
        &self.files.heap[offset..offset + klen]
    }
    fn home(&self, key: &[u8]) -> usize {
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(key, self.seed);
        ((h as u128 * self.capacity as u128) >> 64) as usize
    }
}

/// `new` with slot `i`'s control word as `old` had it. Finer than a disk tears (a sector holds
/// 32 buckets, and a key rarely moves, or a probe run rarely grows, across a sector's edge),
/// to reach on purpose what random tears reach only by chance.
fn with_stale_meta(old: &Image, new: &Image, i: usize) -> Files {
    let mut torn = new.files.clone();
    let at = new.buckets + i * 16;
    torn.root[at..at + 8].copy_from_slice(&old.files.root[at..at + 8]);
    torn
}

/// A key the second round moved from slot `a` to slot `b` (leaving `a`'s reference untouched
/// since): `a`'s stale control word names the key's old record, freed since.
fn moved_key(old: &Image, new: &Image) -> Option<usize> {
    let full = |img: &Image| -> std::collections::HashMap<Vec<u8>, usize> {
        (0..img.capacity)
            .filter(|&i| img.state(i) == 1)
            .map(|i| (img.key(i).to_vec(), i))
            .collect()
    };
    let (before, after) = (full(old), full(new));
    before.into_iter().find_map(|(key, a)| {
        let b = *after.get(&key)?;
        (a != b && new.state(a) != 1 && old.reference(a) == new.reference(a)).then_some(a)
    })
}

/// A slot `k` the second round filled that was EMPTY before, passed by the probe of an entry at
/// `j`: `k`'s stale control word leaves that entry beyond an EMPTY word.
fn passed_empty(old: &Image, new: &Image) -> Option<usize> {
    (0..new.capacity)
        .filter(|&j| new.state(j) == 1)
        .find_map(|j| {
            let home = new.home(new.key(j));
            let probe = (0..new.capacity).map(|d| (home + d) % new.capacity);
            probe
                .take_while(|&k| k != j)
                .find(|&k| old.state(k) == 0 && new.state(k) != 0)
        })
}

/// Attaches as the only process with the file open, which validates it. Other tests of this
/// binary fork workers, and a child between fork and exec holds a copy of every descriptor,
/// so the last handle's session lock can outlive it for a moment: then try again.
fn attach_first<P: Protocol>(loc: &Location, trial: usize) -> (SharedMap<P>, Validation) {
    for _ in 0..500 {
        let map = SharedMap::<P>::attach_in(loc, AttachOptions::default())
            .unwrap_or_else(|e| panic!("trial {trial}: attach failed: {e}"));
        if let Some(report) = map.validation().cloned() {
            return (map, report);
        }
        drop(map);
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("trial {trial}: another process keeps the file open");
}

/// Opens the torn files and checks what a user can see: no torn value, no key twice, `len`
/// exact, every key writable again. Returns what the open's validation reported.
fn open_torn<P: Protocol>(loc: &Location, files: &Files, trial: usize) -> Validation {
    std::fs::write(loc.path(), &files.root).unwrap();
    std::fs::write(loc.heap().path(), &files.heap).unwrap();
    let (map, report) = attach_first::<P>(loc, trial);
    let mut present = 0;
    for id in 0..KEYS {
        let (stamps, may_be_absent) = allowed(id);
        match map.get(&key(id)).unwrap() {
            Some(v) => {
                let stamp = checked::verify(id, &v)
                    .unwrap_or_else(|e| panic!("trial {trial}: key {id}: torn value: {e}"));
                assert!(
                    stamps.contains(&stamp),
                    "trial {trial}: key {id}: stamp {stamp}"
                );
                present += 1;
            }
            None => assert!(
                may_be_absent || report.dropped + report.duplicates > 0,
                "trial {trial}: key {id} lost with nothing reported: {report:?}"
            ),
        }
    }
    let entries = map.entries().unwrap();
    let mut keys: Vec<_> = entries.iter().map(|(k, _)| k.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        entries.len(),
        "trial {trial}: a key listed twice"
    );
    assert_eq!(
        entries.len(),
        present,
        "trial {trial}: an entry no get finds"
    );
    assert_eq!(
        (map.len().unwrap(), report.entries),
        (present, present),
        "trial {trial}"
    );
    for id in 0..KEYS {
        map.insert(&key(id), &checked::make(id, 3, 40)).unwrap();
    }
    assert_eq!(
        map.len().unwrap(),
        KEYS as usize,
        "trial {trial}: writable again"
    );
    report
}

/// An unclean shutdown of the machine, simulated: files flushed after one round of writes
/// and again after a second, then random 4 KiB pages of the second images (the map's and
/// its heap's) replaced by the first's (pages the kernel had not written back; zeros where
/// the heap was shorter), or by random bytes. Opening it never fails and never shows a torn
/// value; what fails validation is reported and dropped.
fn torn_pages_are_found_and_dropped<P: Protocol>() {
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::File(dir.path().join("torn.map"));
    let (old, new) = two_flushed_rounds::<P>(&loc);
    assert_eq!(old.root.len(), new.root.len());
    let mut old_heap = old.heap.clone();
    old_heap.resize(new.heap.len(), 0);
    let (root_pages, heap_pages) = (new.root.len().div_ceil(PAGE), new.heap.len().div_ceil(PAGE));
    // Where the buckets start and end. A stale page of them makes entries unreachable, or
    // names records freed since.
    let (old_image, new_image) = (Image::new(&old), Image::new(&new));
    let bucket_pages = (new_image.buckets / PAGE).max(1)
        ..(new_image.buckets + new_image.capacity * 16).div_ceil(PAGE);
    let mut rng = SplitMix(0x5EED);
    let mut found = Validation::default();
    for trial in 0..150 {
        let mut torn = new.clone();
        // Page 0 of either file (a header) changes only in counters and list heads: keep
        // it, so every trial gets past the header checks.
        let mut chosen = vec![(true, bucket_pages.start + rng.below(bucket_pages.len()))];
        chosen.extend((0..rng.below(6)).map(|_| (true, 1 + rng.below(root_pages - 1))));
        chosen.extend((0..rng.below(6)).map(|_| (false, 1 + rng.below(heap_pages - 1))));
        // Disks tear within a page too, at 512-byte sectors: every other trial tears those.
        let unit = if trial % 2 == 0 { PAGE } else { 512 };
        for (root, p) in chosen {
            let (bytes, before) = match root {
                true => (&mut torn.root, &old.root),
                false => (&mut torn.heap, &old_heap),
            };
            let at = (p * PAGE + rng.below(PAGE / unit) * unit).min(bytes.len() - 1);
            let range = at..(at + unit).min(bytes.len());
            if trial % 8 == 7 {
                let noise: Vec<u8> = range.clone().map(|_| rng.below(256) as u8).collect();
                bytes[range].copy_from_slice(&noise);
            } else {
                bytes[range.clone()].copy_from_slice(&before[range]);
            }
        }
        let r = open_torn::<P>(&loc, &torn, trial);
        found.dropped += r.dropped;
        found.duplicates += r.duplicates;
        found.bridged += r.bridged;
        found.bad_words += r.bad_words;
    }
    // The trials must have torn entries, or they proved nothing.
    assert!(found.dropped > 0, "{found:?}");
    // The two kinds of damage random tears meet only by chance, made on purpose. A stale
    // control word over a moved key's old slot names the key's old record, which the move
    // freed (a free writes the block's first word): dropped by its checksum, or, were the
    // record whole, dropped as the key's second copy.
    let a = moved_key(&old_image, &new_image).expect("the second round moves keys");
    let r = open_torn::<P>(&loc, &with_stale_meta(&old_image, &new_image, a), 97);
    assert!(r.dropped + r.duplicates > 0, "{r:?}");
    let k = passed_empty(&old_image, &new_image).expect("the second round fills probe runs");
    let r = open_torn::<P>(&loc, &with_stale_meta(&old_image, &new_image, k), 98);
    assert!(r.bridged > 0, "{r:?}");
    // A clean file is reported clean.
    let r = open_torn::<P>(&loc, &new, 99);
    assert!(r.is_clean(), "{r:?}");
}

/// Every process that used a file-backed map killed, the mutex one while it holds the table
/// lock: the next process to open the file alone repairs it, and the map works at once.
fn file_map_reopens_after_every_user_was_killed<P: Protocol>(backend: &str) {
    // The mutex keeps no journal: the entry its holder was rewriting when killed is lost
    // (dropped and reported); the striped backends redo it from the journal.
    let may_lose = usize::from(backend == "mutex");
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::File(dir.path().join("all-killed.map"));
    let map = SharedMap::<P>::create_in(&loc, params()).unwrap();
    for id in 0..64 {
        map.insert(&key(id), &checked::make(id, 0, 16)).unwrap();
    }
    map.flush().unwrap();
    drop(map); // from here on only the workers have it open
    let path = loc.path().to_str().unwrap().to_owned();
    let s = |v: u64| v.to_string();
    let mut workers: Vec<_> = (1..=3)
        .map(|w| spawn_worker(backend, "update", &path, &[s(64), s(w), s(1_000_000)]))
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    for w in &mut workers {
        w.kill().unwrap(); // SIGKILL, somewhere in a write
    }
    for w in &mut workers {
        w.wait().unwrap();
    }
    let started = std::time::Instant::now();
    let (map, report) = attach_first::<P>(&loc, 0);
    assert!(report.dropped <= may_lose, "{report:?}");
    assert_eq!(
        report.dropped + report.bad_words + report.duplicates,
        report.dropped
    );
    assert_eq!(map.len().unwrap(), 64 - report.dropped);
    for id in 0..64 {
        if let Some(v) = map.get(&key(id)).unwrap() {
            checked::verify(id, &v).unwrap();
        }
        map.insert(&key(id), &checked::make(id, 9, 16)).unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // A second handle while the first is open does not validate again.
    let second = SharedMap::<P>::attach_in(&loc, AttachOptions::default()).unwrap();
    assert!(second.validation().is_none());
    map.unlink().unwrap();
}

macro_rules! persistent_tests {
    ($backend:ident, $P:ty) => {
        mod $backend {
            type M = shmap_backends::SharedMap<$P>;
            #[test]
            fn file_map_outlives_its_processes() {
                super::file_map_outlives_its_processes::<M>();
            }
            #[test]
            fn torn_pages_are_found_and_dropped() {
                super::torn_pages_are_found_and_dropped::<$P>();
            }
            #[test]
            fn file_map_reopens_after_every_user_was_killed() {
                super::file_map_reopens_after_every_user_was_killed::<$P>(stringify!($backend));
            }
        }
    };
}

persistent_tests!(lockfree, shmap_backends::Striped<shmap_backends::Seqlock>);
persistent_tests!(spinlock, shmap_backends::Striped<shmap_backends::SlotLocks>);
// The mutex is not robust: a writer killed holding it stalls the processes still running
// (see `mutex.rs`), so it has no killed-writer test here; once every user is gone, the next
// opener re-initialises it.
persistent_tests!(mutex, shmap_backends::GlobalMutex);

#[test]
fn lockfree_file_map_is_repaired_after_a_killed_writer() {
    file_map_is_repaired_after_a_killed_writer::<shmap_backends::LockFreeMap>("lockfree");
}

#[test]
fn spinlock_file_map_is_repaired_after_a_killed_writer() {
    file_map_is_repaired_after_a_killed_writer::<shmap_backends::SpinLockMap>("spinlock");
}
