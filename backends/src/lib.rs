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
//!
//! The house (`docs/architecture.md` draws it): dependencies run one way, from the top of
//! this list to the bottom.
//!
//! | module          | owns |
//! |-----------------|------|
//! | `lifecycle/`    | whole-table work: grow, reclaim, compact, validate files |
//! | `table/`        | [`SharedMap`]: open, lookup, keyed writes, read-modify-write, the contract |
//! | `protocols/`    | [`Striped`] writers with [`Seqlock`] or [`SlotLocks`] readers, [`GlobalMutex`] |
//! | `recovery/`     | the registry, leases and repair of the striped protocols |
//! | `protocol.rs`   | the [`Protocol`] trait a table is generic over |
//! | `generations.rs`| the tables of one map ([`Tables`]) and the leftovers of a killed resize |
//! | `slot.rs`       | the slot steps over a std-or-loom word |
//! | `journal.rs`    | what a writer announces: [`Op`], the [`Journal`] trait, the move record |
//! | `redis_map/`    | the same operations on a Redis server (feature `redis`, on by default); stands alone |

mod generations;
mod journal;
mod lifecycle;
mod protocol;
mod protocols;
mod recovery;
#[cfg(all(feature = "redis", not(loom)))]
pub mod redis_map;
pub mod slot;
mod table;

pub use generations::{Tables, Where};
pub use journal::{Journal, Op};
pub use lifecycle::{Compacted, Grown, Reclaimed};
pub use protocol::Protocol;
pub use protocols::{GlobalMutex, ReadDiscipline, Seqlock, SlotLocks, Striped};
pub use recovery::RECORDS;
#[cfg(all(feature = "redis", not(loom)))]
pub use redis_map::{CertReqs, RedisMap, RedisOptions};
pub use shmap;
pub use table::{SharedMap, Validation};

/// The lock-free map, the production one: gets copy and validate, writing nothing to shared
/// memory; writers of a key serialise on its stripe and claim slots by CAS.
pub type LockFreeMap = SharedMap<Striped<Seqlock>>;

/// The spinlock map: as lock-free, but a get locks each bucket it reads.
pub type SpinLockMap = SharedMap<Striped<SlotLocks>>;

/// The global-mutex map: one process-shared pthread mutex for reads and writes alike.
pub type MutexMap = SharedMap<GlobalMutex>;

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
