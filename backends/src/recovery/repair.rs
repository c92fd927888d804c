//! Finishing or undoing the operation of a process that died in the middle of it.
//!
//! Runs with the dead owner's byte lock held, so exactly one recoverer works on a record at a
//! time, and every store the dead process made is visible (the kernel released its lock at
//! exit and handed it to us). Each step is idempotent: a recoverer killed half way leaves
//! the record as it found it or further along, and the next one completes it.
//!
//! What the dead owner `d` may have left on its slot `i` (taken from `before`, to be
//! published as `after`), and what we do:
//!
//! | slot word        | op     | action                                      | count |
//! |------------------|--------|---------------------------------------------|-------|
//! | busy by `d`      | Read   | restore `before` (a read changes nothing)  | 0     |
//! | busy by `d`      | Update | copy the journal in, publish `after` (redo) | 0     |
//! | busy by `d`      | Update, journal fails its checksum (file torn by a crash) | publish a tombstone (the entry is lost) | -1 |
//! | busy by `d`      | Claim  | publish a tombstone (undo: never back to EMPTY, keys may lie beyond) | 0 |
//! | busy by `d`      | Remove | publish `after`, the tombstone (redo)       | -1    |
//! | `after` (+ key)  | any    | it published; only the count was pending    | op's  |
//! | not `before`     | Remove | it published (the tombstone may be claimed by another key since) | -1 |
//! | anything else    | any    | it never took the slot                      | 0     |
//!
//! Records (`docs/variable-size-entries.md`, 2.4): the journal names the record the dead
//! owner publishes (`new`) and the one it replaces (`old`). Once the record is closed (idle),
//! the repair frees what the owner would have freed: `old` once the operation published
//! (update, remove), `new` if it never will (an undone claim, a claim or update that never
//! took the slot). Closing comes first, as the owner's own finish comes before its free: a
//! journal is open exactly while its frees are still to be made, so none is made twice, and
//! a process killed between the two leaks a block for the sweep, never frees one twice.
//!
//! Pass counts (`raw_table/passes.rs`) are left as the dead left them: an operation adds its
//! passes before it publishes and takes them away after, so what it left can only be high,
//! which costs misses a slot or two until the next reclaim recounts the run.
//!
//! A move (`Op::Move`, a compaction's: two slots) is judged by `repair_move`: undone while
//! the dead owner holds the destination, rolled forward (source retired) once it published.
//!
//! The dead owner held its key's stripe, so nobody else could change the slot after it
//! published; only a spinlock reader may hold it for a moment (we wait for it, or repair it
//! if it is dead too). A claimed slot is the exception: once free, anyone may take it, so
//! "published" also requires the slot to hold the journal's key.

use std::sync::atomic::Ordering;

use shmap::{Backoff, Error, LockFile, Meta, RawTable, Result, SlotState};

use crate::generations::Where;
use crate::journal::{move_parts, Op};
use crate::slot::{self, Verdict};

use super::registry::{owner_id, Record, Registry};

