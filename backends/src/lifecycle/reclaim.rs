//! Returning tombstones to EMPTY, so that churn does not fill the table, and recounting the
//! pass counts.
//!
//! Why: an insert claims the first free slot of its probe, EMPTY or TOMBSTONE, and growth is
//! decided by the slots taken from EMPTY. Under churn (remove one key, insert another) the
//! EMPTY slots are used up one by one and never come back. Until pass counts
//! (`raw_table/passes.rs`), a lookup of an absent key also stopped only at an EMPTY slot, so
//! a miss and an insert of a new key came to probe the whole table: measured at 4,096 buckets,
//! a miss went from 26 ns to 20 us (`benches/examples/tombstone_tax.rs`). Now a miss stops
//! where no probe passes, and a reclaim also stores every run's exact pass counts (what dead
//! writers left high).
//!
//! When: a writer that finds [`RawTable::reclaim_due`] (half the slots taken from EMPTY and
//! 1/4 more than after the last reclaim; or 7/8 taken and 1/64 more) reclaims after its own
//! write, with no lock of its own held, unless fewer than 1/16 of the slots are tombstones
//! (`used - len`): then it puts the reclaim off, since the scan would free little (a table
//! filling with inserts). The early rule (from half) came second: half of a `read-heavy` run's
//! gets are misses, which probed to the first EMPTY slot then, and a get cost 1.5x a `read`
//! one (see `RawTable::reclaim_due` for what dropping it measured since).
//! Reclaiming more often trades the writers' pause (every stripe is held for the whole scan)
//! against shorter misses: measured in the commit that added it.

//! How, and why it is safe while readers run:
//!
//! 1. Every writer of every key is excluded ([`Protocol::lock_all`]: all stripes, or the table
//!    mutex). Readers go on; they write nothing (spinlock readers only toggle a FULL slot's
//!    busy bit).
//! 2. The dead's operations are repaired first. A slot still busy in a free state (a claim whose
//!    key is unknown) ends the reclaim there (what it freed before stays freed).
//! 3. The table is taken run by run: a run is the slots between two EMPTY slots. In a table
//!    at least half live, entries of the run first move back to the earliest tombstone of
//!    their probe (`compact.rs`: it keeps present keys' probes short, which freeing alone
//!    cannot); the marks below are taken after the moves. No EMPTY slot
//!    is ever between a key's home and its slot (inserts take the first free slot of the
//!    probe, and step 4 frees only unmarked slots), so every probe lies inside one run. For
//!    every FULL slot `j` of key `K` in the run, the slots from `K`'s home up to `j` are
//!    marked: they are `K`'s probe, and a lookup of `K` must not stop in them. A home outside
//!    the run would contradict that; it ends the reclaim before the run is touched.
//! 4. Every stable TOMBSTONE of the run that no probe marked becomes EMPTY, by a CAS from the
//!    word seen.
//! 5. After about 4,096 slots (`CHUNK`) the writers are let go and taken again, so a reclaim
//!    holds them up for a bounded time whatever the capacity (a whole-table hold was 29 ms at
//!    1M buckets). A run is always finished within one hold, and the next hold starts after an
//!    EMPTY slot it sees EMPTY again (else at the next one): steps 3 and 4 hold for each run
//!    on its own. A table without any EMPTY slot is one circular run: taken in one hold.
//!    When a live writer keeps its lock past the spin at the next hold, the reclaim stops
//!    there: what it freed is counted, and the next reclaim starts where it stopped (the
//!    table header's cursor), so reclaims cut short take the whole table in turn.
//! 6. A writer whose write made a reclaim due takes at most `HOLDS_PER_WRITER` holds of the
//!    pass, then leaves the rest to the writers after it (the header's `reclaim_left`, which
//!    keeps the reclaim due until the pass is over): each waits for a few milliseconds, not
//!    for a pass over the whole table (819 ms at 16M buckets). Tools, tests and a writer at
//!    the fill limit take a whole pass.
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
//! as any dead writer's are; a move it left half done is finished or undone by the repair of
//! its record (`compact.rs`). What it freed but had not yet taken off the count of used slots
//! stays counted: the count then stays high, and writers would meet the fill limit with the
//! table half empty (the harness's kill test did, 1 run in 12). A writer whose reclaim at the
//! limit frees nothing recounts it ([`SharedMap::recount_usage`]). Below half live,
//! tombstones on some present key's probe stay (the mean probe of present keys, checked
//! every 1/4 capacity of churn, reached 1.42-1.46x a fresh table's at load 0.375 in
//! `process-tests/tests/compact.rs`; 1.08-1.09x at 1/2, with moves).

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
    /// Entries moved back to an earlier tombstone of their probe first (`compact.rs`).
    pub moved: usize,
    /// Whether it stopped early at a slot it could not read (a dead claimer's): what it freed
    /// before stays freed.
    pub aborted: bool,
    /// Whether it covered only part of the table: a live writer kept its lock between two
    /// holds, or a writer's share of the pass was done. The next reclaim goes on from where
    /// this one stopped.
    pub partial: bool,
}

