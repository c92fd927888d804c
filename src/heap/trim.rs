//! Giving memory back: runs of small blocks whose every block is free go back to the kernel,
//! and their space to the heap's free extents for any class or large record to reuse
//! (`docs/variable-size-entries.md`, 7: step 5).
//!
//! Why: a free block is reused only by its own class, so after `clear()`, or once a map
//! shrinks, the runs stay resident; punching only large runs (whole pages each) left every
//! small record's pages with the kernel.
//!
//! How, under the heap lock only (readers and writers go on):
//!
//! 1. For each class, the trim pops its whole free list. A block it popped is its own: no
//!    allocator can pop it, no freer holds it (each block is on the list at most once).
//! 2. A run every carved block of which it popped is empty (the class's carve run has carved
//!    as many as its carve word counts, the others all of theirs), and nobody else can name
//!    one of its blocks: not an allocator, not a freer between clearing a bit and pushing the
//!    block (that block would be missing from the trim's set), not a magazine (its blocks stay
//!    off the list). Its bitmap must then be all clear; where it is not, the run is kept. The
//!    carve run goes only if a CAS of its carve word to 0 succeeds: no carver took a block
//!    since the trim counted (one that tries after finds 0, and makes a new run). Model-checked
//!    beside writers that pop, carve and free (`backends/tests/loom_trim.rs`).
//! 3. The other blocks go back on the list; the empty runs join the free extents (the large
//!    free list: a head word `pages << 8 | FREE_BIT` on the extent's first page, its other
//!    pages punched). Neighbouring extents merge into one, and an extent that ends at the
//!    heap's top lowers the top and is punched whole.
//! 4. New runs and large records take their space from the free extents first (aligned,
//!    splitting an extent where it is larger), so the address space is reused.
//!
//! A reader that copies a record from a run punched meanwhile reads zeros (the mapping and the
//! file keep their length), and its version check rejects the copy, as for any freed block
//! (the reuse rule: whoever writes into the space again fences Release first). Killed half
//! way, a trim leaves blocks it had popped off every list: leaked, as a killed writer's are,
//! until a rebuild. Allocators that find their list empty meanwhile carve, or wait for the
//! heap lock to make a run.
//!
//! When: `clear()` asks for one (Python's, and [`Heap::trim`] for Rust users), and frees that
//! go past a handle's magazine count towards the next one: once the blocks freed to the shared
//! lists since the last trim reach a quarter of the blocks it left on them (at least
//! [`TRIM_MIN`]), so a trim's cost, one pop and perhaps one push per free block, is paid for
//! by as many frees.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::classes::{Class, CLASSES, PAGE};
use super::compact::gives_back;
use super::free_list;
use super::store::{
    block_index, Heap, FREE_BIT, W_CARVE, W_FREED, W_HEADS, W_LARGE, W_TOP, W_TRIM_AT,
};
use crate::error::Result;

/// Blocks freed to the shared lists before the first automatic trim, and the least between
/// two.
pub const TRIM_MIN: u64 = 16_384;
/// Most free extents a walk of the large free list visits (a loop in a corrupt list ends).
const MAX_EXTENTS: usize = 1 << 20;

/// What a trim did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Runs of small blocks found empty and given back.
    pub runs: usize,
    /// Bytes of them.
    pub bytes: u64,
    /// Free blocks left on the lists (in runs that still hold a record).
    pub kept_blocks: u64,
    /// Bytes a compaction could give back: per class, the runs that keep free blocks, beyond
    /// the fewest that would hold their records (all of a run of 64 KiB; of a larger run, its
    /// header page and what its free blocks still hold: `compact::gives_back`).
    pub sparse_bytes: u64,
}

impl Heap {
    /// Gives every run of small blocks nothing lives in back to the kernel (see the module
    /// docs), after returning this handle's magazines, and those of handles that are gone,
    /// to the shared lists. Other live handles' magazines keep their runs (at most 32 blocks
    /// or 16 KiB per class and handle).
    pub fn trim(&self) -> Result<Trimmed> {
        let lock = self.lock()?;
        self.recover_magazines_locked()?;
        self.return_magazines();
        let done = self.trim_locked();
        drop(lock);
        done
    }

