//! One adapter per map, each in its own file, as conc-map-bench has them. Behind [`Target`]
//! the workload loop is written once and knows nothing of the map it drives; behind [`Store`]
//! a run knows nothing of where the map of its worker processes lives, how they reach it, or
//! what it leaves behind. [`sharing`] picks the adapter of a `--backend`.

mod inproc;
mod lmdb;
mod null;
mod redis;
mod shm;

use shmap::{BackendKind, MapParams};

use crate::cleanup::Resources;
use crate::outcome::Memory;
use crate::spec::{Spec, TargetKind};

use inproc::{DashTarget, RwLockTarget};
use lmdb::LmdbStore;
use redis::RedisStore;
use shm::ShmStore;

pub use null::NullTarget;
pub use shm::ShmTarget;

/// What the workload loop needs of a map. Errors are strings: the harness only reports them.
pub trait Target: Sync {
    /// Copies the value of `key` into `buf`; `false` if absent.
    fn get(&self, key: &[u8], buf: &mut Vec<u8>) -> Result<bool, String>;
    /// Inserts or replaces.
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), String>;
    /// Removes; `true` if it was present.
    fn remove(&self, key: &[u8]) -> Result<bool, String>;
    /// Inserts or replaces every pair: the prefill. One by one unless the map can do better
    /// (a map on a server: one round trip for many).
    fn insert_all(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
        pairs.iter().try_for_each(|(k, v)| self.insert(k, v))
    }
}

/// Where the map of a run lives when its workers are processes. A run names its map (the
/// name is new to the run) and leaves the rest to the store: the store makes the map from
/// the spec and that name, and every worker reaches it again from the same two.
pub trait Store {
    /// Creates the map of a run of `spec` named `name`, registering with `resources`, before
    /// it exists, all that must be removed when the run ends. The run prefills the map
    /// through the handle returned, then drops it.
    fn create(
        &self,
        spec: &Spec,
        name: &str,
        resources: &mut Resources,
    ) -> Result<Box<dyn Target>, String>;

    /// A worker process's handle on the map that [`Store::create`] made from `spec` and
    /// `name`.
    fn attach(&self, spec: &Spec, name: &str) -> Result<Box<dyn Target>, String>;

    /// After a run under `--kill-every`: attaches again and checks the map whole. `None` for
    /// the stores that `--kill-every` refuses (all but ours).
    fn check_after_kills(&self, _spec: &Spec, _name: &str) -> Option<Result<usize, String>> {
        None
    }

    /// After a run: what the map holds, entries and memory, as issue 32 measures maps beside
    /// each other. `None` where the store cannot say.
    fn memory(&self, _spec: &Spec, _name: &str) -> Option<Result<Memory, String>> {
        None
    }
}

/// What a target's bytes per entry count, for the reports: each store counts its own way.
pub fn memory_basis(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Lmdb => "LMDB's pages in use",
        TargetKind::Redis => "MEMORY USAGE of the map's hashes",
        _ => "the pages of the map's files",
    }
}

/// How the workers of a run share its map.
pub enum Sharing {
    /// Threads of the harness, driving this one map in its memory.
    Threads(Box<dyn Target>),
    /// Processes, each with its own handle on the map this store keeps.
    Processes(&'static dyn Store),
}

/// The adapter of `kind`; an in-process map is new and empty.
pub fn sharing(kind: TargetKind) -> Sharing {
    match kind {
        TargetKind::Lockfree => Sharing::Processes(&ShmStore(BackendKind::LockFree)),
        TargetKind::Spinlock => Sharing::Processes(&ShmStore(BackendKind::SpinLock)),
        TargetKind::Mutex => Sharing::Processes(&ShmStore(BackendKind::Mutex)),
        TargetKind::Lmdb => Sharing::Processes(&LmdbStore),
        TargetKind::Redis => Sharing::Processes(&RedisStore),
        TargetKind::Dashmap => Sharing::Threads(Box::<DashTarget>::default()),
        TargetKind::Rwlock => Sharing::Threads(Box::<RwLockTarget>::default()),
        TargetKind::Null => Sharing::Threads(Box::new(NullTarget)),
    }
}

/// The parameters of our map for a run of `spec`, in shared memory or on a Redis server.
fn map_params(spec: &Spec) -> MapParams {
    MapParams {
        capacity: spec.capacity,
        max_key_size: spec.key_size,
        // The longest value any key gets: the map must take every one.
        max_value_size: spec.value_size.max().max(1),
        // Only rapid-grow lets the table grow (the workload that measures growth).
        max_capacity: if spec.grows() {
            shmap::MAX_CAPACITY
        } else {
            spec.capacity
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Role;

    /// What the reports say of each kind (`Role`) is how it runs.
    #[test]
    fn references_and_the_floor_run_as_threads_the_others_as_processes() {
        for kind in TargetKind::ALL {
            let threads = matches!(sharing(kind), Sharing::Threads(_));
            let in_process = matches!(kind.role(), Role::Reference | Role::Floor);
            assert_eq!(threads, in_process, "{kind}");
        }
    }
}
