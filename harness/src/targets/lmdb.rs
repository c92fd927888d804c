//! LMDB through `heed`: the cross-process key-value store users already know. One environment
//! in a directory on tmpfs (`/dev/shm`), shared by every worker process; each operation is its
//! own transaction, with LMDB's default durability settings.

use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{Database, Env, EnvOpenOptions};

use super::{Store, Target};
use crate::cleanup::Resources;
use crate::outcome::Memory;
use crate::spec::Spec;

/// One process's handle on the shared environment.
#[derive(Debug)]
pub struct LmdbTarget {
    env: Env,
    db: Database<Bytes, Bytes>,
}

fn err(e: heed::Error) -> String {
    format!("lmdb: {e}")
}

impl LmdbTarget {
    /// The map's pages in use (branch, leaf and overflow pages) and its entries: what LMDB
    /// counts a database's size as.
    fn memory(&self) -> Result<Memory, String> {
        let rtxn = self.env.read_txn().map_err(err)?;
        let st = self.db.stat(&rtxn).map_err(err)?;
        let pages = st.branch_pages + st.leaf_pages + st.overflow_pages;
        Ok(Memory {
            bytes: pages as u64 * u64::from(st.page_size),
            entries: st.entries as u64,
        })
    }

    /// Opens (creating if needed) the environment in `dir`, sized for `bytes` of data.
    pub fn open(dir: &Path, bytes: usize) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        // Page-rounded, with room for LMDB's copy-on-write pages and free lists.
        let map_size = (bytes * 4).max(64 << 20).next_multiple_of(4096);
        // SAFETY: heed requires that the environment is not opened twice in one process (we
        // open it once per process) and that its files are not modified by other means.
        let env = unsafe {
            EnvOpenOptions::new()
                .map_size(map_size)
                .max_dbs(1)
                .max_readers(1024)
                .open(dir)
        }
        .map_err(err)?;
        let mut wtxn = env.write_txn().map_err(err)?;
        let db = env.create_database(&mut wtxn, Some("map")).map_err(err)?;
        wtxn.commit().map_err(err)?;
        Ok(Self { env, db })
    }
}

impl Target for LmdbTarget {
    fn get(&self, key: &[u8], buf: &mut Vec<u8>) -> Result<bool, String> {
        let rtxn = self.env.read_txn().map_err(err)?;
        Ok(self
            .db
            .get(&rtxn, key)
            .map_err(err)?
            .map(|v| {
                buf.clear();
                buf.extend_from_slice(v);
            })
            .is_some())
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let mut wtxn = self.env.write_txn().map_err(err)?;
        self.db.put(&mut wtxn, key, value).map_err(err)?;
        wtxn.commit().map_err(err)
    }

    fn remove(&self, key: &[u8]) -> Result<bool, String> {
        let mut wtxn = self.env.write_txn().map_err(err)?;
        let removed = self.db.delete(&mut wtxn, key).map_err(err)?;
        wtxn.commit().map_err(err)?;
        Ok(removed)
    }
}

/// Where LMDB keeps the environment of a run: the directory `NAME-lmdb` in `/dev/shm`, or
/// under DIR with `--storage file:DIR`.
#[derive(Debug)]
pub struct LmdbStore;

fn env_dir(spec: &Spec, name: &str) -> PathBuf {
    spec.storage_dir
        .as_deref()
        .unwrap_or(Path::new("/dev/shm"))
        .join(format!("{name}-lmdb"))
}

/// Data the environment is sized for: the up to 2 x `keys` entries inserts can reach, at the
/// mean value length (sized by the longest, 8..16384 would reserve 20x what it holds), and
/// room for the longest value twice over.
fn env_bytes(spec: &Spec) -> usize {
    let mean = spec.value_size.mean().ceil() as usize;
    2 * spec.keys as usize * (spec.key_size + mean + 64) + 2 * spec.value_size.max()
}

impl Store for LmdbStore {
    fn create(
        &self,
        spec: &Spec,
        name: &str,
        resources: &mut Resources,
    ) -> Result<Box<dyn Target>, String> {
        let dir = env_dir(spec, name);
        resources.dir(dir.clone());
        let env = LmdbTarget::open(&dir, env_bytes(spec))?;
        Ok(Box::new(env))
    }

    fn attach(&self, spec: &Spec, name: &str) -> Result<Box<dyn Target>, String> {
        let env = LmdbTarget::open(&env_dir(spec, name), env_bytes(spec))?;
        Ok(Box::new(env))
    }

    fn memory(&self, spec: &Spec, name: &str) -> Option<Result<Memory, String>> {
        Some(LmdbTarget::open(&env_dir(spec, name), env_bytes(spec)).and_then(|env| env.memory()))
    }
}