    /// A trim if frees since the last one make it due and nobody holds the heap lock: for a
    /// free that went to the shared list, `freed` blocks since the handle last counted.
    pub(super) fn trim_if_due(&self, freed: u64) {
        // Relaxed: a heuristic, as the reclaim's counters are.
        let total = self.header(W_FREED).fetch_add(freed, Ordering::Relaxed) + freed;
        let at = self.header(W_TRIM_AT).load(Ordering::Relaxed).max(TRIM_MIN);
        if total < at {
            return;
        }
        // A writer is in the middle of its write: it does not wait for another's trim.
        if let Ok(Some(lock)) = self.try_lock() {
            let _ = self.trim_locked();
            drop(lock);
        }
    }

    /// The trim; the caller holds the heap lock.
    fn trim_locked(&self) -> Result<Trimmed> {
        let mut done = Trimmed::default();
        let mut emptied = Vec::new();
        for c in (0..CLASSES).filter_map(Class::from_index) {
            self.trim_class(c, &mut emptied, &mut done)?;
        }
        if !emptied.is_empty() {
            self.free_extents(emptied)?;
        }
        self.punch_above_top()?;
        self.ask_compaction(done.sparse_bytes)?;
        // Relaxed: heuristics (see `trim_if_due`).
        self.header(W_FREED).store(0, Ordering::Relaxed);
        self.header(W_TRIM_AT)
            .store((done.kept_blocks / 4).max(TRIM_MIN), Ordering::Relaxed);
        Ok(done)
    }

