//! Our three backends, each map in `/dev/shm` or, with `--storage file:DIR`, in a file under
//! DIR. A run turns the backend's kind into its map type (`with_backend!`) here and nowhere
//! else.

use shmap::{AttachOptions, BackendKind, Location, MapBackend, MapOps};
use shmap_backends::with_backend;

use super::{map_params, Store, Target};
use crate::cleanup::Resources;
use crate::kill;
use crate::outcome::Memory;
use crate::spec::Spec;

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

/// Where our backend of this kind keeps the map of a run.
#[derive(Debug)]
pub struct ShmStore(pub BackendKind);

/// Where the run's map lives: `/dev/shm/NAME`, or `DIR/NAME.map` with `--storage file:DIR`.
fn location(spec: &Spec, name: &str) -> Location {
    match &spec.storage_dir {
        None => Location::Shm(name.to_owned()),
        Some(dir) => Location::File(dir.join(format!("{name}.map"))),
    }
}

impl Store for ShmStore {
    fn create(
        &self,
        spec: &Spec,
        name: &str,
        resources: &mut Resources,
    ) -> Result<Box<dyn Target>, String> {
        let at = location(spec, name);
        // Registered before it exists: an interrupt in the middle of the create must not
        // leave it behind (removing a name that is not there yet is harmless).
        match &at {
            Location::Shm(_) => resources.segment(name),
            Location::File(path) => resources.file(path.clone()),
        }
        with_backend!(self.0, M => {
            let map = M::create_in(&at, map_params(spec)).map_err(|e| format!("create map: {e}"))?;
            Ok(Box::new(ShmTarget(map)))
        })
    }

    fn attach(&self, spec: &Spec, name: &str) -> Result<Box<dyn Target>, String> {
        with_backend!(self.0, M => {
            let map = M::attach_in(&location(spec, name), AttachOptions::default())
                .map_err(|e| format!("attach: {e}"))?;
            Ok(Box::new(ShmTarget(map)))
        })
    }

    fn check_after_kills(&self, spec: &Spec, name: &str) -> Option<Result<usize, String>> {
        Some(with_backend!(self.0, M => kill::check_map::<M>(&location(spec, name))))
    }

    /// The pages the kernel holds for the map's files: the root, its current table (the
    /// tables a resize replaced were punched out and unlinked) and its heap (the records).
    fn memory(&self, spec: &Spec, name: &str) -> Option<Result<Memory, String>> {
        let at = location(spec, name);
        Some(with_backend!(self.0, M => {
            M::attach_in(&at, AttachOptions::default())
                .and_then(|map| Ok((map.len()?, map.generation())))
                .map_err(|e| format!("attach: {e}"))
                .map(|(entries, generation)| Memory {
                    bytes: (0..=generation)
                        .map(|g| match g {
                            0 => held_bytes(&at.path()),
                            g => held_bytes(&at.table(g).path()),
                        })
                        .sum::<u64>()
                        + held_bytes(&at.heap().path()),
                    entries: entries as u64,
                })
        }))
    }
}

/// Bytes the file system holds for the file at `path` (its blocks), 0 if there is none.
pub fn held_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}
