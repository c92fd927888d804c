//! Where a heap's resident pages are, by kind of run: for tools and tests that ask why a heap
//! holds more than its records (what churn, kills or compaction left), compared with a fresh
//! heap holding the same records.

use std::sync::atomic::Ordering;

use super::classes::PAGE;
use super::rebuild::Run;
use super::store::{Heap, W_LEN, W_TOP};
use crate::error::Result;

/// The resident bytes of one kind of run, and how many runs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Runs of this kind.
    pub runs: usize,
    /// Bytes the kernel holds for them (whole pages).
    pub resident: u64,
}

/// [`Heap::census`]: the heap's resident bytes, split by where they lie.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Census {
    /// The header page and everything below the first run (the areas of handles).
    pub header: u64,
    /// Runs of small blocks, by block size in bytes, in increasing order.
    pub classes: Vec<(usize, Share)>,
    /// Large runs holding a record.
    pub large: Share,
    /// Large runs on the free extents (their first page is kept). All counts below but
    /// `total` are pages written at least once (`mincore`).
    pub free_extents: Share,
    /// Pages above the heap's top that hold data (space reserved ahead of the runs).
    pub above_top: u64,
    /// The rest: pages reserved (`fallocate`) and never written, wherever they lie (a run of
    /// small blocks is reserved whole when made). The kernel holds them, but neither
    /// `mincore` nor `SEEK_DATA` shows them on tmpfs, so they cannot be placed.
    pub unwritten: u64,
    /// All of it: the file's resident bytes.
    pub total: u64,
}

impl Heap {
    /// Where the heap's resident bytes are (see [`Census`]), under the heap lock. Runs are
    /// walked as a sweep walks them; a run's bytes are counted with `lseek(SEEK_DATA)` and
    /// `SEEK_HOLE`, never by reading a page (which would fault a hole in).
    pub fn census(&self) -> Result<Census> {
        let lock = self.lock()?;
        let runs = self.walk_runs(false)?;
        let top = self.header(W_TOP).load(Ordering::Relaxed);
        let mut census = Census {
            total: self.resident_bytes()?,
            ..Census::default()
        };
        let mut classes = std::collections::BTreeMap::<usize, Share>::new();
        let mut covered = 0;
        for run in &runs {
            let (at, end) = match *run {
                Run::Small { at, class } => (at, at + class.run().bytes as u64),
                Run::Large { at, pages, .. } => (at, at + pages * PAGE as u64),
            };
            let bytes = self.data_bytes(at, end)?;
            covered += bytes;
            let share = match *run {
                Run::Small { class, .. } => classes.entry(class.block()).or_default(),
                Run::Large { free: false, .. } => &mut census.large,
                Run::Large { free: true, .. } => &mut census.free_extents,
            };
            share.runs += 1;
            share.resident += bytes;
        }
        let first = runs.first().map_or(top, |r| r.at());
        census.header = self.data_bytes(0, first)?;
        census.above_top = self.data_bytes(top, u64::MAX)?;
        census.classes = classes.into_iter().collect();
        census.unwritten = census
            .total
            .saturating_sub(census.header)
            .saturating_sub(census.above_top)
            .saturating_sub(covered);
        drop(lock);
        Ok(census)
    }

    /// Bytes of `[from, to)` (page-aligned, inside the file) whose pages the kernel holds:
    /// `mincore` over the mapping, which counts pages reserved and never written too (a hole
    /// to `SEEK_DATA` on tmpfs, and in `st_blocks` all the same).
    fn data_bytes(&self, from: u64, to: u64) -> Result<u64> {
        let to = to.min(self.header(W_LEN).load(Ordering::Relaxed));
        if to <= from {
            return Ok(0);
        }
        let pages = ((to - from) / PAGE as u64) as usize;
        let mut resident = vec![0u8; pages];
        // SAFETY: [from, to) lies inside the mapping (the file's length is within the
        // reservation the mapping covers); mincore only fills `resident`, one byte a page.
        let rc = unsafe {
            libc::mincore(
                self.map.as_mut_ptr().add(from as usize).cast(),
                to as usize - from as usize,
                resident.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(crate::shm_file::io_err("mincore", &self.location().label()));
        }
        Ok(resident.iter().filter(|&&b| b & 1 != 0).count() as u64 * PAGE as u64)
    }
}
