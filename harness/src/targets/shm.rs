//! Our three backends.

use shmap::MapBackend;

use super::Target;

/// Any [`MapBackend`] as a workload target.
#[derive(Debug)]
pub struct ShmTarget<M>(pub M);

impl<M: MapBackend> Target for ShmTarget<M> {
    fn get(&self, key: &[u8], buf: &mut Vec<u8>) -> Result<bool, String> {
        self.0.get_into(key, buf).map_err(|e| e.to_string())
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.0
            .insert(key, value)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn remove(&self, key: &[u8]) -> Result<bool, String> {
        self.0.remove(key).map_err(|e| e.to_string())
    }
}
