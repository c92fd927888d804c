//! One adapter per map behind one trait, as conc-map-bench does it: the workload loop is
//! written once and knows nothing of the map it drives.

mod inproc;
mod lmdb;
mod shm;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use shmap::BackendKind;

pub use inproc::{DashTarget, RwLockTarget};
pub use lmdb::LmdbTarget;
pub use shm::ShmTarget;

/// What the workload loop needs of a map. Errors are strings: the harness only reports them.
pub trait Target: Sync {
    /// Copies the value of `key` into `buf`; `false` if absent.
    fn get(&self, key: &[u8], buf: &mut Vec<u8>) -> Result<bool, String>;
    /// Inserts or replaces.
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), String>;
    /// Removes; `true` if it was present.
    fn remove(&self, key: &[u8]) -> Result<bool, String>;
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
}

impl TargetKind {
    pub const ALL: [TargetKind; 6] = [
        Self::Lockfree,
        Self::Spinlock,
        Self::Mutex,
        Self::Dashmap,
        Self::Rwlock,
        Self::Lmdb,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Lockfree => "lockfree",
            Self::Spinlock => "spinlock",
            Self::Mutex => "mutex",
            Self::Dashmap => "dashmap",
            Self::Rwlock => "rwlock",
            Self::Lmdb => "lmdb",
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

    /// In-process maps run threads, not processes: a ceiling to compare with, not a choice
    /// for sharing between processes.
    pub fn is_in_process(self) -> bool {
        matches!(self, Self::Dashmap | Self::Rwlock)
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
