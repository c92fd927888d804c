//! Compaction of runs: the records of runs of small blocks that churn left sparse move into
//! fuller runs, so that the sparse runs empty and go back to the kernel
//! (`docs/variable-size-entries.md`, 2.7).
//!
//! Why: a run keeps its pages while any block of it lives. After churn (inserts, removes and
//! updates that change an entry's size), a class can hold several runs each a tenth full where
//! a fresh map holds one run: measured after the kill test's churn, 85 runs of small blocks
//! held 5.3 MiB for 1.7 MiB of records.
//!
//! How, in three steps, every writer lock held throughout (the caller's, as for a sweep):
//!
//! 1. [`Heap::plan_compaction`]: a sweep that also chooses the runs to empty
//!    ([`choose_evacuation`]) and leaves their free blocks off the free lists and their
//!    carving stopped, so no allocation lands in them until step 3. The handle's own
//!    magazines are returned first, for the same reason.
//! 2. The caller moves each record of a chosen run ([`Evacuation::moves`]) as an update that
//!    keeps the value: a new record, journalled, published with the bucket's next version
//!    (readers retry), and the old one not freed (a free would put it in this handle's
//!    magazine, whence the next move would take it, back into the run being emptied).
//! 3. A sweep from the records the table now names frees the old records; the emptied runs
//!    go back to the kernel.
//!
//! Killed at any step: a move is an update (its repair finishes or undoes it), and whatever
//! the compactor held (the withheld blocks, the old records) is freed by the sweep that the
//! drain of its magazine area asks for.

use std::sync::atomic::Ordering;

use super::classes::{Class, MIN_RUN, PAGE};
use super::rebuild::{Rebuilt, Run};
use super::store::{Heap, W_COMPACTIONS, W_COMPACT_DUE};
use crate::error::Result;

/// Runs a compaction empties, found by [`Heap::plan_compaction`].
#[derive(Debug, Default)]
pub struct Evacuation {
    /// Their offsets, sorted.
    runs: Vec<u64>,
}

impl Evacuation {
    /// Whether the record at `offset` of `bytes` (allocated) lies in a run being emptied.
    pub fn moves(&self, offset: u64, bytes: usize) -> bool {
        Class::of(bytes).is_some_and(|c| {
            let run = offset & !(c.run().bytes as u64 - 1);
            self.runs.binary_search(&run).is_ok()
        })
    }

    /// How many runs are being emptied.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }
}

impl Heap {
    /// Whether a trim or a sweep found that a compaction could empty runs of small blocks
    /// holding a tenth or more of the heap's pages ([`super::Trimmed::sparse_bytes`]).
    #[inline]
    pub fn compaction_due(&self) -> bool {
        // Relaxed: a request, read on every write's way out; rarely written.
        self.header(W_COMPACT_DUE).load(Ordering::Relaxed) != 0
    }

    /// Asks for a compaction if one could empty runs of `sparse` bytes, a tenth or more of
    /// the heap's pages (a trim's or a sweep's finding).
    pub(super) fn ask_compaction(&self, sparse: u64) -> Result<()> {
        if sparse > 0 && sparse * 10 >= self.resident_bytes()? {
            // Relaxed: a request (see `compaction_due`).
            self.header(W_COMPACT_DUE).store(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Compactions planned in this heap's life (for tests and tools).
    pub fn compactions(&self) -> u64 {
        // Relaxed: a statistic.
        self.header(W_COMPACTIONS).load(Ordering::Relaxed)
    }

    /// Takes back the request for a compaction (its caller made one, or cannot).
    pub fn compaction_answered(&self) {
        // Relaxed: as `compaction_due`.
        self.header(W_COMPACT_DUE).store(0, Ordering::Relaxed);
    }

    /// Step 1 of a compaction (see the module docs): a sweep from `live`, as
    /// [`Heap::sweep`], that also chooses the runs to empty. The caller holds every writer
    /// lock of the map, moves the records [`Evacuation::moves`] names, then sweeps again.
    pub fn plan_compaction(
        &self,
        live: impl IntoIterator<Item = (u64, usize)>,
    ) -> Result<(Rebuilt, Evacuation)> {
        let mut runs = Vec::new();
        let done = self.sweep_with(live, Some(&mut runs), false)?;
        runs.sort_unstable();
        // Relaxed: a statistic.
        self.header(W_COMPACTIONS).fetch_add(1, Ordering::Relaxed);
        Ok((done, Evacuation { runs }))
    }
}

/// Which runs to empty: per class, the runs at most half live, emptiest first, as long as
/// the class's records still fit in the runs left (so the moves need no more new runs than
/// they empty), never the fullest run, nor a run holding a live handle's magazine block
/// (which would keep it). `marks` are the runs' live blocks, `holds_kept` which hold a
/// magazine's or an area's. Runs of blocks over 4 KiB too: their free blocks keep a page
/// each (`punch_free`), and their header a page.
pub(super) fn choose_evacuation(
    runs: &[Run],
    marks: &[Vec<u64>],
    holds_kept: &[bool],
) -> Vec<bool> {
    let mut chosen = vec![false; runs.len()];
    let mut by_class: std::collections::HashMap<Class, Vec<(u32, usize)>> = Default::default();
    for (r, run) in runs.iter().enumerate() {
        if let Run::Small { class, .. } = *run {
            let live: u32 = marks[r].iter().map(|w| w.count_ones()).sum();
            if live > 0 {
                by_class.entry(class).or_default().push((live, r));
            }
        }
    }
    for (class, mut list) in by_class {
        let blocks = class.run().blocks as u32;
        let total: u32 = list.iter().map(|&(live, _)| live).sum();
        let needed = total.div_ceil(blocks) as usize;
        list.sort_unstable();
        let mut left = list.len();
        // The last (fullest) run stays.
        for &(live, r) in &list[..list.len() - 1] {
            if left <= needed || live * 2 > blocks {
                break;
            }
            if !holds_kept[r] {
                chosen[r] = true;
                left -= 1;
            }
        }
    }
    chosen
}

/// Bytes a run of `class` whose live blocks are `mark` gives back once emptied (its records
/// take as much again where they move): all of a run of small blocks, which is reserved
/// whole; of a run of larger ones, its header page and what its free blocks still hold (see
/// `gives_back`; blocks never carved count too, a little high for the one run per class
/// still being carved).
pub(super) fn emptied_bytes(class: Class, mark: &[u64]) -> u64 {
    let live: u64 = mark.iter().map(|w| u64::from(w.count_ones())).sum();
    gives_back(class, (class.run().blocks as u64).saturating_sub(live))
}

/// Bytes emptying a run of `class` with `free` free blocks gives back (see `emptied_bytes`);
/// a trim's estimate too. A free block of a run larger than [`MIN_RUN`] has its whole pages
/// punched (`punch_free`): it keeps nothing if its size is a multiple of the page (its run's
/// blocks start on a page), about a page it shares with a neighbour if it is larger, and all
/// of itself if it is smaller.
pub(super) fn gives_back(class: Class, free: u64) -> u64 {
    let shape = class.run();
    if shape.bytes <= MIN_RUN {
        return shape.bytes as u64;
    }
    let kept = match shape.block {
        b if b % PAGE == 0 => 0,
        b if b < PAGE => b as u64,
        _ => PAGE as u64,
    };
    PAGE as u64 + free * kept
}