/// Slots a reclaim examines per hold of every writer lock: bounds how long writers wait for
/// it (about 0.2 ms here), whatever the capacity. A whole-table hold took 29 ms at 1M buckets.
const CHUNK: usize = 4096;

/// The first stable EMPTY slot among the `limit` slots from `from` (circularly).
fn next_empty(table: &RawTable, from: usize, limit: usize) -> Option<usize> {
    let cap = table.capacity();
    (0..limit.min(cap))
        .map(|d| (from + d) % cap)
        // Acquire: as every probe reads a control word.
        .find(|&i| Meta(table.meta(i).load(Ordering::Acquire)).is_stable_empty())
}

/// If slot `j` holds a key, counts its probe (its home up to `j`) in `on_probe`, which covers
/// the slots from `base` on, circularly; the whole table (`base` 0) takes probes that wrap
/// past its last slot. `None` at a slot busy in a free state, a corrupt word, lengths out of
/// bounds, or a home outside `on_probe`.
fn mark_probe(
    table: &RawTable,
    j: usize,
    base: usize,
    on_probe: &mut [usize],
    key: &mut Vec<u8>,
) -> Option<()> {
    let cap = table.capacity();
    // Acquire: the key words read below are at least as new as the word (no writer runs).
    let m = Meta(table.meta(j).load(Ordering::Acquire));
    match m.state() {
        Some(SlotState::Full) => {}
        Some(SlotState::Empty | SlotState::Tombstone) if !m.is_busy() => return Some(()),
        _ => return None,
    }
    // FULL, stable or held by a spinlock reader or a dead updater: its reference names a
    // whole record (of the old value or the new one, with the same key) and no writer
    // changes it now.
    if !table.read_key(j, key) {
        return None;
    }
    let (home, end) = (
        (table.hash(key).home + cap - base) % cap,
        (j + cap - base) % cap,
    );
    let count = |slots: &mut [usize]| slots.iter_mut().for_each(|n| *n += 1);
    if home <= end && end < on_probe.len() {
        count(&mut on_probe[home..end]);
    } else if home > end && on_probe.len() == cap {
        count(&mut on_probe[home..]);
        count(&mut on_probe[..end]);
    } else {
        return None; // a probe that would cross an EMPTY slot: not a table we understand
    }
    Some(())
}

