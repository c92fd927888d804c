//! The contract every backend implements, in the spirit of `lock_api`: the map's semantics are
//! fixed here, the synchronisation protocol is the backend's.

use std::fmt::Debug;

use crate::error::Result;
use crate::params::{AttachOptions, BackendKind, MapParams};
use crate::shm_file::Location;

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The key was absent and now holds the value.
    New,
    /// The key was present; its value was replaced.
    Replaced,
}

/// What [`MapBackend::update`]'s closure decides for its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Leave the key as it is (nothing is written).
    Keep,
    /// Set the key to this value (inserting it if absent).
    Set(Vec<u8>),
    /// Remove the key (nothing happens if it is absent).
    Remove,
}

/// The operations of a map of byte keys to byte values, whatever holds it: a shared-memory
/// segment ([`MapBackend`]) or a server (the Redis map). How a map is opened is not part of
/// it: a segment is created and attached by name, a server's map by URL and name.
///
/// Every operation is linearizable per key: a get returns a value some insert wrote in whole,
/// never a mix of two; a key is stored at most once; a failed call changed nothing.
pub trait MapOps: Send + Sync + Debug {
    /// The map's name.
    fn name(&self) -> &str;

    /// The shape the map was created with.
    fn params(&self) -> MapParams;

    /// The most entries the map can hold.
    fn capacity(&self) -> usize {
        self.params().capacity
    }

    /// Copies the value of `key` into `out` (replacing its contents); `false` if absent.
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool>;

