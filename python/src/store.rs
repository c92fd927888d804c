//! Where a `SharedHashMap` keeps its entries: shared memory (or a file) on this machine, or a
//! Redis server (`url=`). Both store the same encoded bytes, so types, key equality and sizes
//! are the same; only the path to the bytes differs.
//!
//! Shared memory keeps the GIL on its hot paths unless it would wait (a get costs ~100 ns, a
//! GIL release ~20); a server round trip costs tens of microseconds, so Redis calls always
//! release it.

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
    pub(crate) fn with<R>(&self, f: impl FnOnce(MapRef<'_>) -> R) -> Option<R> {
        match self {
            Store::Shm(c) => c.with(|m| f(MapRef::Shm(m))),
            Store::Redis(c) => c.with(|m| f(MapRef::Redis(m))),
        }
    }

    pub(crate) fn close(&self) {
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