/// Frees the stable tombstones of `on_probe`'s slots (from `base`) that no probe passes, and
/// stores every slot's exact pass count (`raw_table/passes.rs`: what a dead writer left high
/// is recounted here).
fn free_unmarked(table: &RawTable, base: usize, on_probe: &[usize], done: &mut Reclaimed) -> usize {
    let cap = table.capacity();
    let mut empty = 0;
    for (d, &passes) in on_probe.iter().enumerate() {
        let (i, needed) = ((base + d) % cap, passes > 0);
        table.set_passes(i, passes);
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
    empty
}

/// Reclaims the run of `len` non-EMPTY slots that starts at `start` (the slot after an EMPTY
/// one) and ends before the next EMPTY slot ([`run_len`]). Every present key's probe lies
/// inside one run (no EMPTY slot is ever between a key's home and its slot), so a run's marks
/// are complete on their own, as long as both of its ends are EMPTY while writers are out:
/// the run is followed to its EMPTY end even past where the pass started. `None`: stop (see
/// `mark_probe`, and a table that has no EMPTY slot left).
fn reclaim_run(table: &RawTable, start: usize, len: usize, done: &mut Reclaimed) -> Option<()> {
    let cap = table.capacity();
    let mut on_probe = vec![0; len];
    let mut key = Vec::new();
    for d in 0..len {
        mark_probe(table, (start + d) % cap, start, &mut on_probe, &mut key)?;
    }
    free_unmarked(table, start, &on_probe, done);
    Some(())
}

/// The length of the run of non-EMPTY slots from `start` to the next EMPTY slot.
fn run_len(table: &RawTable, start: usize) -> Option<usize> {
    let cap = table.capacity();
    Some((next_empty(table, start, cap)? + cap - start) % cap)
}

/// The whole table in one hold, for a table without an EMPTY slot (one circular run).
fn reclaim_whole(table: &RawTable) -> Reclaimed {
    let cap = table.capacity();
    let mut done = Reclaimed::default();
    let mut on_probe = vec![0; cap];
    let mut key = Vec::new();
    for j in 0..cap {
        if mark_probe(table, j, 0, &mut on_probe, &mut key).is_none() {
            done.aborted = true;
            return done;
        }
    }
    let empty = free_unmarked(table, 0, &on_probe, &mut done);
    table.restart_usage(empty);
    done
}

/// Holds of the writer locks a writer's reclaim takes at most, after its own write: about
/// 32k slots. A pass over a larger table is shared out among the writers that come next
/// (each finds it due while [`RawTable::reclaim_left`] says so), so none waits for the whole
/// of it: the longest remove or insert of a churn over 4M buckets went from 290-486 ms to
/// 2.9-5.4 ms (`benches/examples/reclaim_pause.rs`; 819 ms at 16M in `growth_scale`).
const HOLDS_PER_WRITER: usize = 8;

/// How much of a pass a reclaim takes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The whole table, from where the last reclaim stopped (tools, tests, and a writer at
    /// the fill limit, who needs the room now).
    Whole,
    /// A writer's share after a write that made a reclaim due: nothing if another's reclaim
    /// made it not due, else [`HOLDS_PER_WRITER`] holds of the pass under way (or of a new
    /// one).
    WritersShare,
}

/// How long a handle waits before it tries a due reclaim again after a live writer kept a
/// lock past the spin (a stopped process, say).
pub(super) const RETRY_AFTER: Duration = Duration::from_millis(10);

impl<P: Protocol> SharedMap<P> {
    /// Returns every tombstone no present key's probe passes to EMPTY, excluding writers
    /// meanwhile (readers go on). `None` when a live writer held its lock past a short spin:
    /// nothing was changed. Writers call it when [`RawTable::reclaim_due`]; it is public for
    /// tools and tests.
    pub fn reclaim_tombstones(&self) -> Result<Option<Reclaimed>> {
        self.reclaim(Pass::Whole)
    }

    fn reclaim(&self, pass: Pass) -> Result<Option<Reclaimed>> {
        self.reclaim_holding(pass, || self.protocol().try_lock_all(self.tables()))
    }

