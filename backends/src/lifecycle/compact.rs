//! Compaction: moving entries back to the earliest tombstone of their probe, so that churn
//! does not lengthen the probes of present keys (issue 13). Two callers, both only in a
//! table at least half live ([`RawTable::is_dense`]; below, tombstones lengthened probes
//! 1.45x at most, and the moves cost churn 20%):
//!
//! - a tombstone reclaim (`reclaim.rs`), run by run, with every writer excluded;
//! - a remove, right after it (`At::shift_back`): the backward shift of linear probing, each
//!   moved entry's writer lock taken without waiting (or none moves), other writers running.
//!   A claimer racing for the hole wins or loses one CAS; the moved key's own writers are
//!   excluded by its lock, which is all the steps below need.
//!
//! Readers go on in both cases.
//!
//! Moving key `K` from slot `j` to the first stable TOMBSTONE `t` between its home and `j`:
//!
//! 1. journal `Op::Move` (`t`, `j`, `t`'s free word, `j`'s FULL word; no image: the entry is
//!    in `j` until the move is over);
//! 2. take `t`, write the entry, publish it FULL (`K` is now in both slots, one value: no
//!    writer of `K` runs);
//! 3. bump the table's move count ([`RawTable::note_move`]);
//! 4. take `j` (waiting out a spinlock reader) and publish it TOMBSTONE; -1 on the pass
//!    counts of `t..j` (Release), which `K`'s probe no longer passes; finish the journal.
//!
//! Why a lookup of `K` is never wrong: a hit in `t` or `j` returns the one value `K` has. A
//! lookup that passed `t` before step 2 and reaches `j` after step 4 misses, but it saw `j`'s
//! tombstone, published after the bump of step 3, so its second load of the move count (after
//! the probe) differs from its first and it looks again (`SharedMap::lookup`; scans likewise).
//! A lookup that stops before `j` at a count step 4 lowered to 0 read that count with
//! Acquire from a Release RMW after the bump, so it sees the bump too, and looks again.
//! No slot becomes EMPTY here, so no other key's probe is cut; the reclaim that follows marks
//! probes afresh before it frees any tombstone.
//!
//! Killed at any step (`recovery/repair.rs`): holding `t`, the move is undone (`t` becomes a
//! tombstone again; `K` is still in `j`); once `t` is published, it is rolled forward (bump,
//! retire `j`). So `K` is never left in two slots, and never in none.

use std::sync::atomic::Ordering;

use shmap::heap::Ref;
use shmap::{KeyHash, Meta, RawTable, Result, SlotState};

use crate::journal::{move_slots, Journal, Op};
use crate::protocol::Protocol;
use crate::slot;
use crate::table::probe::At;

/// Most entries one remove shifts back into the hole it left, and most slots it looks at.
const MAX_SHIFT: usize = 8;
const MAX_SCAN: usize = 32;

/// The first stable tombstone among the run's offsets `from..to` (slots `start + offset`).
fn first_tombstone(table: &RawTable, start: usize, from: usize, to: usize) -> Option<usize> {
    let cap = table.capacity();
    (from..to).find(|&d| {
        // Relaxed: only writers (excluded) turn a stable free word into anything else.
        Meta(table.meta((start + d) % cap).load(Ordering::Relaxed)).is_stable_tombstone()
    })
}

