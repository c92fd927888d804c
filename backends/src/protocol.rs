//! What distinguishes one backend from another: how writers of a key exclude each other, and
//! how a reader gets a consistent copy of a slot. Everything else (probing, claiming,
//! publishing) is the shared algorithm of [`crate::SharedMap`], as `lock_api` splits a lock's
//! contract from its raw implementations.

use std::fmt::Debug;
use std::sync::atomic::AtomicU64;

use shmap::{BackendKind, KeyHash, MapParams, Meta, Result, Segment};

/// A synchronisation protocol over the shared table.
pub trait Protocol: Send + Sync + Debug + Sized {
    /// Recorded in the segment header; attaching with another protocol is refused.
    const KIND: BackendKind;

    /// Held by a writer while it probes for, updates, claims or retires its key.
    type WriteGuard<'a>
    where
        Self: 'a;

    /// Held by a reader for one lookup or one whole scan (a unit type when reads need no lock).
    type ReadGuard<'a>
    where
        Self: 'a;

    /// Bytes of backend area a segment of `params` needs (its lock words).
    fn area_len(params: &MapParams) -> usize;

    /// Initialises the backend area of a freshly created, zeroed segment.
    fn init(segment: &Segment) -> Result<()>;

    /// This process's view of the protocol state in a created or attached segment.
    fn open(segment: &Segment) -> Result<Self>;

    /// Serialises writers of the key hashed to `hash`.
    fn lock_key(&self, hash: &KeyHash) -> Result<Self::WriteGuard<'_>>;

    /// Whatever a reader must hold around a lookup.
    fn begin_read(&self) -> Result<Self::ReadGuard<'_>>;

    /// Runs `read` over the slot whose control word is `meta` and was the stable word `m1`,
    /// such that everything `read` copies belongs to one publication of the slot. `None`
    /// when the slot changed meanwhile: the caller looks at it again.
    fn read_consistent<R>(&self, meta: &AtomicU64, m1: Meta, read: impl FnMut() -> R) -> Option<R>;
}
