//! Where a `SharedHashMap` keeps its entries: shared memory (or a file) on this machine, or a
//! Redis server (`url=`). Both store the same encoded bytes, so types, key equality and sizes
//! are the same; only the path to the bytes differs.
//!
//! Shared memory keeps the GIL on its hot paths unless it would wait (a get costs ~100 ns, a
//! GIL release ~20); a server round trip costs tens of microseconds, so Redis calls always
//! release it.

use pyo3::Python;
use shmap::{Closable, MapOps};
use shmap_backends::{LockFreeMap, RedisMap};

/// The handle, closable by any thread without a lock (see `shmap::Closable`).
// One per handle, never moved once made: boxing the shared-memory map would put a pointer
// chase on every get.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Store {
    Shm(Closable<LockFreeMap>),
    Redis(Closable<RedisMap>),
}

/// The open map a call works on.
#[derive(Clone, Copy)]
pub(crate) enum MapRef<'a> {
    Shm(&'a LockFreeMap),
    Redis(&'a RedisMap),
}

impl MapRef<'_> {
    /// The operations both storages have.
    pub(crate) fn ops(&self) -> &dyn MapOps {
        match *self {
            MapRef::Shm(m) => m,
            MapRef::Redis(m) => m,
        }
    }
}

impl Store {
    /// Runs `f` on the map; `None` once the handle is closed.
    #[inline]
    pub(crate) fn with<R>(&self, py: Python<'_>, f: impl FnOnce(MapRef<'_>) -> R) -> Option<R> {
        match self {
            Store::Shm(c) => enter(py, c, |m| f(MapRef::Shm(m))),
            Store::Redis(c) => enter(py, c, |m| f(MapRef::Redis(m))),
        }
    }

    /// Closes the handle (with the GIL, as every entry and exit: see [`enter`]).
    pub(crate) fn close(&self, _gil: Python<'_>) {
        match self {
            Store::Shm(c) => c.close(),
            Store::Redis(c) => c.close(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Store::Shm(c) => c.is_closed(),
            Store::Redis(c) => c.is_closed(),
        }
    }
}

/// Enters a handle for `f`, with the GIL. Every entry, exit and close of a `Store` happens in
/// a method called from Python, which holds the GIL then (calls that wait release it only in
/// the middle, inside `f`), and the extension does not declare itself free of the GIL, so
/// the GIL orders them all: the count of calls in flight needs no locked instruction.
#[inline]
pub(crate) fn enter<M, R>(_gil: Python<'_>, c: &Closable<M>, f: impl FnOnce(&M) -> R) -> Option<R> {
    // SAFETY: every `with_serialized` and `close` of a `Store`'s handle goes through `enter`
    // or `Store::close`, both of which take a `Python` token: the GIL is held at each entry,
    // exit and close (see above), and no code here calls `Closable::with`.
    unsafe { c.with_serialized(f) }
}
