//! Implementations of the [`shmap::MapBackend`] contract: one shared open-addressing
//! algorithm ([`SharedMap`]) and one file per synchronisation protocol.
//!
//! | backend        | gets                                  | writes                              |
//! |----------------|---------------------------------------|-------------------------------------|
//! | [`LockFreeMap`] | seqlock: copy, then validate; no writes to shared memory | stripe lock per key, slots claimed by CAS |
//! | [`SpinLockMap`] | lock each bucket read (CAS), unlock   | as lock-free                        |
//! | [`MutexMap`]    | one process-shared pthread mutex       | the same mutex                      |
//!
//! [`RedisMap`] is the same operations ([`shmap::MapOps`]) on a Redis server, for processes on
//! several machines: one command per read, one Lua script per write.

pub mod acks;
pub mod checked;
mod compact;
mod generations;
mod grow;
mod leases;
mod lockfree;
mod mutex;
mod probe;
mod protocol;
mod reclaim;
mod recovery;
#[cfg(not(loom))]
pub mod redis_map;
mod registry;
mod rmw;
pub mod slot;
mod spinlock;
mod striped;
mod stripes;
mod table;
mod validate;

pub use generations::{Tables, Where};
pub use grow::Grown;
pub use lockfree::{LockFreeMap, Seqlock};
pub use mutex::{GlobalMutex, MutexMap};
pub use protocol::{Journal, Op, Protocol};
pub use reclaim::Reclaimed;
#[cfg(not(loom))]
pub use redis_map::{RedisMap, RedisOptions};
pub use registry::RECORDS;
pub use shmap;
pub use spinlock::{SlotLocks, SpinLockMap};
pub use striped::{ReadDiscipline, Striped};
pub use table::SharedMap;
pub use validate::Validation;

/// Runs `$body` with the type alias `$M` bound to the backend of kind `$kind`, so code generic
/// over [`shmap::MapBackend`] can be chosen by name at run time.
#[macro_export]
macro_rules! with_backend {
    ($kind:expr, $M:ident => $body:expr) => {
        match $kind {
            $crate::shmap::BackendKind::LockFree => {
                type $M = $crate::LockFreeMap;
                $body
            }
            $crate::shmap::BackendKind::SpinLock => {
                type $M = $crate::SpinLockMap;
                $body
            }
            $crate::shmap::BackendKind::Mutex => {
                type $M = $crate::MutexMap;
                $body
            }
        }
    };
}
