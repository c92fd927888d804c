//! Large records (over `MAX_SMALL`): whole pages of their own under the heap lock, punched out
//! of the file when freed and reused first-fit (`docs/variable-size-entries.md`, 2.2). A large
//! run's head word is `pages << 8` (class byte 0), bit 63 set while it is free, the next free
//! run in its second word; the record starts [`LARGE_HEAD`] bytes in. The free runs' pages
//! past their head page are holes, so a free run costs one page whatever its size.

use std::sync::atomic::Ordering;

use super::classes::PAGE;
use super::store::{Heap, FREE_BIT, LARGE_HEAD, W_TOP};
use crate::error::Result;

impl Heap {
    fn pages_for(bytes: usize) -> Option<u64> {
        (bytes as u64)
            .checked_add(LARGE_HEAD)
            .map(|b| b.div_ceil(PAGE as u64))
    }

    /// A large block with only the pages of its first `eager` bytes reserved (the rest with
    /// [`Heap::reserve_rest`]): a writer journals the block between the two, so a writer
    /// killed while the kernel zeroes a large value's pages leaves a journal naming it.
    pub(super) fn alloc_large(&self, bytes: usize, eager: usize) -> Result<u64> {
        let pages = Self::pages_for(bytes).ok_or_else(|| self.full(bytes as u64))?;
        let _lock = self.lock()?;
        let bytes = pages * PAGE as u64;
        let run = match self.take_free(bytes, PAGE as u64)? {
            Some(run) => run,
            None => self.take_space(bytes, PAGE as u64)?,
        };
        self.reserve_pages(run, (LARGE_HEAD + eager as u64).min(bytes))?;
        // Relaxed: the record is the caller's until it publishes it; the head word is read
        // only under the heap lock or by a free of this very record.
        self.word_or_corrupt(run, "a large run")?
            .store(pages << 8, Ordering::Relaxed);
        // Release fence: the reuse rule (the run may have held a freed record).
        std::sync::atomic::fence(Ordering::Release);
        Ok(run + LARGE_HEAD)
    }

    pub(super) fn free_large(&self, offset: u64, bytes: usize) -> Result<()> {
        let pages = Self::pages_for(bytes).unwrap_or(u64::MAX);
        let run = offset
            .checked_sub(LARGE_HEAD)
            .filter(|r| r % PAGE as u64 == 0);
        let run = run.ok_or_else(|| self.corrupt(format!("{offset:#x} is no large record")))?;
        let _lock = self.lock()?;
        let head = self.word_or_corrupt(run, "a large run")?;
        // Relaxed: under the heap lock.
        let h = head.load(Ordering::Relaxed);
        if h & FREE_BIT != 0 || h & 0xFF != 0 || h >> 8 < pages {
            return Err(self.corrupt(format!(
                "{offset:#x} is no live large record of {bytes} bytes"
            )));
        }
        // Within the heap's runs: a hostile page count must not make the punch below reach
        // past them (or wrap).
        self.run_end(run, h >> 8)?;
        self.list_free_large(run, h >> 8)
    }

    /// Where the run or free extent at `run` of `pages` pages ends, if that is below the
    /// heap's top (where every run ends); `Corrupt` otherwise. The caller holds the heap lock.
    pub(super) fn run_end(&self, run: u64, pages: u64) -> Result<u64> {
        // Relaxed: only the holder of the heap lock writes `top`.
        let top = self.header(W_TOP).load(Ordering::Relaxed);
        pages
            .checked_mul(PAGE as u64)
            .and_then(|bytes| run.checked_add(bytes))
            .filter(|&end| end <= top && run % PAGE as u64 == 0)
            .ok_or_else(|| self.corrupt(format!("a run of {pages} pages at {run:#x}")))
    }

    /// Gives the pages of the large run at `run` (of `pages` pages) back to the kernel but its
    /// head page, marks it free and puts it first on the large free list; the caller holds
    /// the heap lock (or, rebuilding, excludes every other user).
    pub(super) fn list_free_large(&self, run: u64, pages: u64) -> Result<()> {
        self.punch(run + PAGE as u64, run + pages * PAGE as u64);
        self.relist(run, pages)
    }
}
