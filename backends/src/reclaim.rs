//! Returning tombstones to EMPTY, so that lookups of absent keys end early again.
//!
//! Why: an insert claims the first free slot of its probe, EMPTY or TOMBSTONE, and a lookup of
//! an absent key stops only at an EMPTY slot. Under churn (remove one key, insert another) the
//! EMPTY slots are used up one by one and never come back, until a miss and an insert of a
//! new key probe the whole table: measured at 4,096 buckets, a miss went from 26 ns to 20 us
//! (`benches/examples/tombstone_tax.rs`), and it grows with the capacity.
//!
//! When: a writer that finds [`RawTable::reclaim_due`] (half the slots taken from EMPTY and
//! 1/4 more than after the last reclaim; or 7/8 taken and 1/64 more) reclaims after its own
//! write, with no lock of its own held, unless fewer than 1/16 of the slots are tombstones
//! (`used - len`): then it puts the reclaim off, since the scan would free little (a table
//! filling with inserts). The early rule (from half) came second: half of a `read-heavy` run's
//! gets are misses, which probe to the first EMPTY slot, and a get cost 1.5x a `read` one.
//! Reclaiming more often trades the writers' pause (every stripe is held for the whole scan)
//! against shorter misses: measured in the commit that added it.

//! How, and why it is safe while readers run:
//!
//! 1. Every writer of every key is excluded ([`Protocol::lock_all`]: all stripes, or the table
//!    mutex). Readers go on; they write nothing (spinlock readers only toggle a FULL slot's
//!    busy bit).
//! 2. The dead's operations are repaired first. A slot still busy in a free state (a claim whose
//!    key is unknown) ends the reclaim without changing anything.
//! 3. For every FULL slot `j` of key `K`, the slots from `K`'s home up to `j` are marked: they
//!    are `K`'s probe, and a lookup of `K` must not stop in them.
//! 4. Every stable TOMBSTONE that no probe marked becomes EMPTY, by a CAS from the word seen.
//!
//! A lookup of a key present throughout visits exactly its marked slots and then its own, none
//! of which becomes EMPTY, so it never stops early: no key present throughout is missed, and
//! no entry moves, so no value is torn. A lookup of an absent key may stop earlier than it
//! would have: it is absent either way. With writers excluded, nobody places a key beyond a
//! freed slot meanwhile (the reason tombstones otherwise never return to EMPTY). Recoverers of
//! dead writers may run concurrently: they only finish or undo a slot's operation in place
//! (never a FULL slot somewhere new), so the marks stay right.
//!
//! Killed half way: each CAS on its own keeps every present key's probe whole, so any prefix
//! of the reclaim is a correct table; the stripes it held name a dead owner and are taken over
//! as any dead writer's are. Tombstones on some present key's probe stay: only a rebuild that
//! moves entries frees those (`docs/growth.md`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmap::{Meta, RawTable, Result, SlotState};

use crate::protocol::Protocol;
use crate::table::SharedMap;

/// What a reclaim did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Tombstones returned to EMPTY.
    pub freed: usize,
    /// Tombstones left because a present key's probe passes them.
    pub kept: usize,
    /// Whether it stopped without changing anything (a dead claimer's slot it could not read).
    pub aborted: bool,
}

/// Marks every slot on the probe of a present key; `None` at a slot busy in a free state.
fn marks(table: &RawTable) -> Option<Vec<bool>> {
    let cap = table.capacity();
    let mut on_probe = vec![false; cap];
    let mut key = Vec::new();
    for j in 0..cap {
        // Acquire: the key words read below are at least as new as the word (no writer runs).
        let m = Meta(table.meta(j).load(Ordering::Acquire));
        match m.state() {
            Some(SlotState::Full) => {}
            Some(SlotState::Empty | SlotState::Tombstone) if !m.is_busy() => continue,
            _ => return None,
        }
        // FULL, stable or held by a spinlock reader or a dead updater: its key is written
        // (updates rewrite only the value) and no writer changes it now.
        let (klen, vlen) = table.lens(j);
        if !table.lens_in_bounds(klen, vlen) {
            return None;
        }
        table.read_key(j, klen, &mut key);
        let mut i = table.hash(&key).home;
        while i != j {
            on_probe[i] = true;
            i = if i + 1 == cap { 0 } else { i + 1 };
        }
    }
    Some(on_probe)
}

/// How long a handle waits before it tries a due reclaim again after a live writer kept a
/// lock past the spin (a stopped process, say).
const RETRY_AFTER: Duration = Duration::from_millis(10);

impl<P: Protocol> SharedMap<P> {
    /// Returns every tombstone no present key's probe passes to EMPTY, excluding writers
    /// meanwhile (readers go on). `None` when a live writer held its lock past a short spin:
    /// nothing was changed. Writers call it when [`RawTable::reclaim_due`]; it is public for
    /// tools and tests.
    pub fn reclaim_tombstones(&self) -> Result<Option<Reclaimed>> {
        self.reclaim(false)
    }

    fn reclaim(&self, only_if_due: bool) -> Result<Option<Reclaimed>> {
        let table = self.raw_table();
        let Some(_writers) = self.protocol().try_lock_all(table)? else {
            return Ok(None);
        };
        if only_if_due && !table.reclaim_due() {
            return Ok(Some(Reclaimed::default())); // another writer's reclaim just ran
        }
        let _ = self.recover_dead(); // a record it cannot repair shows as a busy slot below
        let Some(on_probe) = marks(table) else {
            return Ok(Some(Reclaimed {
                aborted: true,
                ..Reclaimed::default()
            }));
        };
        let mut done = Reclaimed::default();
        let mut empty = 0usize;
        for (i, &needed) in on_probe.iter().enumerate() {
            let meta = table.meta(i);
            // Relaxed: only writers change a stable free word, and they are excluded.
            let m = Meta(meta.load(Ordering::Relaxed));
            match (m.state(), m.is_busy(), needed) {
                (Some(SlotState::Empty), false, _) => empty += 1,
                (Some(SlotState::Tombstone), false, false) => {
                    let free = Meta::stable(SlotState::Empty, 0, m.version().wrapping_add(1));
                    // Release: pairs with readers' Acquire loads, like any publication.
                    if meta
                        .compare_exchange(m.0, free.0, Ordering::Release, Ordering::Relaxed)
                        .is_ok()
                    {
                        done.freed += 1;
                        empty += 1;
                    }
                }
                (Some(SlotState::Tombstone), false, true) => done.kept += 1,
                _ => {}
            }
        }
        table.restart_usage(empty);
        // Relaxed: a statistic.
        table
            .segment()
            .header()
            .reclaims()
            .fetch_add(1, Ordering::Relaxed);
        Ok(Some(done))
    }

    /// Reclaims tombstones if due; for writers, after their write, holding no lock. Errors are
    /// not the writer's: its write is done, and the next writer tries again.
    #[inline]
    pub fn reclaim_if_due(&self) {
        let table = self.raw_table();
        if !table.reclaim_due() {
            return;
        }
        let tombstones = table
            .used_slots()
            .saturating_sub(self.protocol().len(table));
        if tombstones < table.capacity() / 16 {
            table.defer_reclaim();
            return;
        }
        let mut retry = self.reclaim_retry().lock();
        if retry.is_some_and(|at| Instant::now() < at) {
            return;
        }
        *retry = match self.reclaim(true) {
            Ok(Some(_)) => None,
            Ok(None) | Err(_) => Some(Instant::now() + RETRY_AFTER),
        };
    }
}
