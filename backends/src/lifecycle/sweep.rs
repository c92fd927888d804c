//! The heap's sweep, driven from the table: every writer excluded, the records the table names
//! marked live, and every other block that no live handle's magazine holds given back
//! (`shmap::heap::Heap::sweep`; `docs/variable-size-entries.md`, 7.2 step 4).
//!
//! Why here: only the table knows which records are live, and only the writer locks stop the
//! allocations and frees the sweep must not race.
//!
//! When: a writer that finds the heap asking for one ([`shmap::heap::Heap::sweep_due`]: a
//! dead handle's magazine area was drained, so a process was killed and may have had blocks
//! in hand) sweeps after its write, with no lock of its own held, as it reclaims tombstones
//! (`reclaim.rs`). [`SharedMap::sweep_heap`] is public for tools and tests.
//!
//! What it relies on: with every writer lock held and the dead's operations repaired, no
//! journal is open, so every record is named by the table or by nothing. A slot left busy in
//! a free state (a claim the repair could not settle, whose record only its journal names)
//! makes the sweep give up, changing nothing.

use std::sync::atomic::Ordering;
use std::time::Instant;

use shmap::heap::Rebuilt;
use shmap::{Meta, Result, SlotState};

use super::reclaim::RETRY_AFTER;
use crate::protocol::Protocol;
use crate::SharedMap;

impl<P: Protocol> SharedMap<P> {
    /// Finds the blocks of the map's heap that processes killed mid-operation left allocated
    /// and frees them, and gives back the runs nothing lives in; writers wait meanwhile,
    /// readers go on. Nothing is changed (all zero) where a slot was left busy in a free
    /// state by a dead writer, whose record only its journal names. Waits for live writers up
    /// to the stall timeout; `None` only if it did not wait.
    pub fn sweep_heap(&self) -> Result<Option<Rebuilt>> {
        self.sweep_holding(true)
    }

    /// A sweep if the heap asks for one, unless a live writer holds its lock past a short
    /// spin (the next writer tries again); for writers after their write.
    pub(crate) fn sweep_if_due(&self) {
        let mut retry = self.reclaim_retry().lock();
        if retry.is_some_and(|at| Instant::now() < at) {
            return;
        }
        // Not at once again after a writer kept its lock: each try spins on every stripe.
        *retry = match self.sweep_holding(false) {
            Ok(None) => Some(Instant::now() + RETRY_AFTER),
            _ => None,
        };
    }

    fn sweep_holding(&self, wait: bool) -> Result<Option<Rebuilt>> {
        let Some(writers) = self.lock_all(wait, "the writer locks, to sweep the heap")? else {
            return Ok(None);
        };
        let (_, table) = self.tables().current()?;
        // Asked for once: a sweep that cannot run (below) is not tried again after every
        // write, only once another dead handle is found.
        table.heap().sweep_answered();
        // Whoever holds a lock is alive or repaired by now; this repairs the dead who held
        // none (a spinlock reader's slot) and fails on what cannot be repaired.
        self.recover_dead()?;
        // Marked before anything is freed (16 bytes per entry while the sweep runs).
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
                _ if m.is_busy() => return Ok(Some(Rebuilt::default())),
                _ => {}
            }
        }
        let swept = table.heap().sweep(live)?;
        drop(writers);
        Ok(Some(swept))
    }
}
