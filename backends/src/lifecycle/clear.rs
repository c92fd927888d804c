//! Emptying the map in place: every entry removed at once (or the last one removed), and the
//! memory the entries took given back to the kernel, the table's pages as well as the heap's
//! runs (issue 32, item 3).
//! The table keeps its size (its pages come back as it fills again): a smaller table would
//! take one of the map's [`shmap::MAX_GENERATIONS`] table generations at every clear.
//!
//! How, with every writer stopped while readers go on:
//!
//! 0. Take the resize lock (no table is being made from this one meanwhile) and every writer
//!    lock, and repair what dead processes left. A slot still busy in a free state (a claim
//!    the repair could not settle, whose record only its journal names) would have that
//!    record freed twice; then the entries are removed one by one instead, as a remove does.
//! 1. Every FULL slot becomes a TOMBSTONE of the next version (Release), journalled as a
//!    remove is (so the repair of a clearer killed between the two finishes the count, and
//!    frees the record); a spinlock reader that holds one is waited for.
//! 2. The generation word moves on ([`shmap::EMPTIED`], Release). From here no reader meets
//!    an entry until the clear ends; a reader that loaded the word before reads again at its
//!    end. That is what makes step 4 safe: versions start again from 0 there, and only a
//!    reader that saw a FULL word from before could meet the same word again.
//! 3. The heap is swept with no live record: every record is freed, this handle's magazines
//!    too, and the runs go back to the kernel (other live handles keep their magazines, and
//!    so the runs those blocks are in). A copy a reader made from a freed record fails its
//!    version check: step 1 published each slot's next version first.
//! 4. The table's pages are punched out ([`shmap::RawTable::empty_in_place`]): EMPTY words,
//!    pass counts 0, and the counters of an empty table.
//!
//! A map emptied by removes is given back the same way, by the upkeep of the remove that
//! found it empty (`shmap::RawTable::watch_emptying`): [`SharedMap::give_back_if_empty`]
//! checks under the same locks that no slot is FULL or busy, then runs steps 2 to 4.
//!
//! Killed anywhere: every step leaves a table lookups read right (tombstones and zeros alike
//! are no entry); only step 1's count needs its journal. The locks it held are taken over as
//! a dead writer's, whose repair asks for a sweep: it frees the records step 3 had not.

use std::sync::atomic::Ordering;

use shmap::{Backoff, Meta, RawTable, Result, SlotState, EMPTIED};

use crate::journal::{Journal, Op};
use crate::protocol::Protocol;
use crate::SharedMap;

impl<P: Protocol> SharedMap<P> {
    /// Removes every entry and gives the memory they took back to the kernel: the records'
    /// runs and the table's pages (the table keeps its capacity). Writers wait while it runs;
    /// readers go on, and find each entry until it goes, and none once it returns. Returns
    /// how many entries it removed.
    pub fn clear(&self) -> Result<usize> {
        let tables = self.tables();
        let resizing = tables.resize_lock(true)?;
        let all = self
            .lock_all(true, "the writer locks, to clear the map")?
            .expect("a patient lock waits");
        self.protocol().recover_dead(tables)?;
        let (g, table) = tables.current()?;
        // Busy in a free state: a claim the repair could not settle (see the module docs).
        if any_slot(table, |m| m.is_busy() && m.state() != Some(SlotState::Full)) {
            drop((all, resizing));
            return self.clear_by_removes();
        }
        let at = self.at()?;
        // A clear that fails half way (a spinlock reader stalled past the timeout, the heap
        // lock unavailable) has closed the journals of the records it tombstoned: the next
        // writer sweeps them up.
        let unswept = SweepUnlessDone(table.heap());
        let mut removed = 0usize;
        for i in 0..table.capacity() {
            let meta = table.meta(i);
            let mut backoff = Backoff::new();
            loop {
                // Acquire: a spinlock reader's restore of the word, like any publication.
                let m = Meta(meta.load(Ordering::Acquire));
                if m.state() != Some(SlotState::Full) {
                    break; // free: a busy one was ruled out above, and writers are excluded
                }
                if m.is_busy() {
                    at.wait(m, &mut backoff)?; // a spinlock reader's, for a moment
                    continue;
                }
                let tombstone = m.next(SlotState::Tombstone, 0);
                // Journalled as a remove: a clearer killed between the tombstone and the
                // count has the count finished by its repair (and the record freed).
                let old = table.ref_of(i);
                all.intend(table, Op::Remove, i, m, tombstone, None, Some(old));
                // Release: as a remove publishes; a reader's CAS to busy fails on it.
                let done = meta
                    .compare_exchange(m.0, tombstone.0, Ordering::Release, Ordering::Relaxed)
                    .is_ok();
                all.finish(table, -i32::from(done));
                if done {
                    removed += 1;
                    break;
                }
            }
        }
        self.give_back_emptied(g, table)?;
        std::mem::forget(unswept);
        drop(all);
        drop(resizing);
        Ok(removed)
    }