    /// The value of `key`, if present.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        Ok(self.get_into(key, &mut out)?.then_some(out))
    }

    /// Whether `key` is present.
    fn contains_key(&self, key: &[u8]) -> Result<bool>;

    /// Inserts `key` or replaces its value. A full table is [`crate::Error::TableFull`].
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Inserted>;

    /// Removes `key`; `true` if it was present.
    fn remove(&self, key: &[u8]) -> Result<bool>;

    /// Replaces (or, with `expected` `None`, inserts; with `new` `None`, removes) `key` only if
    /// its value is `expected` (`None`: absent), atomically. `Ok(Err(current))` when it was
    /// not.
    #[allow(clippy::type_complexity)]
    fn compare_exchange(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), Option<Vec<u8>>>>;

    /// The value of `key`, inserting `value` first if it is absent (atomically); `true` if it
    /// was inserted.
    fn get_or_insert(&self, key: &[u8], value: &[u8]) -> Result<(Vec<u8>, bool)>;

    /// Removes `key` and returns the value it had, if it was present (atomically: of callers
    /// racing on one key, one gets the value).
    fn remove_entry(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Number of entries; exact whenever no write is in flight. (Fallible because a map on a
    /// server may not answer; shared memory always does.)
    fn len(&self) -> Result<usize>;

    /// Whether the map has no entries.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A snapshot of the entries: each pair was present, whole, at some instant of the scan;
    /// every key present throughout the scan appears exactly once.
    fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Iterates over [`MapOps::entries`].
    fn iter(&self) -> Result<std::vec::IntoIter<(Vec<u8>, Vec<u8>)>> {
        Ok(self.entries()?.into_iter())
    }
}

/// A [`MapOps`] map in one named shared-memory segment (or file), usable by many processes and
/// threads at once: how such a map is created and attached, and what shared memory adds (an
/// atomic read-modify-write with a closure, reads that never wait).
pub trait MapBackend: MapOps + Sized {
    /// The kind recorded in the segment header.
    const KIND: BackendKind;

    /// Creates the map at `location` (an error if it exists) with the given shape: a
    /// shared-memory name, or a file that outlives the processes (see [`MapBackend::flush`]).
    fn create_in(location: &Location, params: MapParams) -> Result<Self>;

    /// Creates the shared-memory segment `name` (an error if it exists) with the given shape.
    fn create(name: &str, params: MapParams) -> Result<Self> {
        Self::create_in(&Location::Shm(name.to_owned()), params)
    }

    /// Attaches to the existing map at `location`, which must have been created by this
    /// backend and be owned by this user and writable by nobody else
    /// ([`crate::Error::Untrusted`]) unless `opts` trusts it.
    fn attach_in(location: &Location, opts: AttachOptions) -> Result<Self>;

    /// Attaches to the existing segment `name`, which must have been created by this backend
    /// and be owned by this user and writable by nobody else ([`crate::Error::Untrusted`]).
    fn attach(name: &str) -> Result<Self> {
        Self::attach_with(name, AttachOptions::default())
    }

    /// [`MapBackend::attach`] with options (e.g. trusting a foreign segment).
    fn attach_with(name: &str, opts: AttachOptions) -> Result<Self> {
        Self::attach_in(&Location::Shm(name.to_owned()), opts)
    }

    /// Where the map lives.
    fn location(&self) -> &Location;

    /// Writes the map's pages to its file (`msync`): what a file-backed map keeps across a
    /// restart of the machine. (Shared memory is not kept; it returns at once.)
    fn flush(&self) -> Result<()>;

    /// [`MapOps::get_into`] that never waits past a short spin for another process:
    /// `Ok(None)` where `get_into` would have to wait for a writer in the middle of rewriting
    /// the key's slot. For callers that hold something others need while they run (Python's
    /// GIL): they release it, then call `get_into`. Backends whose reads always wait return
    /// `Some` after waiting.
    fn try_get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<Option<bool>> {
        self.get_into(key, out).map(Some)
    }

    /// [`MapOps::contains_key`] that never waits past a short spin, as
    /// [`MapBackend::try_get_into`].
    fn try_contains_key(&self, key: &[u8]) -> Result<Option<bool>> {
        self.contains_key(key).map(Some)
    }

    /// Atomic read-modify-write of `key`: `f` sees its current value (`None` if absent) and
    /// decides what becomes of it; the map applies that decision before any other write of the
    /// key, from any process, can come between. Returns what `f` returned along with it.
    /// Like [`std::sync::atomic::AtomicU64::fetch_update`], `f` may run more than once: when
    /// its decision needs a table that filled up meanwhile, the table grows and `f` runs again
    /// on the value then current; only the last run's decision is applied.
    /// ([`MapOps::compare_exchange`], [`MapOps::get_or_insert`] and [`MapOps::remove_entry`]
    /// are this with a fixed `f`: see [`compare_exchange_by_update`] and its siblings.)
    ///
    /// `f` runs while other writers of the key (for the `mutex` backend, every operation) wait
    /// on a lock word: it must be short (no I/O, no waiting), and it must not use this map,
    /// whose key lock is not re-entrant. A process killed while `f` runs leaves the key as it
    /// was; killed while the decision is written, the old state or the new one. An error
    /// (an oversize new value, a full table) changes nothing.
    fn update<R>(&self, key: &[u8], f: impl FnMut(Option<&[u8]>) -> (Update, R)) -> Result<R>;

    /// Unmaps this handle; the segment stays for other processes.
    fn close(self) {
        drop(self)
    }

    /// Removes the map's name (or file): no new process can attach; mapped handles keep
    /// working.
    fn unlink(&self) -> Result<()> {
        self.location().unlink()
    }
}

/// [`MapOps::compare_exchange`] as one [`MapBackend::update`].
#[allow(clippy::type_complexity)]
pub fn compare_exchange_by_update<M: MapBackend>(
    map: &M,
    key: &[u8],
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<Result<(), Option<Vec<u8>>>> {
    map.update(key, |current| {
        if current == expected {
            let change = new.map_or(Update::Remove, |v| Update::Set(v.to_vec()));
            (change, Ok(()))
        } else {
            (Update::Keep, Err(current.map(<[u8]>::to_vec)))
        }
    })
}

/// [`MapOps::get_or_insert`] as one [`MapBackend::update`].
pub fn get_or_insert_by_update<M: MapBackend>(
    map: &M,
    key: &[u8],
    value: &[u8],
) -> Result<(Vec<u8>, bool)> {
    map.update(key, |current| match current {
        Some(v) => (Update::Keep, (v.to_vec(), false)),
        None => (Update::Set(value.to_vec()), (value.to_vec(), true)),
    })
}

/// [`MapOps::remove_entry`] as one [`MapBackend::update`].
pub fn remove_entry_by_update<M: MapBackend>(map: &M, key: &[u8]) -> Result<Option<Vec<u8>>> {
    map.update(key, |current| (Update::Remove, current.map(<[u8]>::to_vec)))
}
