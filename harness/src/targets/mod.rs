//! One adapter per map behind one trait, as conc-map-bench does it: the workload loop is
//! written once and knows nothing of the map it drives.

mod inproc;
mod lmdb;
mod null;
mod redis;
mod shm;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use shmap::BackendKind;

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

/// Everything `--backend` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Lockfree,
    Spinlock,
    Mutex,
    /// Reference: `dashmap::DashMap` with N threads in one process.
    Dashmap,
    /// Reference: `parking_lot::RwLock<HashMap>` with N threads in one process.
    Rwlock,
    /// Peer: LMDB through `heed`, N processes sharing one environment on tmpfs.
    Lmdb,
    /// Our map on a Redis server (`--redis-url`, or a private `redis-server`): the option for
    /// several machines, measured to show what the network costs.
    Redis,
    /// The harness's floor: the same loop over a map that does nothing (threads).
    Null,
}

/// What a target is to the person choosing a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A way to share a map between processes: ours, or a peer such as LMDB. Only these can
    /// be recommended.
    Candidate,
    /// An in-process map driven by threads: a ceiling to compare with, not a way to share
    /// between processes.
    Reference,
    /// The harness's own cost per operation.
    Floor,
    /// A map on a server (Redis): the way to share between machines. Shown for what that
    /// costs; never chosen over a map on this machine.
    Remote,
}

impl TargetKind {
    pub const ALL: [TargetKind; 8] = [
        Self::Lockfree,
        Self::Spinlock,
        Self::Mutex,
        Self::Dashmap,
        Self::Rwlock,
        Self::Lmdb,
        Self::Redis,
        Self::Null,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Lockfree => "lockfree",
            Self::Spinlock => "spinlock",
            Self::Mutex => "mutex",
            Self::Dashmap => "dashmap",
            Self::Rwlock => "rwlock",
            Self::Lmdb => "lmdb",
            Self::Redis => "redis",
            Self::Null => "null",
        }
    }

    /// The shmap backend, for the three of ours.
    pub fn shm_kind(self) -> Option<BackendKind> {
        match self {
            Self::Lockfree => Some(BackendKind::LockFree),
            Self::Spinlock => Some(BackendKind::SpinLock),
            Self::Mutex => Some(BackendKind::Mutex),
            _ => None,
        }
    }

    pub fn role(self) -> Role {
        match self {
            Self::Dashmap | Self::Rwlock => Role::Reference,
            Self::Null => Role::Floor,
            Self::Redis => Role::Remote,
            _ => Role::Candidate,
        }
    }

    /// References and the floor run threads in one process; candidates and Redis run
    /// processes.
    pub fn is_in_process(self) -> bool {
        matches!(self.role(), Role::Reference | Role::Floor)
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for TargetKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
                format!("unknown backend {s:?}; choose one of: {}", names.join(", "))
            })
    }
}
