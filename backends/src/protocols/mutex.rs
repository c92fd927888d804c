//! The baseline protocol: one `raw_sync` process-shared pthread mutex guards the whole table,
//! for reads and writes alike. It is what a careful programmer writes first, and what the
//! other two must beat.
//!
//! Crash behaviour, measured rather than hidden: raw_sync's mutex is not robust
//! (`PTHREAD_MUTEX_ROBUST` is not set), so a process that dies holding it leaves it locked for
//! ever. This backend waits for it at most [`shmap::stall_timeout`] per operation (through
//! `pthread_mutex_timedlock`) and then fails with [`shmap::Error::Stalled`] instead of hanging,
//! but the map stays unusable until it is recreated.
//!
//! glibc trusts the mutex's bytes: a `__kind` word damaged to name a priority-protect mutex
//! makes `pthread_mutex_timedlock` abort the process (an assertion in `tpp.c`, found by
//! `tests/corruption.rs`). So every lock first checks that word against the one a fresh
//! mutex of ours has, and a mismatch is [`Error::Corrupt`].

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Instant;

use raw_sync::locks::{LockImpl, LockInit, Mutex};
use raw_sync::Timeout;
use shmap::{
    current_owner, stall_timeout, BackendKind, Error, KeyHash, MapParams, Meta, RawTable, Result,
    Segment,
};

use crate::generations::Tables;
use crate::journal::{Journal, Op};
use crate::protocol::Protocol;
use crate::slot::SlotRead;

/// One pthread mutex at the start of the backend area.
pub struct GlobalMutex {
    lock: Box<dyn LockImpl>,
    /// The mutex's bytes: the root segment's backend area (a table segment of a later
    /// generation has none), where `reset` makes it anew.
    area: *mut u8,
    /// The mutex's `__kind` word in shared memory, and the value every mutex of ours has
    /// there (glibc only; elsewhere the layout is not known and nothing is checked).
    kind: Option<(*const AtomicI32, i32)>,
    /// For [`Error::Corrupt`].
    name: String,
}

/// Where glibc keeps a mutex's kind on 64-bit Linux: `int __lock; unsigned __count; int
/// __owner; unsigned __nusers; int __kind;` (`struct __pthread_mutex_s`, the same on x86_64
/// and aarch64). Set by `pthread_mutex_init`, never changed by locking.
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
const KIND_OFFSET: Option<usize> = Some(16);
#[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
const KIND_OFFSET: Option<usize> = None;

/// The kind word of a mutex raw_sync makes, read off one made in a local buffer.
fn expected_kind(offset: usize) -> Option<i32> {
    #[repr(C, align(64))]
    struct Buf([u8; 128]);
    let mut buf = Buf([0; 128]);
    if Mutex::size_of(None) > buf.0.len() || offset + 4 > Mutex::size_of(None) {
        return None;
    }
    let at = buf.0.as_mut_ptr();
    // SAFETY: `at` is 128 writable bytes, 64-byte aligned, more than the mutex needs; the
    // mutex (never locked) is dropped before the buffer.
    let made = unsafe { Mutex::new(at, at) }.ok()?;
    drop(made);
    // SAFETY: `offset + 4` is within the initialised mutex, and 16 is 4-byte aligned.
    Some(unsafe { at.add(offset).cast::<i32>().read() })
}

// SAFETY: the lock is a process-shared pthread mutex in shared memory; pthread mutexes may be
// locked and unlocked from any thread, and the pointer inside stays valid while the segment
// (owned by the same SharedMap, dropped after us) is mapped.
unsafe impl Send for GlobalMutex {}
// SAFETY: as above; `LockImpl` methods take `&self` and are thread-safe pthread calls.
unsafe impl Sync for GlobalMutex {}

impl std::fmt::Debug for GlobalMutex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalMutex")
            .field("mutex", &self.lock.as_raw())
            .finish()
    }
}

/// The held table mutex; unlocked on drop.
#[derive(Debug)]
pub struct TableGuard<'a> {
    mutex: &'a GlobalMutex,
}

