//! The in-process references: what the same workload costs with threads sharing one map, no
//! shared memory and no process boundary. A ceiling, not an alternative for processes.

use std::collections::HashMap;

use dashmap::DashMap;
use parking_lot::RwLock;

use super::Target;

/// `dashmap::DashMap`: sharded `RwLock`s, the usual concurrent map in Rust.
#[derive(Debug, Default)]
pub struct DashTarget(pub DashMap<Vec<u8>, Vec<u8>>);

impl Target for DashTarget {
    fn get(&self, key: &[u8], buf: &mut Vec<u8>) -> Result<bool, String> {
        Ok(self
            .0
            .get(key)
            .map(|v| {
                buf.clear();
                buf.extend_from_slice(&v);
            })
            .is_some())
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.0.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool, String> {
        Ok(self.0.remove(key).is_some())
    }
}

/// `parking_lot::RwLock<HashMap>`: one reader-writer lock around std's map.
#[derive(Debug, Default)]
pub struct RwLockTarget(pub RwLock<HashMap<Vec<u8>, Vec<u8>>>);

impl Target for RwLockTarget {
    fn get(&self, key: &[u8], buf: &mut Vec<u8>) -> Result<bool, String> {
        Ok(self
            .0
            .read()
            .get(key)
            .map(|v| {
                buf.clear();
                buf.extend_from_slice(v);
            })
            .is_some())
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.0.write().insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<bool, String> {
        Ok(self.0.write().remove(key).is_some())
    }
}
