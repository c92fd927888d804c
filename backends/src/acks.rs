//! A file of shared words that outlives the processes writing it: kill tests and the
//! harness's `--kill-every` keep there what each worker intended and what it acknowledged, so
//! whoever checks after a SIGKILL knows which states of a key are allowed.
//!
//! A key's state word is `version << 1 | present`. A writer stores its `pending` state before
//! the map operation and its `acked` state after it returns, so after a kill the map must hold
//! one of the two: the acknowledged one, or the one in flight.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

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
    base: NonNull<AtomicU64>,
    words: usize,
}

// SAFETY: the mapping is shared memory accessed only through atomics, valid until drop.
unsafe impl Send for AckFile {}
// SAFETY: as above.
unsafe impl Sync for AckFile {}

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
        // SAFETY: a new shared mapping of a file we opened, `words * 8` bytes long.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                words * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("null mapping"))?;
        Ok(Self { base, words })
    }

    /// Word `i`.
    pub fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.words, "ack word {i} of {}", self.words);
        // SAFETY: i < words, inside the page-aligned mapping.
        unsafe { &*self.base.as_ptr().add(i) }
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

impl Drop for AckFile {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.words * 8) };
    }
}
