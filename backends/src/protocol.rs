//! What distinguishes one backend from another: how writers of a key exclude each other, how
//! a reader gets a consistent copy of a slot, and what survives a process killed mid-way.
//! Everything else (probing, claiming, publishing) is the shared algorithm of
//! [`crate::SharedMap`], as `lock_api` splits a lock's contract from its raw implementations.

use std::fmt::Debug;
use std::sync::atomic::AtomicU64;

use shmap::{BackendKind, KeyHash, MapParams, Meta, RawTable, Result, Segment};

use crate::generations::Tables;
use crate::journal::Journal;
use crate::slot::SlotRead;

/// A synchronisation protocol over the shared table.
pub trait Protocol: Send + Sync + Debug + Sized {
    /// Recorded in the segment header; attaching with another protocol is refused.
    const KIND: BackendKind;

    /// Whether a [`Protocol::ReadGuard`] excludes every writer already (the table mutex): a
    /// scan then never holds [`Protocol::try_lock_all`] as well (it would wait on itself).
    const READS_EXCLUDE_WRITERS: bool = false;

    /// Whether readers take slots (the spinlock protocol's slot locks). If not, the holder of
    /// a key's lock is the only one who can change its slot, and takes it with a plain store
    /// ([`crate::slot::take_exclusive`]).
    const READERS_TAKE_SLOTS: bool;

    /// Held by a writer while it probes for, updates, claims or retires its key.
    type WriteGuard<'a>: Journal
    where
        Self: 'a;

    /// Held while every writer of every key is excluded (a reclaim of tombstones, a resize);
    /// a compaction journals its moves through it.
    type AllGuard<'a>: Journal
    where
        Self: 'a;

    /// Held by a reader for one lookup or one whole scan (a unit type when reads need no lock).
    type ReadGuard<'a>
    where
        Self: 'a;

    /// Bytes of backend area a segment of `params` needs (its lock words and records).
    fn area_len(params: &MapParams) -> usize;

    /// Initialises the backend area of a freshly created, zeroed segment.
    fn init(segment: &Segment) -> Result<()>;

    /// This process's view of the protocol state in a created or attached segment.
    fn open(segment: &Segment) -> Result<Self>;

    /// Serialises writers of the key hashed to `hash` (in every generation of the table: its
    /// hash is the same in each). Repairs of dead holders look at the current table.
    fn lock_key(&self, tables: &Tables, hash: &KeyHash) -> Result<Self::WriteGuard<'_>>;

    /// [`Protocol::lock_key`] that gives up with `None` where it would wait past a short spin
    /// (for callers holding Python's GIL: they release it, then call `lock_key`).
    fn try_lock_key(
        &self,
        tables: &Tables,
        hash: &KeyHash,
    ) -> Result<Option<Self::WriteGuard<'_>>> {
        self.lock_key(tables, hash).map(Some)
    }

    /// Excludes every writer of every key until the guard drops; readers go on. `None` when a
    /// live writer holds its lock past a short spin (try again later). Holding it is what
    /// lets a resize replace the table (`grow.rs`).
    fn try_lock_all(&self, tables: &Tables) -> Result<Option<Self::AllGuard<'_>>>;

    /// Whatever a reader must hold around a lookup.
    fn begin_read(&self, tables: &Tables) -> Result<Self::ReadGuard<'_>>;

    /// Runs `read` over slot `i`, whose control word is `meta` and was the stable word `m1`,
    /// such that everything `read` copies belongs to one publication of the slot. `None`
    /// when the slot changed meanwhile: the caller looks at it again.
    fn read_consistent<R: SlotRead>(
        &self,
        guard: &Self::ReadGuard<'_>,
        i: usize,
        meta: &AtomicU64,
        m1: Meta,
        read: R,
    ) -> Option<R::Out>;

    /// Called by a waiter whose [`shmap::Backoff::owner_check_due`]: whether the holder
    /// `owner` of a busy word in `table` is gone and what it left was repaired (look again
    /// at once).
    fn recover(&self, table: &RawTable, owner: u64) -> Result<bool>;

    /// Repairs what every process that died mid-operation left (in the current table); how
    /// many were repaired.
    fn recover_dead(&self, tables: &Tables) -> Result<usize>;

    /// Frees every lock word and makes [`Protocol::len`] count `len` entries. Only for a
    /// caller that excludes every other process (the first opener of a file-backed map, once
    /// the dead's operations are repaired and every slot validated).
    fn reset(&self, table: &RawTable, len: usize);

    /// Live entries, exact when no write is in flight.
    fn len(&self, tables: &Tables) -> Result<usize>;
}
