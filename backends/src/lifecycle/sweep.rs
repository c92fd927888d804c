//! The heap's sweep and compaction, driven from the table: every writer excluded, the records
//! the table names marked live, and every other block that no live handle's magazine holds
//! given back (`shmap::heap::Heap::sweep`; `docs/variable-size-entries.md`, 7.2 step 4); a
//! compaction also moves the records of runs churn left sparse (`shmap::heap::Evacuation`,
//! the heap's `compact.rs`), so those runs empty.
//!
//! Why here: only the table knows which records are live, and only the writer locks stop the
//! allocations and frees the sweep must not race.
//!
//! When: a writer that finds the heap asking for one sweeps after its write, with no lock of
//! its own held, as it reclaims tombstones (`reclaim.rs`): a sweep when a process died holding
//! a writer lock or the heap lock ([`shmap::heap::Heap::sweep_due`]: it may have had blocks in
//! hand that nothing names); a compaction when a trim or a sweep found that one would give
//! back a tenth of the heap's pages ([`shmap::heap::Heap::compaction_due`]).
//! [`SharedMap::sweep_heap`] and [`SharedMap::compact_heap`] are public for tools and tests.
//!
//! What it relies on: with every writer lock held and the dead's operations repaired, no
//! journal is open, so every record is named by the table or by nothing. A slot left busy in
//! a free state (a claim the repair could not settle, whose record only its journal names)
//! makes the sweep give up, changing nothing.

use std::sync::atomic::Ordering;
use std::time::Instant;

use shmap::heap::{Evacuation, Rebuilt};
use shmap::{Meta, RawTable, Result, SlotState};

use super::reclaim::RETRY_AFTER;
use crate::journal::{Journal, Op};
use crate::protocol::Protocol;
use crate::slot;
use crate::table::probe::At;
use crate::SharedMap;

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Runs of small blocks chosen to empty.
    pub runs: usize,
    /// Records moved out of them.
    pub moved: usize,
    /// The sweep that followed the moves: its `punched_runs` counts the runs emptied, its
    /// `leaked` the moved records' old blocks (and what killed writers left).
    pub swept: Rebuilt,
}

impl<P: Protocol> SharedMap<P> {
    /// Finds the blocks of the map's heap that processes killed mid-operation left allocated
    /// and frees them, and gives back the runs nothing lives in; writers wait meanwhile,
    /// readers go on. Nothing is changed (all zero) where a slot was left busy in a free
    /// state by a dead writer, whose record only its journal names. Waits for live writers up
    /// to the stall timeout; `None` only if it did not wait.
    pub fn sweep_heap(&self) -> Result<Option<Rebuilt>> {
        self.sweep_holding(true, false).map(|c| c.map(|c| c.swept))
    }

    /// A sweep that also moves the records of runs of small blocks that churn left sparse
    /// into fuller runs, and gives the emptied runs back to the kernel; as
    /// [`SharedMap::sweep_heap`] otherwise (writers wait, readers go on and retry a record
    /// that moved under them).
    pub fn compact_heap(&self) -> Result<Option<Compacted>> {
        self.sweep_holding(true, true)
    }

    /// A sweep, or a compaction, if the heap asks for one, unless a live writer holds its
    /// lock past a short spin (the next writer tries again); for writers after their write.
    #[inline]
    pub(crate) fn sweep_if_due(&self) {
        if let Ok((_, table)) = self.tables().current() {
            self.sweep_if_due_in(table);
        }
    }

    /// [`SharedMap::sweep_if_due`] for a caller that has the current table in hand; also
    /// gives back a table that removes found empty (`clear.rs`).
    #[inline]
    pub(crate) fn sweep_if_due_in(&self, table: &RawTable) {
        if table.give_back_due() {
            // Errors are not the writer's: its write is done, and the next remove that
            // finds the map empty asks again.
            let _ = self.give_back_if_empty();
        }
        let compact = table.heap().compaction_due();
        if compact || table.heap().sweep_due() {
            self.sweep_now(compact);
        }
    }

    #[cold]
    fn sweep_now(&self, compact: bool) {
        let mut retry = self.reclaim_retry().lock();
        if retry.is_some_and(|at| Instant::now() < at) {
            return;
        }
        // Not at once again after a writer kept its lock: each try spins on every stripe.
        *retry = match self.sweep_holding(false, compact) {
            Ok(None) => Some(Instant::now() + RETRY_AFTER),
            _ => None,
        };
    }