    /// The settle removes asked for ([`RawTable::give_back_due`]: they found the map empty,
    /// or near it): with every writer stopped, counts exactly, and if the map is empty gives
    /// the table back as a `clear` that finds nothing. For a remover's upkeep, holding no
    /// lock. Whether it gave it back.
    pub(crate) fn give_back_if_empty(&self) -> Result<bool> {
        let tables = self.tables();
        // Not waited for: its holder is growing the table (then not empty) or clearing it.
        let Some(resizing) = tables.resize_lock(false)? else {
            return Ok(false);
        };
        let due = tables.current()?.1;
        if !due.take_give_back() {
            return Ok(false); // another upkeep took it
        }
        let all = match self.lock_all(true, "the writer locks, to give an emptied map back") {
            Ok(all) => all.expect("a patient lock waits"),
            // A writer stalled past the timeout: the settle stays due, for the next upkeep
            // (its count would otherwise miss removers that loaded the word before).
            Err(e) => {
                due.settle_again();
                return Err(e);
            }
        };
        self.protocol().recover_dead(tables)?;
        // Exact with every writer excluded: a settle of a map near empty ends here.
        if self.protocol().len(tables)? > 0 {
            return Ok(false);
        }
        let (g, table) = tables.current()?;
        // A count a crash left wrong, or a claim the repair could not settle.
        if any_slot(table, |m| m.is_busy() || m.state() == Some(SlotState::Full)) {
            return Ok(false);
        }
        self.give_back_emptied(g, table)?;
        drop((all, resizing));
        Ok(true)
    }

    /// Steps 2 to 4 of a clear, on `table` of generation `g` with no FULL slot left, every
    /// writer lock and the resize lock held.
    fn give_back_emptied(&self, g: u64, table: &RawTable) -> Result<()> {
        let root = self.tables().root().segment();
        // Release: readers that load it see the tombstones; see the module docs for why it
        // must come before the punch.
        root.header()
            .generation()
            .store(g.wrapping_add(EMPTIED), Ordering::Release);
        table.heap().sweep_emptied()?;
        table.empty_in_place();
        if table.checksummed() {
            table.segment().flush()?; // the empty table on disk before the root says so
            let _ = root.flush();
        }
        Ok(())
    }

    /// The clear of old (for a table a dead writer left a claim in that its repair could not
    /// settle): every entry present when the scan ran removed one by one (entries
    /// added meanwhile may stay), then the heap trimmed.
    fn clear_by_removes(&self) -> Result<usize> {
        use shmap::MapOps;
        let mut removed = 0;
        for (key, _) in self.entries()? {
            removed += usize::from(self.remove(&key)?);
        }
        self.trim()?;
        Ok(removed)
    }
}

/// Whether some slot's control word is `pred`: one pass over the control words, for a
/// caller that excludes every writer.
fn any_slot(table: &RawTable, pred: impl Fn(Meta) -> bool) -> bool {
    (0..table.capacity()).any(|i| {
        // Relaxed: writers are excluded, and the locks' Acquire ordered their words.
        pred(Meta(table.meta(i).load(Ordering::Relaxed)))
    })
}

/// Asks for a sweep of the heap as it drops, unless forgotten (see `clear`).
struct SweepUnlessDone<'a>(&'a shmap::heap::Heap);

impl Drop for SweepUnlessDone<'_> {
    fn drop(&mut self) {
        self.0.request_sweep();
    }
}
