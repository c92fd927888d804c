//! The sweep: what a killed process had allocated and nothing names is found and given back
//! while other handles stay open (`docs/variable-size-entries.md`, 7.2 step 4).
//!
//! Why: a writer killed between the heap's handing it a block and its journal's naming the
//! block, inside a magazine's give or take, or a trim killed with a class's free list popped,
//! leaves blocks that no record, journal, magazine or free list names. Before the sweep only
//! a file map's first open (the rebuild, with every handle gone) found them; shared memory
//! kept them until `unlink`.
//!
//! How: the caller marks the live records from the table; the sweep adds the magazine areas
//! of live handles and what they hold, then rebuilds the heap's bookkeeping from that mark
//! (`rebuild.rs`): every other block is free, every run nothing lives in goes back to the
//! kernel. The areas of dead handles are drained first, so their blocks are free too.
//!
//! **Exclusion.** The rebuild rewrites every bitmap and free list, so nothing may allocate or
//! free meanwhile but readers may read (they write nothing, and a copy from a block freed here
//! fails its version check, as after any free). The caller holds every writer lock: every
//! allocation and free of a record happens under one, as does a process's first magazine use
//! (the claim of an area, and its drains of dead ones); a repair frees a dead writer's records
//! under that writer's stripe, which still names it until the repair is over, from whichever
//! process repairs (a waiter, `len`, a registration). The sweep takes the heap lock, which
//! excludes everything else that moves blocks: trims, large runs, and the drains outside a
//! writer's operation (`recover_magazines`, a trim's return of its magazines, a handle's
//! drop). And with every writer lock held, no journal is open: a writer opens one only under
//! its lock, and taking the lock of a dead holder repairs (closes) its journal first, its free
//! included. So the table names every record a journal could.
//!
//! When: only a process that died inside one of those windows can have leaked, and each of
//! them lies under a writer lock or the heap lock. So the repair of a dead writer lock's
//! holder, and the taker of a heap lock whose holder died (`space.rs`), ask for a sweep
//! (`W_SWEEP_DUE`); the next writer that finds it due after its write runs it, as it runs a
//! tombstone reclaim; [`Heap::sweep`] is public for tools and tests. A process that died
//! holding neither (killed between operations, or gone by `_exit` without dropping its
//! handle, as a forked worker does) had nothing in hand but its magazines, which the next
//! drain of its area gives back: no sweep. Before, every drain of a dead handle's area asked
//! for one, and writers waited ~46 ms at 1M entries for each worker that exited that way. The sweep takes the whole heap at once (a walk of its runs, a write of each bitmap,
//! a push of each free block): its cost follows the heap, and writers wait for it.

use std::sync::atomic::Ordering;

use super::rebuild::Rebuilt;
use super::store::{Heap, W_SWEEPS, W_SWEEP_DUE};
use crate::error::Result;

impl Heap {
    /// Frees every block that is neither a record of `live` (offset, and the record's bytes
    /// as allocated) nor held by a live handle's magazine area, and gives back the runs
    /// nothing lives in. A live record that is no block, or named twice, is `Corrupt`, with
    /// nothing freed.
    ///
    /// The caller holds every writer lock of the map, and `live` names every record its
    /// table names (see the module docs); readers may go on.
    pub fn sweep(&self, live: impl IntoIterator<Item = (u64, usize)>) -> Result<Rebuilt> {
        self.sweep_with(live, None, false)
    }

    /// The sweep of a map that holds no record (a `clear`, or a table removes emptied):
    /// every block is freed, this handle's magazines' too, so that the runs they were in go
    /// back as well. Other live handles keep theirs (at most 16 KiB of blocks per class).
    pub fn sweep_emptied(&self) -> Result<Rebuilt> {
        self.sweep_with(std::iter::empty(), None, true)
    }

    /// The sweep; with `evacuate`, also the choice of runs to empty (`compact.rs`); with
    /// `ours`, this handle's magazines are given back first.
    pub(super) fn sweep_with(
        &self,
        live: impl IntoIterator<Item = (u64, usize)>,
        evacuate: Option<&mut Vec<u64>>,
        ours: bool,
    ) -> Result<Rebuilt> {
        let lock = self.lock()?;
        self.recover_magazines_locked()?;
        if ours || evacuate.is_some() {
            // Our magazines empty: the moves then allocate from the lists the rebuild makes.
            self.return_magazines();
        }
        // Under the heap lock, and every drain that asks (a claim, a trim, the one above) is
        // excluded until the sweep ends.
        self.sweep_answered();
        let kept = self.area_blocks();
        let done = self
            .rebuild_keeping(live, false, kept, evacuate)
            .map(|(done, _)| done);
        // Relaxed: a statistic.
        self.header(W_SWEEPS).fetch_add(1, Ordering::Relaxed);
        drop(lock);
        done
    }

    /// Whether a sweep was asked for since the last one: a process died holding a writer
    /// lock or the heap lock, so blocks it had in hand may be leaked, and a sweep finds them.
    #[inline]
    pub fn sweep_due(&self) -> bool {
        // Relaxed: a request, read on every write's way out; rarely written.
        self.header(W_SWEEP_DUE).load(Ordering::Relaxed) != 0
    }

    /// Asks for a sweep: the repair of a writer that died holding its lock (`backends`'
    /// recovery) and the taker of a heap lock whose holder died call it.
    pub fn request_sweep(&self) {
        // Relaxed: a request; the sweep that answers it takes every writer lock and the heap
        // lock, which order it after whatever the dead left.
        self.header(W_SWEEP_DUE).fetch_add(1, Ordering::Relaxed);
    }

    /// Takes back the request for a sweep (its caller found it could not run one: it is not
    /// tried again until it is asked for again).
    pub fn sweep_answered(&self) {
        // Relaxed: as in `sweep`.
        self.header(W_SWEEP_DUE).store(0, Ordering::Relaxed);
    }

    /// Sweeps made in this heap's life (for tests and tools).
    pub fn sweeps(&self) -> u64 {
        // Relaxed: a statistic.
        self.header(W_SWEEPS).load(Ordering::Relaxed)
    }
}