    /// [`SharedMap::reclaim`] with each hold's exclusion from `lock_all` (a test cuts it
    /// short where it likes).
    fn reclaim_holding<'a>(
        &'a self,
        pass: Pass,
        mut lock_all: impl FnMut() -> Result<Option<P::AllGuard<'a>>>,
    ) -> Result<Option<Reclaimed>> {
        let (gen, table) = self.tables().current()?;
        let view = self.view_of(gen, table);
        let cap = table.capacity();
        let mut done = Reclaimed::default();
        // The pass: from an EMPTY slot, run by run, `covered` slots so far; `at` is the slot
        // after the last run done (whose end was an EMPTY slot when that hold ended).
        let (mut at, mut covered) = (0, 0);
        let (mut first, mut compact) = (true, false);
        let mut noted = 0; // of `done.freed`, what the count has had taken off
        let mut holds = 0;
        while covered < cap {
            let Some(writers) = lock_all()? else {
                // A live writer kept its lock: what was done stays done, and counts (it was
                // left out of `used` once, which then only grew until writers at the fill
                // limit saw a full table with a third of it EMPTY).
                if first {
                    return Ok(None);
                }
                return Ok(Some(Reclaimed {
                    partial: true,
                    ..done
                }));
            };
            if self.tables().generation() != gen {
                // A resize replaced the table between two holds: it left no tombstone.
                return Ok(Some(done));
            }
            if first {
                if pass == Pass::WritersShare && !table.reclaim_due() {
                    return Ok(Some(Reclaimed::default())); // another writer's just ran
                }
                // What the dead left that cannot be repaired shows as a busy slot below.
                let _ = self.recover_dead();
                // Moves pay only in a table at least half live: below, tombstones lengthened
                // present keys' probes by 1.42-1.46x at worst (load 0.375, `compact.rs`), and the
                // moves cost a churning two-process `exchange` 11%.
                compact = table.note_live(self.protocol().len(self.tables())?);
                // Where the last reclaim stopped: reclaims cut short take the table in turn.
                let start = table.reclaim_start();
                let Some(e) = next_empty(table, start, cap) else {
                    // One circular run: no EMPTY slot to cut it at. All of it in this hold.
                    let whole = reclaim_whole(table);
                    table.note_reclaim_left(0);
                    drop(writers);
                    return Ok(Some(count_reclaim(table, whole)));
                };
                // A writer's share goes on with the pass earlier writers began, if one is
                // under way; a whole pass starts one.
                let left = match pass {
                    Pass::WritersShare => table.reclaim_left(),
                    Pass::Whole => 0,
                };
                // Covered: the EMPTY slot `e` (a new pass); or the pass so far, which counted
                // the slot it stopped at, and the slots since up to `e`.
                (at, first) = ((e + 1) % cap, false);
                covered = match left {
                    0 => 1,
                    left => cap - left + (e + cap - start) % cap,
                };
            } else {
                // Writers ran since the last hold: if the slot before `at` is no longer
                // EMPTY, the run there may reach back; start at the next EMPTY slot instead.
                let before = (at + cap - 1) % cap;
                if !Meta(table.meta(before).load(Ordering::Acquire)).is_stable_empty() {
                    let Some(e) = next_empty(table, at, cap - covered) else {
                        break;
                    };
                    let skip = (e + cap - at) % cap + 1;
                    (at, covered) = ((e + 1) % cap, covered + skip);
                }
            }
            let mut examined = 0;
            while covered < cap && examined < CHUNK {
                let Some(len) = run_len(table, at) else {
                    done.aborted = true;
                    break;
                };
                // Entries first move back to the earliest tombstone of their probe, then the
                // tombstones no probe passes any more go back to EMPTY.
                let compacted = match compact {
                    true => match view.compact_run(&writers, at, len) {
                        Ok(moved) => moved,
                        Err(e) => {
                            // What this hold freed leaves the count all the same (see below).
                            table.note_reclaimed(done.freed - noted);
                            return Err(e);
                        }
                    },
                    false => Some(0),
                };
                done.moved += compacted.unwrap_or(0);
                if compacted.is_none() || reclaim_run(table, at, len, &mut done).is_none() {
                    done.aborted = true;
                    break;
                }
                // The run, and the EMPTY slot that ends it.
                (at, covered, examined) =
                    ((at + len + 1) % cap, covered + len + 1, examined + len + 1);
            }
            // The EMPTY slot that ended the last run: the next reclaim starts there, with
            // the run after it (from `at` itself it would skip that run to the next EMPTY).
            table.note_reclaim_reached((at + cap - 1) % cap);
            // What this hold freed leaves the count before the writers come back (the locks'
            // release orders it before their next look). Noted after them, a writer at the
            // fill limit could still read the old count, find nothing left to free (this
            // reclaim had freed it), and report the table full: the fill-limit tests of
            // `tests/reclaim.rs` failed 5 runs in 20 so, `used` at the limit with 289 of
            // 1,024 slots taken.
            table.note_reclaimed(done.freed - noted);
            noted = done.freed;
            // What the next writers' shares go on with (nothing after an abort: the next
            // due reclaim starts a pass, and stops at the same slot if it is still busy).
            let left = match done.aborted {
                true => 0,
                false => cap.saturating_sub(covered),
            };
            table.note_reclaim_left(left);
            drop(writers);
            holds += 1;
            if done.aborted {
                break;
            }
            if pass == Pass::WritersShare && holds >= HOLDS_PER_WRITER && left > 0 {
                // The writer's share is done; the pass is not, and is not counted yet.
                return Ok(Some(Reclaimed {
                    partial: true,
                    ..done
                }));
            }
        }
        Ok(Some(count_reclaim(table, done)))
    }

    /// Sets the count of used slots (taken from EMPTY) to what the table holds, with every
    /// writer excluded (none claims meanwhile); whether new keys may claim EMPTY slots now.
    /// For a writer at the fill limit whose reclaim freed nothing: the count may be high by
    /// what a reclaimer killed in a hold had freed and not yet taken off. One pass over the
    /// control words (the scan a whole-table reclaim makes), only on that path.
    pub(crate) fn recount_usage(&self) -> Result<bool> {
        let Some(writers) = self.lock_all(true, "every writer lock, to recount the table")? else {
            return Ok(false);
        };
        let (_, table) = self.tables().current()?;
        table.recount_usage();
        drop(writers);
        Ok(table.empty_claims_allowed())
    }

    /// Grows the table or reclaims tombstones if due; for writers, after their write, holding
    /// no lock. A table 3/4 used ([`RawTable::growth_due`]) with at least half of it live
    /// doubles; otherwise tombstones are what fills it, and a reclaim frees them. Errors are
    /// not the writer's: its write is done, and the next writer tries again.
    #[inline]
    pub fn reclaim_if_due(&self) {
        let Ok((gen, table)) = self.tables().current() else {
            return;
        };
        // A process was killed (what it had in hand), or churn left runs sparse.
        self.sweep_if_due_in(table);
        let grow = table.growth_due();
        if !grow && !table.reclaim_due() {
            return;
        }
        let Ok(live) = self.protocol().len(self.tables()) else {
            return;
        };
        table.note_live(live);
        let mut retry = self.reclaim_retry().lock();
        if retry.is_some_and(|at| Instant::now() < at) {
            return;
        }
        if grow && live >= table.capacity() / 2 {
            *retry = match self.grow_from(gen, false) {
                Ok(true) => None,
                Ok(false) | Err(_) => Some(Instant::now() + RETRY_AFTER),
            };
            return;
        }
        // A pass under way goes on to its end, as one writer's whole pass did: it frees
        // tombstones as it goes, and stopping it there would leave the rest of the table
        // unvisited (and its moves not made) until the next pass.
        if table.reclaim_left() == 0
            && table.used_slots().saturating_sub(live) < table.capacity() / 16
        {
            table.defer_reclaim();
            return;
        }
        *retry = match self.reclaim(Pass::WritersShare) {
            Ok(Some(_)) => None,
            Ok(None) | Err(_) => Some(Instant::now() + RETRY_AFTER),
        };
    }
}

fn count_reclaim(table: &RawTable, done: Reclaimed) -> Reclaimed {
    // Relaxed: a statistic.
    table
        .segment()
        .header()
        .reclaims()
        .fetch_add(1, Ordering::Relaxed);
    done
}

#[cfg(test)]
mod tests;