impl Journal for TableGuard<'_> {
    fn owner(&self) -> u64 {
        // Only for error messages: under the mutex nobody else waits on our slots.
        u64::from(current_owner())
    }

    fn intend(
        &self,
        _: &RawTable,
        _: Op,
        _: usize,
        _: Meta,
        _: Meta,
        _: Option<shmap::heap::Ref>,
        _: Option<shmap::heap::Ref>,
    ) {
        // A holder that dies leaves the mutex locked: there is no one to recover anything.
    }

    fn finish(&self, table: &RawTable, delta: i32) {
        table.add_live(i64::from(delta));
    }

    fn finish_remove(&self, table: &RawTable) {
        if !table.watches_emptying() {
            return table.add_live(-1);
        }
        // Under the mutex the count is exact: it costs one load.
        table.watch_emptying(
            || {
                table.add_live(-1);
                0 // every remove counts
            },
            1,
            || table.live_entries(),
        );
    }
}

impl Drop for TableGuard<'_> {
    fn drop(&mut self) {
        // Unlocking a mutex we hold cannot fail; if a corrupt mutex word made it fail there is
        // nothing better to do than carry on (never panic: we may be under an FFI boundary).
        let _ = self.mutex.lock.release();
    }
}

fn lock_error(segment: &Segment, what: &'static str, e: Box<dyn std::error::Error>) -> Error {
    Error::Io {
        op: what,
        name: segment.name().to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl GlobalMutex {
    fn acquire(&self) -> Result<TableGuard<'_>> {
        if let Some((word, expected)) = self.kind {
            // SAFETY: `word` points into the mapped backend area, which outlives `self`
            // (see the `Send` impl), 4-byte aligned. Relaxed: a word set once at init.
            let found = unsafe { (*word).load(Ordering::Relaxed) };
            if found != expected {
                return Err(Error::Corrupt {
                    name: self.name.clone(),
                    reason: format!(
                        "the table mutex's kind word is {found:#x}, not {expected:#x}: \
                         locking it could abort the process"
                    ),
                });
            }
        }
        let (started, timeout) = (Instant::now(), stall_timeout());
        match self.lock.try_lock(Timeout::Val(timeout)) {
            Ok(guard) => {
                // Our TableGuard releases it instead: raw_sync's guard panics if unlock fails.
                std::mem::forget(guard);
                Ok(TableGuard { mutex: self })
            }
            Err(e) => Err(if started.elapsed() >= timeout {
                // pthread keeps the owner in private fields: 0 stands for "unknown".
                Error::Stalled {
                    what: "the table mutex",
                    owner: 0,
                    waited_ms: started.elapsed().as_millis() as u64,
                }
            } else {
                Error::Io {
                    op: "pthread_mutex_timedlock",
                    name: String::new(),
                    source: std::io::Error::other(e.to_string()),
                }
            }),
        }
    }
}

impl Protocol for GlobalMutex {
    const KIND: BackendKind = BackendKind::Mutex;
    const READS_EXCLUDE_WRITERS: bool = true;
    const READERS_TAKE_SLOTS: bool = false;
    type WriteGuard<'a> = TableGuard<'a>;
    type ReadGuard<'a> = TableGuard<'a>;
    type AllGuard<'a> = TableGuard<'a>;

    fn area_len(_: &MapParams) -> usize {
        // The area starts 64-byte aligned, so raw_sync needs no alignment padding.
        Mutex::size_of(None)
    }

    fn init(segment: &Segment) -> Result<()> {
        // SAFETY: the backend area is `size_of` bytes inside the mapping, aligned, and nobody
        // else can use it yet (the header is not published).
        let made = unsafe {
            let at = segment.ptr_at(segment.layout().backend_offset);
            Mutex::new(at, at)
        };
        made.map(drop)
            .map_err(|e| lock_error(segment, "pthread_mutex_init", e))
    }

    fn open(segment: &Segment) -> Result<Self> {
        // SAFETY: the area lies inside the validated mapping and was initialised by `init`
        // before the header was published.
        let opened = unsafe {
            let at = segment.ptr_at(segment.layout().backend_offset);
            Mutex::from_existing(at, at)
        };
        let (lock, _) = opened.map_err(|e| lock_error(segment, "attach mutex", e))?;
        // SAFETY: as above: the area lies inside the validated mapping.
        let area = unsafe { segment.ptr_at(segment.layout().backend_offset) };
        let kind = KIND_OFFSET.and_then(|offset| {
            let expected = expected_kind(offset)?;
            // SAFETY: `offset + 4` lies within the backend area (`Mutex::size_of`, checked in
            // `expected_kind`), which lies inside the mapping.
            let at = unsafe { segment.ptr_at(segment.layout().backend_offset).add(offset) };
            Some((at.cast::<AtomicI32>().cast_const(), expected))
        });
        Ok(Self {
            lock,
            area,
            kind,
            name: segment.name().to_owned(),
        })
    }

    fn lock_key(&self, _: &Tables, _: &KeyHash) -> Result<TableGuard<'_>> {
        self.acquire()
    }

    fn try_lock_all(&self, _: &Tables) -> Result<Option<TableGuard<'_>>> {
        // Every operation waits for this mutex anyway: waiting here holds up nobody more.
        self.acquire().map(Some)
    }

    fn begin_read(&self, _: &Tables) -> Result<TableGuard<'_>> {
        self.acquire()
    }

    fn read_consistent<R: SlotRead>(
        &self,
        _: &TableGuard<'_>,
        _: usize,
        _: &AtomicU64,
        _: Meta,
        mut read: R,
    ) -> Option<R::Out> {
        Some(read.read()) // the table mutex excludes every writer
    }

    fn recover(&self, _: &RawTable, _: u64) -> Result<bool> {
        Ok(false) // a holder that died keeps the mutex: nothing to recover from (see above)
    }

    fn recover_dead(&self, _: &Tables) -> Result<usize> {
        Ok(0)
    }

    fn reset(&self, table: &RawTable, len: usize) {
        // In the root's backend area, where `open` found it: not at `table`'s backend offset,
        // which for a table a resize made is where its buckets start (the mutex made there
        // overwrote the first buckets of a grown map's current table at its first open).
        // SAFETY: as in `init`; the caller excludes every other process, so nobody holds or
        // waits on the mutex a crash may have left locked, and re-initialising it is allowed.
        let made = unsafe { Mutex::new(self.area, self.area) };
        // A failed init leaves the old word: at worst the map stalls as before, with an error.
        drop(made);
        // Relaxed: see `Stripes::reset`.
        table
            .segment()
            .header()
            .live_count()
            .store(len as u64, Ordering::Relaxed);
    }

    fn len(&self, tables: &Tables) -> Result<usize> {
        // Each table counts its own entries; a resize copies the count with the entries.
        Ok(tables.current()?.1.live_entries())
    }
}

