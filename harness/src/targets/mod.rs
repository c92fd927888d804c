//! One adapter per map behind one trait, as conc-map-bench does it: the workload loop is
//! written once and knows nothing of the map it drives.

mod inproc;
mod lmdb;
mod null;
mod redis;
mod shm;

pub use inproc::{DashTarget, RwLockTarget};
pub use lmdb::LmdbTarget;
pub use null::NullTarget;
pub use redis::RedisTarget;
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