/// What a repair needs of whoever holds the records (this handle's `Leases`): the registry,
/// the width of a journal, and the repair of another owner it waits on, should that one be
/// dead too. A trait, so that the repair never imports the leases that call it.
pub(crate) trait Recoverer {
    /// The registry the records live in.
    fn registry(&self) -> &Registry;
    /// Words of one journal (a slot image).
    fn slot_words(&self) -> usize;
    /// Repairs the owner `id` of a busy word if it is dead, with this description's lock held
    /// as `lock`, `depth` repairs deep; whether it was gone.
    fn recover_locked(&self, lock: &LockFile, at: Where<'_>, id: u64, depth: u32) -> Result<bool>;
}

/// How deep a repair follows a chain of dead holders (a dead reader on a dead writer's slot).
const MAX_DEPTH: u32 = 4;

/// Repairs record `r`, whose byte lock the caller holds.
pub(crate) fn repair(
    leases: &impl Recoverer,
    lock: &LockFile,
    table: &RawTable,
    r: usize,
    depth: u32,
) -> Result<()> {
    let rec = leases.registry().record(r);
    // Relaxed: the byte lock ordered the dead owner's stores before us.
    let state = rec.state().load(Ordering::Relaxed);
    let op = Record::op(state).ok_or_else(|| Registry::corrupt(table, r, "invalid operation"))?;
    if op == Op::Idle {
        return Ok(());
    }
    let i = rec.slot().load(Ordering::Relaxed) as usize;
    let before = Meta(rec.before().load(Ordering::Relaxed));
    let after = Meta(rec.after().load(Ordering::Relaxed));
    let journal = rec.journal(leases.slot_words());
    let mine = before.busy(owner_id(r, rec.generation().load(Ordering::Relaxed)));
    if op == Op::Move {
        let (t, j) = move_parts(i);
        if t >= table.capacity() || j >= table.capacity() {
            return Err(Registry::corrupt(table, r, "slot index out of range"));
        }
        let wait = |w: Meta, backoff: &mut Backoff| {
            wait_out(
                leases,
                lock,
                table,
                depth,
                w,
                backoff,
                "a slot a dead process's move left",
            )
        };
        repair_move(table, (t, j), (before, after), mine, wait)?;
        // Release: as below.
        rec.state()
            .store(Record::idle_state(state, 0), Ordering::Release);
        return Ok(());
    }
    if i >= table.capacity() {
        return Err(Registry::corrupt(table, r, "slot index out of range"));
    }
    let meta = table.meta(i);
    let (new, old) = table.image_refs(journal);
    let mut backoff = Backoff::new();
    let (delta, published) = loop {
        let holds_key = || table.image_key_matches(i, journal);
        match slot::judge(meta, op, before, after, mine, holds_key) {
            None => continue,
            Some(Verdict::Settled { delta, published }) => break (delta, Some(published)),
            Some(Verdict::Holding { word, redo, delta }) => {
                let intact = !redo || table.image_is_intact(journal);
                let (word, redo, delta) = match intact {
                    true => (word, redo, delta),
                    // A file's journal torn by a crash of the machine: the new record may be
                    // torn and the old one is gone, so the entry is dropped (and nothing is
                    // freed: the first open rebuilds a file's heap from what the table names).
                    false if table.checksummed() => {
                        let word = after.next(SlotState::Tombstone, 0);
                        slot::complete(meta, word, || {});
                        break (-1, None);
                    }
                    false => {
                        return Err(Registry::corrupt(table, r, "its journal names no record"))
                    }
                };
                slot::complete(meta, word, || {
                    if redo {
                        table.restore_image(i, journal);
                    }
                });
                // Held by the dead: an update and a remove are finished, a claim undone.
                break (delta, Some(op != Op::Claim));
            }
            Some(Verdict::Busy(w)) => {
                // A reader of the published entry (or, for a claim never made, the writer of
                // the key that took the slot): wait for it, repairing it if it died too.
                let what = "a slot a dead process's operation left";
                wait_out(leases, lock, table, depth, w, &mut backoff, what)?;
            }
        }
    };
    // Release: the slot repair happens-before anyone who sees the record idle.
    rec.state()
        .store(Record::idle_state(state, delta), Ordering::Release);
    let free = match (op, published) {
        (Op::Update | Op::Remove, Some(true)) => old,
        (Op::Update | Op::Claim, Some(false)) => new,
        _ => None, // a claim that published, a remove never made, a read, a torn journal
    };
    if let Some(r) = free {
        table.free_record(r)?;
    }
    Ok(())
}

/// One step of a repair's wait for the busy word `w` of someone else: now and then repairs
/// its owner if it died too (up to [`MAX_DEPTH`] deep); [`Error::Stalled`] past the timeout.
fn wait_out(
    leases: &impl Recoverer,
    lock: &LockFile,
    table: &RawTable,
    depth: u32,
    w: Meta,
    backoff: &mut Backoff,
    what: &'static str,
) -> Result<()> {
    if depth < MAX_DEPTH && backoff.owner_check_due() {
        leases.recover_locked(lock, Where::Table(table), w.owner(), depth + 1)?;
    }
    if !backoff.snooze() {
        return Err(Error::Stalled {
            what,
            owner: w.owner(),
            waited_ms: backoff.waited_ms(),
        });
    }
    Ok(())
}

/// Whether slots `t` and `j` name the same record (a move copies the reference: both whole,
/// no writer of the key runs).
fn same_key(table: &RawTable, t: usize, j: usize) -> bool {
    table.ref_of(t) == table.ref_of(j)
}

/// Finishes or undoes a dead compactor's move of one entry from slot `j` to slot `t` (see
/// `compact.rs`): `t` taken from `t_before` (its busy word `mine`) to be published FULL, then
/// `j` retired from `j_before`. `wait` waits out a live (or repairs a dead) holder's busy word.
///
/// | `t`                         | action                                               |
/// |-----------------------------|------------------------------------------------------|
/// | busy by the dead            | undo: publish a tombstone there (`K` is still in `j`) |
/// | published, with `K`         | roll forward: bump the move count, retire `j` (if not yet) |
/// | anything else               | it never took `t`: nothing to do                      |
fn repair_move(
    table: &RawTable,
    (t, j): (usize, usize),
    (t_before, j_before): (Meta, Meta),
    mine: Meta,
    mut wait: impl FnMut(Meta, &mut Backoff) -> Result<()>,
) -> Result<()> {
    let t_after = t_before.next(SlotState::Full, j_before.tag());
    let j_after = j_before.next(SlotState::Tombstone, 0);
    let mut backoff = Backoff::new();
    loop {
        // Acquire: the key compared below is at least as new as the word.
        let w = Meta(table.meta(t).load(Ordering::Acquire));
        if w == mine {
            slot::complete(table.meta(t), t_before.next(SlotState::Tombstone, 0), || {});
            return Ok(());
        }
        if w.is_busy() {
            wait(w, &mut backoff)?; // a reader of the published entry
            continue;
        }
        // Published: `t` holds the next word and the key `j` still holds (the move keeps
        // `j` whole until `t` is published; once `j` is retired there is nothing left to do).
        let j_now = Meta(table.meta(j).load(Ordering::Acquire));
        let j_holds = j_now == j_before || j_now == j_before.busy(mine.owner());
        if j_now.is_busy() && !j_holds {
            // A spinlock reader holds `j` for a moment and will restore `j_before`: the move
            // is not over until `j` is retired, or the key would stay FULL in both slots and
            // its record be freed twice. (Anyone else's busy word is waited out too: once
            // it is gone, `j` shows whether the move is over.)
            wait(j_now, &mut backoff)?;
            continue;
        }
        if w != t_after || !j_holds || !same_key(table, t, j) {
            return Ok(()); // it never took `t`, or the move is over
        }
        break;
    }
    table.note_move();
    let mut backoff = Backoff::new();
    loop {
        let w = Meta(table.meta(j).load(Ordering::Acquire));
        if w == j_before.busy(mine.owner()) {
            slot::complete(table.meta(j), j_after, || {});
            return Ok(());
        }
        if w == j_before {
            // Release: a tombstone publication, as any retire.
            if table
                .meta(j)
                .compare_exchange(w.0, j_after.0, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(());
            }
            continue;
        }
        if w.is_busy() {
            wait(w, &mut backoff)?;
            continue;
        }
        return Ok(()); // retired already
    }
}

#[cfg(test)]
mod tests {
    use shmap::{Location, MapBackend, MapOps, MapParams};

