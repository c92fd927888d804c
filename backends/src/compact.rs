//! Compaction: moving entries back to the earliest tombstone of their probe, so that churn
//! does not lengthen the probes of present keys (issue 13). It runs inside a tombstone
//! reclaim (`reclaim.rs`), run by run, with every writer excluded; readers go on.
//!
//! Moving key `K` from slot `j` to the first stable TOMBSTONE `t` between its home and `j`:
//!
//! 1. journal `Op::Move` (`t`, `j`, `t`'s free word, `j`'s FULL word; no image: the entry is
//!    in `j` until the move is over);
//! 2. take `t`, write the entry, publish it FULL (`K` is now in both slots, one value: no
//!    writer of `K` runs);
//! 3. bump the table's move count ([`RawTable::note_move`]);
//! 4. take `j` (waiting out a spinlock reader) and publish it TOMBSTONE; finish the journal.
//!
//! Why a lookup of `K` is never wrong: a hit in `t` or `j` returns the one value `K` has. A
//! lookup that passed `t` before step 2 and reaches `j` after step 4 misses, but it saw `j`'s
//! tombstone, published after the bump of step 3, so its second load of the move count (after
//! the probe) differs from its first and it looks again (`SharedMap::lookup`; scans likewise).
//! No slot becomes EMPTY here, so no other key's probe is cut; the reclaim that follows marks
//! probes afresh before it frees any tombstone.
//!
//! Killed at any step (`recovery.rs`): holding `t`, the move is undone (`t` becomes a
//! tombstone again; `K` is still in `j`); once `t` is published, it is rolled forward (bump,
//! retire `j`). So `K` is never left in two slots, and never in none.

use std::sync::atomic::Ordering;

use shmap::{Meta, RawTable, Result, SlotState};

use crate::probe::At;
use crate::protocol::{Journal, Op, Protocol};
use crate::slot;

/// The record slot of a move from `from` to `to` (slot indices are below 2^32).
pub(crate) fn move_slots(to: usize, from: usize) -> usize {
    to | from << 32
}

/// The (to, from) slots of a move's record slot.
pub(crate) fn move_parts(packed: usize) -> (usize, usize) {
    (packed & 0xFFFF_FFFF, packed >> 32)
}

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
        let (mut key, mut value) = (Vec::new(), Vec::new());
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
            let (klen, vlen) = table.lens(j);
            if !table.lens_in_bounds(klen, vlen) {
                return Ok(None);
            }
            table.read_key(j, klen, &mut key);
            let h = table.hash(&key);
            let home = (h.home + cap - start) % cap;
            if home > d {
                return Ok(None); // a probe that would cross an EMPTY slot
            }
            let Some(to) = first_tombstone(table, start, home, d) else {
                continue;
            };
            let t = (start + to) % cap;
            table.read_value(j, vlen, &mut value);
            let t_before = Meta(table.meta(t).load(Ordering::Relaxed));
            let (t_after, j_after) = (
                t_before.next(SlotState::Full, h.tag),
                m.next(SlotState::Tombstone, 0),
            );
            let sum = table.sum_word(&h, klen, &value, t_after.version());
            // No image: a repair tells a published copy by comparing it with `j`'s own key.
            w.intend(table, Op::Move, move_slots(t, j), t_before, m, None);
            self.take_own(t, t_before, w.owner(), true)?;
            table.write_entry(t, &key, &value, sum);
            slot::publish(table.meta(t), t_after);
            table.note_move();
            self.take_own(j, m, w.owner(), true)?;
            slot::publish(table.meta(j), j_after);
            w.finish(table, 0);
            moved += 1;
        }
        Ok(Some(moved))
    }
}
