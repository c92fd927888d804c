//! A file of shared words that outlives the processes writing it: kill tests and the
//! harness's `--kill-every` keep there what each worker intended and what it acknowledged, so
//! whoever checks after a SIGKILL knows which states of a key are allowed.
//!
//! A key's state word is `version << 1 | present`. A writer stores its `pending` state before
//! the map operation and its `acked` state after it returns, so after a kill the map must hold
//! one of the two: the acknowledged one, or the one in flight.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapRaw;

/// The state word of `version`, present or not.
pub fn state(version: u64, present: bool) -> u64 {
    version << 1 | u64::from(present)
}

/// Whether what the map holds (`Some(stamp)` or `None`) is the state `s` (an absent key
/// matches any absent state, whatever its version).
pub fn holds(s: u64, found: Option<u64>) -> bool {
    match found {
        Some(stamp) => s & 1 == 1 && s >> 1 == stamp,
        None => s & 1 == 0,
    }
}

/// `words` shared words mapped from a file.
#[derive(Debug)]
pub struct AckFile {
    /// A shared mapping (memmap2's raw map: other processes write it, so no `&[u8]` of it
    /// may exist; every access is an atomic).
    map: MmapRaw,
    words: usize,
}

impl AckFile {
    /// Creates (or truncates to zero) `path` with `words` words and maps it.
    pub fn create(path: &Path, words: usize) -> io::Result<Self> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        f.set_len((words * 8) as u64)?;
        Self::map(&f, words)
    }

    /// Maps an existing file made by [`AckFile::create`].
    pub fn open(path: &Path) -> io::Result<Self> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        let words = (f.metadata()?.len() / 8) as usize;
        Self::map(&f, words)
    }

    fn map(f: &std::fs::File, words: usize) -> io::Result<Self> {
        if words == 0 {
            return Err(io::Error::other("empty ack file"));
        }
        let map = memmap2::MmapOptions::new().len(words * 8).map_raw(f)?;
        Ok(Self { map, words })
    }

    /// Word `i`.
    pub fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.words, "ack word {i} of {}", self.words);
        // SAFETY: i < words, so the word lies inside the mapping, which is page-aligned (so
        // 8-aligned), lives as long as `self`, and is only ever accessed atomically.
        unsafe { &*self.map.as_mut_ptr().cast::<AtomicU64>().add(i) }
    }

    /// Word `i`, loaded.
    pub fn get(&self, i: usize) -> u64 {
        // SeqCst: these files are test bookkeeping; simplicity beats speed.
        self.word(i).load(Ordering::SeqCst)
    }

    /// Stores `v` into word `i`.
    pub fn set(&self, i: usize, v: u64) {
        self.word(i).store(v, Ordering::SeqCst);
    }
}