impl<P: Protocol> At<'_, P> {
    /// Moves every entry of the run of `len` slots from `start` (between two EMPTY slots,
    /// every writer excluded by `w`) to the earliest tombstone of its probe; how many moved.
    /// `None` at a slot it cannot read (a dead claimer's, a corrupt word): stop there.
    pub(crate) fn compact_run(
        &self,
        w: &impl Journal,
        start: usize,
        len: usize,
    ) -> Result<Option<usize>> {
        let table = self.table;
        let cap = table.capacity();
        let mut key = Vec::new();
        let mut moved = 0;
        for d in 0..len {
            let j = (start + d) % cap;
            // Acquire: the entry's words are at least as new as the word.
            let m = Meta(table.meta(j).load(Ordering::Acquire));
            match m.state() {
                Some(SlotState::Full) if !m.is_busy() => {}
                Some(SlotState::Full) => continue, // a spinlock reader's: leave it where it is
                Some(_) if !m.is_busy() => continue,
                _ => return Ok(None),
            }
            if !table.read_key(j, &mut key) {
                return Ok(None);
            }
            let h = table.hash(&key);
            let home = (h.home + cap - start) % cap;
            if home > d {
                return Ok(None); // a probe that would cross an EMPTY slot
            }
            let Some(to) = first_tombstone(table, start, home, d) else {
                continue;
            };
            let t = (start + to) % cap;
            if !self.move_entry(w, t, j, m, table.ref_of(j), &h)? {
                return Ok(None); // someone took the tombstone: no writer should run now
            }
            moved += 1;
        }
        Ok(Some(moved))
    }

    /// Moves the entry (record `r`, key hashed `h`) of slot `j`, seen stable as `m`, to the
    /// stable tombstone `t` on its probe, journalled through `w`, whose holder excludes the
    /// entry's writers. The record stays where it is: `t` names it too, then `j` is retired.
    /// `false` (nothing changed) if another writer claimed `t` first.
    fn move_entry(
        &self,
        w: &impl Journal,
        t: usize,
        j: usize,
        m: Meta,
        r: Ref,
        h: &KeyHash,
    ) -> Result<bool> {
        let table = self.table;
        // Relaxed: the CAS in `try_take` revalidates it.
        let t_before = Meta(table.meta(t).load(Ordering::Relaxed));
        if !t_before.is_stable_tombstone() {
            return Ok(false);
        }
        let (t_after, j_after) = (
            t_before.next(SlotState::Full, h.tag),
            m.next(SlotState::Tombstone, 0),
        );
        // No references: a repair tells a published copy by comparing it with `j`'s.
        w.intend(table, Op::Move, move_slots(t, j), t_before, m, None, None);
        if !slot::try_take(table.meta(t), t_before, w.owner()) {
            w.finish(table, 0);
            return Ok(false);
        }
        table.set_ref(t, r);
        slot::publish(table.meta(t), t_after);
        table.note_move();
        if let Err(e) = self.take_own(j, m, w.owner(), true) {
            // `j` cannot be retired (a corrupt word, a stall past the timeout): take the copy
            // back out of `t`, so the key stays in one slot.
            if slot::try_take(table.meta(t), t_after, w.owner()) {
                slot::publish(table.meta(t), t_after.next(SlotState::Tombstone, 0));
            }
            w.finish(table, 0);
            return Err(e);
        }
        slot::publish(table.meta(j), j_after);
        // `K`'s probe now ends at `t`: after the bump, which a lookup that stops at a lowered
        // count sees (`raw_table/passes.rs`).
        table.sub_passes(t, j);
        w.finish(table, 0);
        Ok(true)
    }

    /// After a remove left the tombstone `hole` (its key's lock held as `w`): the backward
    /// shift of linear probing, with moves. Looks at the slots after the hole (up to
    /// [`MAX_SCAN`], to the first EMPTY) for an entry whose probe passes the hole, moves it
    /// there, and goes on from the slot it left; at most [`MAX_SHIFT`] moves. Best effort,
    /// never waiting for a lock (an entry whose writer lock is busy ends it): churn then
    /// leaves few tombstones in front of present keys, between the reclaims that compact
    /// what is left.
    pub(crate) fn shift_back(&self, w: &P::WriteGuard<'_>, mut hole: usize) -> Result<()> {
        let table = self.table;
        let cap = table.capacity();
        let mut key = Vec::new();
        let (mut j, mut moved) = (hole, 0);
        for _ in 0..MAX_SCAN.min(cap - 1) {
            j = (j + 1) % cap;
            // Acquire: the key words read below are at least as new as the word.
            let m = Meta(table.meta(j).load(Ordering::Acquire));
            if m.is_stable_tombstone() {
                continue; // no entry to move, but entries beyond may reach back over it
            }
            if m.state() != Some(SlotState::Full) || m.is_busy() {
                return Ok(()); // EMPTY ends the run; a busy word is someone's at work
            }
            let r = table.ref_of(j);
            if !table.entry_of(r).is_some_and(|e| {
                e.read_key(&mut key);
                true
            }) {
                return Ok(());
            }
            // Validate as a seqlock read: another key's writer may be rewriting `j`.
            std::sync::atomic::fence(Ordering::Acquire);
            if table.meta(j).load(Ordering::Relaxed) != m.0 {
                return Ok(());
            }
            let h = table.hash(&key);
            let (to_hole, to_j) = ((hole + cap - h.home) % cap, (j + cap - h.home) % cap);
            if to_hole >= to_j {
                continue; // the hole is before its home: this one stays, later ones may not
            }
            let shifted = if P::READS_EXCLUDE_WRITERS {
                // The table mutex we hold excludes every writer already.
                self.shift_one(w, hole, j, m, r, &h)?
            } else {
                // Never waits: the lock may be ours (one stripe for both keys), or busy.
                let Ok(Some(other)) = self.protocol.try_lock_key(self.tables, &h) else {
                    return Ok(());
                };
                self.shift_one(&other, hole, j, m, r, &h)?
            };
            if !shifted {
                return Ok(());
            }
            moved += 1;
            if moved == MAX_SHIFT {
                return Ok(());
            }
            hole = j;
        }
        Ok(())
    }

    /// One step of [`At::shift_back`], holding the moved key's writer lock as `w`: `j`
    /// still published as `m` names record `r`.
    fn shift_one(
        &self,
        w: &impl Journal,
        hole: usize,
        j: usize,
        m: Meta,
        r: Ref,
        h: &KeyHash,
    ) -> Result<bool> {
        // Acquire: under the key's lock now, it must still be the entry we looked at (and a
        // word unchanged since we read `r` names `r` still).
        if self.table.meta(j).load(Ordering::Acquire) != m.0 {
            return Ok(false);
        }
        self.move_entry(w, hole, j, m, r, h)
    }
}