    fn sweep_holding(&self, wait: bool, compact: bool) -> Result<Option<Compacted>> {
        let what = "the writer locks, to sweep the heap";
        let Some(writers) = self.lock_all(wait, what)? else {
            return Ok(None);
        };
        let (gen, table) = self.tables().current()?;
        let heap = table.heap();
        // Asked for once: a sweep that cannot run (below) is not tried again after every
        // write, only once another dead lock holder is found, or another trim finds the heap
        // sparse.
        heap.sweep_answered();
        if compact {
            heap.compaction_answered();
        }
        // Whoever holds a lock is alive or repaired by now; this repairs the dead who held
        // none (a spinlock reader's slot) and fails on what cannot be repaired.
        self.recover_dead()?;
        let Some(live) = self.live_records(table)? else {
            return Ok(Some(Compacted::default()));
        };
        if !compact {
            let swept = heap.sweep(live)?;
            drop(writers);
            return Ok(Some(Compacted {
                swept,
                ..Compacted::default()
            }));
        }
        let (planned, evacuation) = heap.plan_compaction(live)?;
        if evacuation.runs() == 0 {
            // Nothing to move: the plan's own sweep was the whole of it (at 10M entries a
            // second one held the writers another 0.45 s).
            drop(writers);
            return Ok(Some(Compacted {
                swept: planned,
                ..Compacted::default()
            }));
        }
        let mut moved = 0;
        let failed = self
            .view_of(gen, table)
            .evacuate(&writers, &evacuation, &mut moved);
        // Even after a failed move: the withheld blocks and the moved records' old blocks
        // are freed here.
        let live = self.live_records(table)?.unwrap_or_default();
        let swept = heap.sweep(live)?;
        drop(writers);
        failed?;
        Ok(Some(Compacted {
            runs: evacuation.runs(),
            moved,
            swept,
        }))
    }

    /// Every record the table names, as (offset, allocated bytes), found before anything is
    /// freed (16 bytes per entry while a sweep runs); `None` where a slot is left busy in a
    /// free state (see the module docs). The caller excludes every writer.
    fn live_records(&self, table: &RawTable) -> Result<Option<Vec<(u64, usize)>>> {
        let mut live = Vec::with_capacity(self.protocol().len(self.tables())?);
        for i in 0..table.capacity() {
            // Relaxed: every writer is excluded, and the lock's Acquire ordered their writes.
            let m = Meta(table.meta(i).load(Ordering::Relaxed));
            match m.state() {
                Some(SlotState::Full) => match table.record_extent(table.ref_of(i)) {
                    Some(extent) => live.push(extent),
                    // Its block would be freed and reused under a slot still naming it.
                    None => {
                        return Err(
                            table.corrupt(i, "a FULL slot whose record the heap does not hold")
                        )
                    }
                },
                _ if m.is_busy() => return Ok(None),
                _ => {}
            }
        }
        Ok(Some(live))
    }
}

impl<P: Protocol> At<'_, P> {
    /// Moves every record of the runs `evacuation` empties (see [`At::relocate`]), counting
    /// them in `moved`; stops at the first that fails.
    fn evacuate(&self, w: &impl Journal, evacuation: &Evacuation, moved: &mut usize) -> Result<()> {
        let table = self.table;
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for i in 0..table.capacity() {
            // Relaxed: writers excluded (as in `live_records`).
            let m = Meta(table.meta(i).load(Ordering::Relaxed));
            let moves = m.state() == Some(SlotState::Full)
                && table
                    .record_extent(table.ref_of(i))
                    .is_some_and(|(at, bytes)| evacuation.moves(at, bytes));
            if moves && self.relocate(w, i, &mut key, &mut value)? {
                *moved += 1;
            }
        }
        Ok(())
    }

    /// Moves bucket `i`'s record to a new block, key and value unchanged, every writer
    /// excluded by `w`: an update that keeps the value (journalled as one, so a kill is
    /// finished or undone by the repair), whose old record is left for the caller's sweep.
    /// `false` where the bucket holds no stable entry (a spinlock reader's busy word).
    fn relocate(
        &self,
        w: &impl Journal,
        i: usize,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
    ) -> Result<bool> {
        let table = self.table;
        let meta = table.meta(i);
        // Acquire: the entry's words are at least as new as the word.
        let m = Meta(meta.load(Ordering::Acquire));
        if m.state() != Some(SlotState::Full) || m.is_busy() {
            return Ok(false);
        }
        let old = table.ref_of(i);
        key.clear();
        value.clear();
        if !table.read_entry(i, key, value) {
            return Err(table.corrupt(i, "a FULL slot whose record the heap does not hold"));
        }
        let h = table.hash(key);
        let after = m.next(SlotState::Full, h.tag);
        let new = table.new_record(
            &h,
            key,
            value,
            |new| w.intend(table, Op::Update, i, m, after, Some(new), Some(old)),
            || w.finish(table, 0),
        )?;
        if let Err(e) = self.take_own(i, m, w.owner(), true) {
            w.finish(table, 0);
            let _ = table.free_record(new);
            return Err(e);
        }
        table.set_ref(i, new);
        slot::publish(meta, after); // the new record, next version: readers copy again
        w.finish(table, 0);
        Ok(true)
    }
}