    /// Steps 1 to 3 for class `c`: its empty runs go to `emptied` as (offset, pages).
    fn trim_class(
        &self,
        c: Class,
        emptied: &mut Vec<(u64, u64)>,
        done: &mut Trimmed,
    ) -> Result<()> {
        let head = self.header(W_HEADS + c.index());
        let mut by_run: HashMap<u64, Vec<u64>> = HashMap::new();
        let shape = c.run();
        // Runs of the class that keep free blocks, and the records in them (for `sparse_bytes`).
        let (mut sparse_runs, mut live_in_them, mut free_in_them) = (0usize, 0usize, 0usize);
        let result = loop {
            let popped = free_list::pop(head, |o| self.link_word(c, o))
                .map_err(|o| self.corrupt(format!("a free list names {o:#x}")));
            match popped {
                Ok(Some(b)) if block_index(c, b).is_some() => {
                    let popped = by_run.entry(b & !(shape.bytes as u64 - 1)).or_default();
                    popped.push(b);
                    // More blocks of one run than it has: the list loops (a hostile link), and
                    // would be popped for ever.
                    if popped.len() > shape.blocks {
                        // Every block on it was popped at least once: they go back once each
                        // (below) onto an empty list. (Blocks freed meanwhile leak.)
                        free_list::clear(head);
                        break Err(
                            self.corrupt(format!("the free list of class {} loops", c.index()))
                        );
                    }
                }
                Ok(Some(b)) => {
                    break Err(
                        self.corrupt(format!("{b:#x} on the free list of class {}", c.index()))
                    )
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        // Acquire: as an allocator reads it (the run it names has its header written).
        let carve = self.header(W_CARVE + c.index());
        let cw = carve.load(Ordering::Acquire);
        let carving = (cw != 0).then_some((cw >> 24) * PAGE as u64);
        for (run, blocks) in by_run {
            // The carve run has carved `cw`'s count of blocks so far; the others all of theirs.
            let carved = match Some(run) == carving {
                true => (cw & 0xFF_FFFF) as usize,
                false => shape.blocks,
            };
            let empty = result.is_ok()
                && blocks.len() == carved
                && self.run_is_clear(c, run)
                // The carve run goes only if no carver took a block since `cw` was read: its
                // CAS then fails, and it makes a new run (under the lock we hold) instead.
                // Relaxed: the lock orders the new run's making after us.
                && (Some(run) != carving
                    || carve.compare_exchange(cw, 0, Ordering::Relaxed, Ordering::Relaxed).is_ok());
            if empty {
                emptied.push((run, (shape.bytes / PAGE) as u64));
                done.runs += 1;
                done.bytes += shape.bytes as u64;
                continue;
            }
            let mut blocks = blocks;
            if result.is_err() {
                // Each once (a loop popped some again): the list goes back whole, not looping.
                blocks.sort_unstable();
                blocks.dedup();
            }
            done.kept_blocks += blocks.len() as u64;
            sparse_runs += 1;
            live_in_them += carved.saturating_sub(blocks.len());
            free_in_them += blocks.len();
            for b in blocks {
                // A block popped was a word inside the heap a moment ago; the heap never
                // shrinks its file.
                let link = self.link_or_corrupt(c, b)?;
                // Relaxed: popped, so ours (as in `refill`).
                let flags = self.punch_free(c, b, link.load(Ordering::Relaxed));
                free_list::push_marked(head, b, link, flags);
            }
        }
        let excess = sparse_runs.saturating_sub(live_in_them.div_ceil(shape.blocks));
        let free_per_run = (free_in_them / sparse_runs.max(1)) as u64;
        done.sparse_bytes += excess as u64 * gives_back(c, free_per_run);
        result
    }

    /// Whether run `run`'s head names class `c` and its bitmap is all clear.
    fn run_is_clear(&self, c: Class, run: u64) -> bool {
        let shape = c.run();
        // Relaxed: the blocks are ours (popped); their bits were cleared before their push,
        // whose Release our pop's Acquire pairs with.
        let head_ok = self
            .word(run)
            .is_some_and(|w| w.load(Ordering::Relaxed) & 0xFF == c.index() as u64 + 1);
        head_ok
            && (0..shape.blocks.div_ceil(64)).all(|w| {
                self.word(run + 8 + w as u64 * 8)
                    .is_some_and(|w| w.load(Ordering::Relaxed) == 0)
            })
    }

    /// The free extent at `at` on the large list: its pages (its end below the top) and the
    /// word that links the next one; `Corrupt` where the list names no free extent.
    fn free_extent(&self, at: u64) -> Result<(u64, &std::sync::atomic::AtomicU64)> {
        // Relaxed: the large list is only read and written under the heap lock.
        let h = self
            .word_or_corrupt(at, "a free extent")?
            .load(Ordering::Relaxed);
        let next = self.word_or_corrupt(at + 8, "a free extent")?;
        if h & FREE_BIT == 0 || h & 0xFF != 0 || at % PAGE as u64 != 0 {
            return Err(self.corrupt(format!("the large free list names {at:#x}")));
        }
        // Below the top, as every run: merging, punching and splitting add up its pages (a
        // piece split off past the file would lengthen it when reserved).
        let pages = (h & !FREE_BIT) >> 8;
        self.run_end(at, pages)?;
        Ok((pages, next))
    }

    /// The free large list as (offset, pages), in list order; the caller holds the heap lock.
    fn extents(&self) -> Result<Vec<(u64, u64)>> {
        let mut all = Vec::new();
        // Relaxed: the large list is only read and written under the heap lock.
        let mut run = self.header(W_LARGE).load(Ordering::Relaxed);
        while run != 0 {
            if all.len() == MAX_EXTENTS {
                return Err(self.corrupt("the large free list does not end".into()));
            }
            let (pages, next) = self.free_extent(run)?;
            all.push((run, pages));
            run = next.load(Ordering::Relaxed);
        }
        Ok(all)
    }

    /// Gives back whatever pages the file holds above the top, where no run or extent lies:
    /// found there after churn with kills (13 MiB of zero pages in 1 run of 4 of the kill
    /// test, 3x a fresh map's memory), though every lowering of the top punches what it
    /// gives up; how they come back is not known yet (a stale reader's copy faults in one
    /// page, not thousands). The caller holds the heap lock.
    pub(super) fn punch_above_top(&self) -> Result<()> {
        // Relaxed: only the holder of the heap lock writes `top`.
        let top = self.header(W_TOP).load(Ordering::Relaxed);
        let len = self.checked_len()?;
        if top < len && self.next_data(top)?.is_some_and(|d| d < len) {
            self.punch(top, len);
        }
        Ok(())
    }

    /// Steps 3 and 4's bookkeeping: the free extents become `added` and those listed, merged
    /// where they touch; one that reaches the top lowers it. The caller holds the heap lock.
    pub(super) fn free_extents(&self, added: Vec<(u64, u64)>) -> Result<()> {
        let mut all = self.extents()?;
        all.extend(added);
        all.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(all.len());
        for (at, pages) in all {
            match merged.last_mut() {
                Some((start, n)) if *start + *n * PAGE as u64 > at => {
                    return Err(self.corrupt(format!("free extents overlap at {at:#x}")));
                }
                // Touching, or apart by a gap nothing was ever written in: the padding a run
                // aligned to its size left (every run writes its first page, so no run lies
                // there). Merged, the gap costs nothing and its extents keep one head page.
                Some((start, n)) if self.is_hole(*start + *n * PAGE as u64, at)? => {
                    *n = (at - *start) / PAGE as u64 + pages;
                }
                _ => merged.push((at, pages)),
            }
        }
        // Relaxed: only the holder of the heap lock writes `top`.
        let top = self.header(W_TOP).load(Ordering::Relaxed);
        if let Some(&(at, pages)) = merged.last() {
            if at + pages * PAGE as u64 == top {
                merged.pop();
                self.punch(at, top);
                // Release: as `take_space` publishes it.
                self.header(W_TOP).store(at, Ordering::Release);
            }
        }
        // Listed from the highest down, so the list runs in address order: the lowest
        // extents are reused first and the top can come down again.
        self.header(W_LARGE).store(0, Ordering::Relaxed);
        for &(at, pages) in merged.iter().rev() {
            self.list_free_large(at, pages)?;
        }
        Ok(())
    }

    /// Whether `[from, to)` holds no data at all (`SEEK_DATA`; where the file system cannot
    /// say, it is taken to hold some).
    fn is_hole(&self, from: u64, to: u64) -> Result<bool> {
        Ok(from == to || self.next_data(from)?.is_none_or(|d| d >= to))
    }

    /// Takes `bytes` (whole pages) aligned to `align` (a power of two, at least a page) from
    /// the first free extent that holds them, splitting it where it is larger; `None` if
    /// none does. The caller holds the heap lock, and reserves the pages before writing them.
    pub(super) fn take_free(&self, bytes: u64, align: u64) -> Result<Option<u64>> {
        let mut prev = self.header(W_LARGE);
        for _ in 0..MAX_EXTENTS {
            // Relaxed: the large list is only read and written under the heap lock.
            let at = prev.load(Ordering::Relaxed);
            if at == 0 {
                return Ok(None);
            }
            let (pages, next) = self.free_extent(at)?;
            let end = at + pages * PAGE as u64; // checked by `free_extent`
            let start = at.next_multiple_of(align);
            if start.saturating_add(bytes) > end {
                prev = next;
                continue;
            }
            let after = start + bytes;
            if after < end {
                // The piece after gets a head word on a page that is a hole: reserved first,
                // so a full file system fails here with nothing changed.
                self.reserve_pages(after, PAGE as u64)?;
            }
            prev.store(next.load(Ordering::Relaxed), Ordering::Relaxed);
            if start > at {
                self.relist(at, (start - at) / PAGE as u64)?;
            }
            if after < end {
                self.relist(after, (end - after) / PAGE as u64)?;
            }
            // Zeros, as the top's fresh pages are: a new run's bitmap must read clear, and
            // the first page held the extent's own words (and what lived there before). The
            // other pages are holes already.
            self.punch(start, start + PAGE as u64);
            return Ok(Some(start));
        }
        Err(self.corrupt("the large free list does not end".into()))
    }

    /// Puts a free extent whose pages past the first are holes already first on the large
    /// free list; the caller holds the heap lock (or, rebuilding, excludes every other user).
    pub(super) fn relist(&self, at: u64, pages: u64) -> Result<()> {
        let list = self.header(W_LARGE);
        // Relaxed: under the heap lock.
        self.word_or_corrupt(at + 8, "a free extent")?
            .store(list.load(Ordering::Relaxed), Ordering::Relaxed);
        self.word_or_corrupt(at, "a free extent")?
            .store(pages << 8 | FREE_BIT, Ordering::Relaxed);
        list.store(at, Ordering::Relaxed);
        Ok(())
    }
}