#[cfg(test)]
mod tests {
    use shmap::{Location, MapBackend, MapOps, MapParams};

    use crate::MutexMap;

    use super::*;

    /// A kind word damaged to name a priority-protect mutex made glibc abort the process at
    /// the next lock; now every operation is `Corrupt`, and a repaired word works again.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    fn a_damaged_kind_word_is_corrupt_not_an_abort() {
        /// Unlinks the map when the test ends, also when it fails.
        struct Named(String);
        impl Drop for Named {
            fn drop(&mut self) {
                let _ = shmap::unlink(&self.0);
            }
        }
        let name = Named(format!("shmap-unit-mutex-kind-{}", std::process::id()));
        let map = MutexMap::create_in(&Location::Shm(name.0.clone()), MapParams::with_capacity(64));
        let map = map.unwrap();
        map.insert(b"k", b"v").unwrap();
        let segment = map.tables().root().segment();
        // SAFETY: the kind word lies inside the backend area of the mapping (see `open`);
        // nobody else uses this map.
        let word = unsafe {
            &*segment
                .ptr_at(segment.layout().backend_offset)
                .add(16)
                .cast::<AtomicI32>()
        };
        let good = word.load(Ordering::Relaxed);
        // PTHREAD_MUTEX_PRIO_PROTECT_NP, process-shared: glibc's tpp path, ceiling 0.
        word.store(0x40 | 0x80, Ordering::Relaxed);
        let e = map.get(b"k").unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert!(matches!(map.insert(b"k", b"w"), Err(Error::Corrupt { .. })));
        word.store(good, Ordering::Relaxed);
        assert_eq!(map.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