    use super::*;
    use crate::{Seqlock, SharedMap, Striped};

    /// A dead compactor's move, published at `t`, while a spinlock reader holds `j`: the
    /// repair must wait for the reader and then retire `j`, not take the move for over.
    #[test]
    fn a_move_repair_waits_for_a_reader_of_the_source_and_retires_it() {
        let name = shmap_testkit::names::TestName::new("repair-move"); // unlinked on drop
        let params = MapParams {
            capacity: 64,
            max_key_size: 16,
            max_value_size: 8,
            max_capacity: 64,
        };
        let map =
            SharedMap::<Striped<Seqlock>>::create_in(&Location::Shm(name.as_str().into()), params)
                .unwrap();
        map.insert(b"moving", b"value").unwrap();
        let table = map.raw_table().unwrap();
        let word = |i: usize| Meta(table.meta(i).load(Ordering::Relaxed));
        let j = (0..table.capacity())
            .find(|&i| word(i).state() == Some(SlotState::Full))
            .unwrap();
        let t = (j + 1) % table.capacity();
        let (t_before, j_before) = (word(t), word(j));
        let (dead, reader) = (7, 9);
        // The dead mover published `t` naming `j`'s record; a reader holds `j`.
        table.set_ref(t, table.ref_of(j));
        let t_after = t_before.next(SlotState::Full, j_before.tag());
        table.meta(t).store(t_after.0, Ordering::Relaxed);
        table
            .meta(j)
            .store(j_before.busy(reader).0, Ordering::Relaxed);

        let mut waits = 0;
        let wait = |w: Meta, _: &mut Backoff| {
            assert_eq!(w, j_before.busy(reader));
            waits += 1;
            // The reader is done: it restores the word it found.
            table.meta(j).store(j_before.0, Ordering::Release);
            Ok(())
        };
        repair_move(
            table,
            (t, j),
            (t_before, j_before),
            t_before.busy(dead),
            wait,
        )
        .unwrap();
        assert_eq!(waits, 1, "the reader was not waited for");
        assert_eq!(word(t), t_after, "the published copy stays");
        assert_eq!(
            word(j),
            j_before.next(SlotState::Tombstone, 0),
            "the source must be retired, or the key is in two slots"
        );
        drop(map);
    }
}
