//! One operation's view of the map: the protocol and the table of one generation, with the
//! probing steps every backend shares (see `mod.rs` for the algorithm, `generations.rs` for
//! why an operation may use the generation it loaded).

use std::sync::atomic::{fence, Ordering};

use shmap::heap::Ref;
use shmap::{
    Backoff, Error, Inserted, KeyHash, Meta, Origin, ProbeKey, RawTable, Result, SlotState,
    ValueSink,
};

use crate::generations::Tables;
use crate::journal::{Journal, Op};
use crate::protocol::Protocol;
use crate::slot::{self, SlotRead};

/// The protocol and the table of generation `gen`, for one operation.
#[derive(Debug)]
pub(crate) struct At<'a, P> {
    pub(crate) protocol: &'a P,
    pub(crate) tables: &'a Tables,
    pub(crate) table: &'a RawTable,
    pub(crate) gen: u64,
}

/// What one slot says about the key being looked up.
pub(crate) enum Step {
    Found,
    Next,
    End,
    /// The key's slot is being rewritten and the caller asked not to wait.
    Busy,
    /// The table was replaced by a resize while we waited: start over in the new one.
    Moved,
}

/// Where a writer found its key, and the first free slot before the probe ended.
pub(crate) struct Located {
    pub(crate) found: Option<(usize, Meta)>,
    /// Probe distance of the first EMPTY or TOMBSTONE slot; where the probe ended at a bucket
    /// no probe passes before it met one, the distance after that bucket (a claim looks on
    /// from there).
    pub(crate) free: Option<usize>,
}

fn stalled(m: Meta, backoff: &Backoff) -> Error {
    Error::Stalled {
        what: "a slot held by another process",
        owner: m.owner(),
        waited_ms: backoff.waited_ms(),
    }
}

/// The body of a lookup's read of slot `i`: whether it holds `key` and whether its record is
/// in bounds; hands the value to `out` if both.
struct CompareAndTake<'a, K: ?Sized, S: ?Sized> {
    table: &'a RawTable,
    i: usize,
    key: &'a K,
    out: Option<&'a mut S>,
    /// Slot `i`'s publication being read, for [`ValueSink::recall`].
    origin: Origin,
}

impl<K: ProbeKey + ?Sized, S: ValueSink + ?Sized> SlotRead for CompareAndTake<'_, K, S> {
    type Out = (bool, bool);

    #[inline(always)] // see `SlotRead`
    fn read(&mut self) -> (bool, bool) {
        let Some(e) = self.table.entry(self.i) else {
            return (false, false);
        };
        let matched = e.key_is(self.key);
        if let (true, Some(out)) = (matched, self.out.as_deref_mut()) {
            if !out.recall(self.origin) {
                out.take(e.value());
            }
        }
        (matched, true)
    }
}

impl<P: Protocol> At<'_, P> {
    /// Probes for `key` (hashed for this table), handing its value to `out` if found.
    #[inline(always)] // a get's whole probe: as it was before it moved out of `lookup`
    pub(crate) fn find<K: ProbeKey + ?Sized, S: ValueSink + ?Sized>(
        &self,
        read: &P::ReadGuard<'_>,
        key: &K,
        h: &KeyHash,
        mut out: Option<&mut S>,
        patient: bool,
    ) -> Result<Step> {
        if let Some(out) = out.as_deref() {
            out.prefetch(h.home);
        }
        for i in self.table.probe(h.home) {
            match self.read_slot(read, i, key, h, out.as_deref_mut(), patient)? {
                // No probe passes `i`: the key is not after it (`raw_table/passes.rs`).
                Step::Next if !self.table.is_passed(i) => return Ok(Step::End),
                Step::Next => {}
                step => return Ok(step),
            }
        }
        Ok(Step::End)
    }

    pub(crate) fn state(&self, i: usize, m: Meta) -> Result<SlotState> {
        m.state()
            .ok_or_else(|| self.table.corrupt(i, "invalid state bits"))
    }

    /// Examines slot `i` for `key`; hands its value to `out` if it is the key's slot (again
    /// on every attempt: the last one is whole).
    #[inline(always)] // once lookup's body: a call per probed slot cost a get 5-9%
    pub(crate) fn read_slot<K: ProbeKey + ?Sized, S: ValueSink + ?Sized>(
        &self,
        guard: &P::ReadGuard<'_>,
        i: usize,
        key: &K,
        h: &KeyHash,
        mut out: Option<&mut S>,
        patient: bool,
    ) -> Result<Step> {
        let meta = self.table.meta(i);
        let mut backoff = Backoff::new();
        loop {
            // Acquire: pairs with the Release that published m1, so the words read under it
            // are at least as new.
            let m1 = Meta(meta.load(Ordering::Acquire));
            // Any slot but our tag's, EMPTY included: the caller ends the probe at a bucket no
            // probe passes, which an EMPTY one is (a separate exit for EMPTY slots made misses
            // in a just-reclaimed table mispredict between the two).
            if !m1.is_full_with_tag(h.tag) {
                if m1.is_corrupt() {
                    return Err(self.table.corrupt(i, "invalid state bits"));
                }
                return Ok(Step::Next); // a claim, a tombstone, another key's entry
            }
            if m1.is_busy() {
                if !patient && backoff.spun_out() {
                    return Ok(Step::Busy);
                }
                if self.tables.generation() != self.gen {
                    return Ok(Step::Moved); // a replaced table: its busy words may stay
                }
                self.wait(m1, &mut backoff)?;
                continue;
            }
            let origin = Origin {
                generation: self.gen,
                slot: i,
                slots: self.table.capacity(),
                word: m1.0,
            };
            // The sink knows this publication holds our key (an earlier validated read found
            // it here, and the word has not moved since): found, without reading the slot.
            if let Some(out) = out.as_deref_mut() {
                if out.recall_keyed(origin) {
                    return Ok(Step::Found);
                }
            }
            let body = CompareAndTake {
                table: self.table,
                i,
                key,
                out: out.as_deref_mut(),
                origin,
            };
            let read = self.protocol.read_consistent(guard, i, meta, m1, body);
            match read {
                None => continue, // changed under us: look again
                Some((_, false)) => {
                    return Err(self.table.corrupt(
                        i,
                        "its record lies outside the heap or exceeds the maximums",
                    ))
                }
                Some((matched, true)) => return Ok(if matched { Step::Found } else { Step::Next }),
            }
        }
    }

    /// Finds `key` for a writer that holds its key lock. Only this writer changes the key's
    /// slot, but a reader may hold it (spinlock) and a slot of another key may be reused
    /// meanwhile, so a match is validated like a seqlock read.
    #[inline(always)]
    pub(crate) fn locate(&self, key: &[u8], h: &KeyHash) -> Result<Located> {
        self.locate_with(key, h, true)
    }

    /// [`SharedMap::locate`]; with `patient == false`, [`Error::Stalled`] where it would wait
    /// past a short spin.
    #[inline(always)]
    pub(crate) fn locate_with(&self, key: &[u8], h: &KeyHash, patient: bool) -> Result<Located> {
        let mut free = None;
        for (distance, i) in self.table.probe(h.home).enumerate() {
            let meta = self.table.meta(i);
            let mut backoff = Backoff::with_patience(patient);
            loop {
                // Acquire: the key words compared below are at least as new as m.
                let m = Meta(meta.load(Ordering::Acquire));
                // Plain compares rather than a jump table on the state, as in `read_slot`.
                if m.is_stable_empty() {
                    free.get_or_insert(distance);
                    return Ok(Located { found: None, free });
                }
                if !m.is_full_with_tag(h.tag) {
                    if m.is_stable_tombstone() {
                        free.get_or_insert(distance);
                    } else if m.is_corrupt() {
                        return Err(self.table.corrupt(i, "invalid state bits"));
                    }
                    break; // another key, or a claim for a key not yet published
                }
                if m.is_busy() {
                    // Could be our key held by a reader: wait rather than pass it by.
                    self.wait(m, &mut backoff)?;
                    continue;
                }
                // `None`: a record that cannot be ours or anyone's (outside the heap, past the
                // limits). Validated like a match, it is corruption: passing it by let a
                // remove say "absent" and an insert add a second copy of a key whose get
                // reports `Corrupt` (the heap fuzz found it).
                let matched = self.table.entry(i).map(|e| e.key_matches(key));
                if matched != Some(false) {
                    fence(Ordering::Acquire); // validate as in the seqlock recipe
                    if meta.load(Ordering::Relaxed) != m.0 {
                        continue;
                    }
                    let Some(true) = matched else {
                        return Err(self.table.corrupt(
                            i,
                            "its record lies outside the heap or exceeds the maximums",
                        ));
                    };
                    return Ok(Located {
                        found: Some((i, m)),
                        free,
                    });
                }
                break;
            }
            // Not our key at `i`, and no probe passes it: our key is not after it (we hold
            // its lock, so its passes are counted). A claim looks on from the next slot.
            if !self.table.is_passed(i) {
                free.get_or_insert(distance + 1);
                return Ok(Located { found: None, free });
            }
        }
        Ok(Located { found: None, free })
    }

    /// One step of a wait for the busy word `m`: now and then, asks whether its holder died
    /// (then what it left is repaired and the caller looks again at once); otherwise backs
    /// off. [`Error::Stalled`] once a live holder has kept it past the stall timeout.
    pub(crate) fn wait(&self, m: Meta, backoff: &mut Backoff) -> Result<()> {
        if backoff.owner_check_due() && self.protocol.recover(self.table, m.owner())? {
            return Ok(());
        }
        if !backoff.snooze() {
            return Err(stalled(m, backoff));
        }
        Ok(())
    }

    /// Removes our key from slot `i`, found stable as `m`, under the key's lock.
    #[inline(always)]
    pub(crate) fn remove_found(
        &self,
        w: &P::WriteGuard<'_>,
        i: usize,
        m: Meta,
        h: &KeyHash,
    ) -> Result<()> {
        self.remove_found_with(w, i, m, h, true)
    }

    /// [`SharedMap::remove_found`]; with `patient == false`, [`Error::Stalled`] (nothing
    /// changed) where it would wait past a short spin.
    #[inline(always)]
    pub(crate) fn remove_found_with(
        &self,
        w: &P::WriteGuard<'_>,
        i: usize,
        m: Meta,
        h: &KeyHash,
        patient: bool,
    ) -> Result<()> {
        let tombstone = m.next(SlotState::Tombstone, 0);
        // Stable under our key's lock: only its holder changes the reference.
        let old = self.table.ref_of(i);
        // Journalled first: a remover killed half way is rolled forward.
        w.intend(self.table, Op::Remove, i, m, tombstone, None, Some(old));
        self.take_own(i, m, w.owner(), patient)?;
        // The new version makes any reader that copied the old entry meanwhile look again and
        // see the tombstone.
        slot::publish(self.table.meta(i), tombstone);
        // After the tombstone, so the count never undercounts; a remover killed in between
        // leaves it high, which costs misses a slot until the next recount.
        self.table.sub_passes(h.home, i);
        // It may find the map emptied (`shmap::RawTable::watch_emptying`): the remover's
        // upkeep then gives the table back.
        w.finish_remove(self.table);
        // Closed, then freed: a recoverer frees only for an open journal, so never twice.
        self.table.free_record(old)?;
        // Best effort: the remove is done whatever happens there (`compact.rs`). Only in a
        // table at least half live: below, it cost a churning `exchange` 20% and tombstones
        // lengthen probes little.
        if self.table.is_dense() {
            let _ = self.shift_back(w, i);
        }
        Ok(())
    }

    /// Takes the slot of our own key, found stable as `m`: only a reader's slot lock may
    /// delay us, and it restores `m` exactly. Anything else means another process broke the
    /// protocol.
    #[inline(always)]
    pub(crate) fn take_own(&self, i: usize, m: Meta, owner: u64, patient: bool) -> Result<()> {
        let meta = self.table.meta(i);
        if !P::READERS_TAKE_SLOTS {
            // Nobody but us can change the word (see `slot::take_exclusive`).
            return match slot::take_exclusive(meta, m, owner) {
                true => Ok(()),
                false => Err(self.table.corrupt(i, "a slot changed under its key's lock")),
            };
        }
        let mut backoff = Backoff::with_patience(patient);
        while !slot::try_take(meta, m, owner) {
            // Relaxed: only deciding whether to wait; the CAS above synchronises.
            let now = Meta(meta.load(Ordering::Relaxed));
            if !now.is_busy() && now != m {
                return Err(self.table.corrupt(i, "a slot changed under its key's lock"));
            }
            if now.is_busy() {
                self.wait(now, &mut backoff)?;
            }
        }
        Ok(())
    }

    /// Claims the first free slot at or after probe distance `first` and writes the entry.
    /// Each attempt is journalled first: a claimer killed after taking the slot is undone.
    #[inline(always)]
    fn claim(
        &self,
        w: &P::WriteGuard<'_>,
        key: &[u8],
        value: &[u8],
        h: &KeyHash,
        first: usize,
    ) -> Result<Inserted> {
        // Journalled as a claim of the first free slot as soon as the block has its key
        // (before the value's copy): a claimer killed before it takes a slot has the block
        // freed by its repair ("never took the slot"); each slot it tries is journalled anew.
        let named = |new| {
            // `first` is a distance along the probe; an empty probe (a full table) journals
            // the home slot, which the claim never takes either.
            let i = self
                .table
                .probe_from(h.home, first)
                .next()
                .unwrap_or(h.home);
            // Relaxed: only what the repair compares the slot with; nothing is read through it.
            let m = Meta(self.table.meta(i).load(Ordering::Relaxed));
            let full = m.next(SlotState::Full, h.tag);
            w.intend(self.table, Op::Claim, i, m, full, Some(new), None);
        };
        let new = self
            .table
            .new_record(h, key, value, named, || w.finish(self.table, 0))?;
        let claimed = self.claim_for(w, new, h, first);
        if claimed.is_err() {
            self.abandon(w, new);
        }
        claimed
    }

    /// Gives up a write whose record `new` was never published: closes the journal, then
    /// frees the record (a recoverer frees only for an open journal, so never twice).
    fn abandon(&self, w: &P::WriteGuard<'_>, new: Ref) {
        w.finish(self.table, 0);
        let _ = self.table.free_record(new);
    }

    #[inline(always)]
    fn claim_for(
        &self,
        w: &P::WriteGuard<'_>,
        new: Ref,
        h: &KeyHash,
        first: usize,
    ) -> Result<Inserted> {
        for i in self.table.probe_from(h.home, first) {
            let meta = self.table.meta(i);
            loop {
                // Relaxed: the CAS in `try_take` revalidates the word.
                let m = Meta(meta.load(Ordering::Relaxed));
                let free = matches!(m.state(), Some(SlotState::Empty | SlotState::Tombstone));
                if m.is_busy() || !free {
                    break; // taken by another key's inserter meanwhile: look further
                }
                if m.state() == Some(SlotState::Empty) && !self.table.empty_claims_allowed() {
                    // Full for new keys: the caller grows the table, or says why it cannot.
                    return Err(Error::TableFull {
                        capacity: self.table.capacity(),
                    });
                }
                let full = m.next(SlotState::Full, h.tag);
                w.intend(self.table, Op::Claim, i, m, full, Some(new), None);
                if slot::try_take(meta, m, w.owner()) {
                    // Before the entry is published: no lookup may stop short of it.
                    self.table.add_passes(h.home, i);
                    self.table.set_ref(i, new);
                    slot::publish(meta, full); // the reference with the FULL word
                    w.finish(self.table, 1);
                    if m.state() == Some(SlotState::Empty) {
                        self.table.note_empty_claim();
                    }
                    return Ok(Inserted::New);
                }
            }
        }
        Err(Error::TableFull {
            capacity: self.table.capacity(),
        })
    }

    /// Inserts or updates under the key's lock.
    #[inline(always)]
    pub(crate) fn insert_locked(
        &self,
        w: &P::WriteGuard<'_>,
        key: &[u8],
        value: &[u8],
        h: &KeyHash,
        patient: bool,
    ) -> Result<Inserted> {
        let located = self.locate_with(key, h, patient)?;
        self.write_located(w, key, value, h, &located, patient)
    }

    /// Writes `key` = `value` where `locate` found it (or claims a free slot), under the key's
    /// lock.
    #[inline(always)]
    pub(crate) fn write_located(
        &self,
        w: &P::WriteGuard<'_>,
        key: &[u8],
        value: &[u8],
        h: &KeyHash,
        located: &Located,
        patient: bool,
    ) -> Result<Inserted> {
        if let Some((i, m)) = located.found {
            let after = m.next(SlotState::Full, h.tag);
            // Stable under our key's lock: only its holder changes the reference.
            let old = self.table.ref_of(i);
            // The new value where no reader reads, then one reference store publishes it;
            // journalled as soon as the block has its key, before the value's copy: an
            // updater killed in the copy has its block freed, one killed later is rolled
            // forward.
            let new = self.table.new_record(
                h,
                key,
                value,
                |new| w.intend(self.table, Op::Update, i, m, after, Some(new), Some(old)),
                || w.finish(self.table, 0),
            )?;
            if let Err(e) = self.take_own(i, m, w.owner(), patient) {
                self.abandon(w, new);
                return Err(e);
            }
            self.table.set_ref(i, new);
            slot::publish(self.table.meta(i), after); // the new record, next version
            w.finish(self.table, 0);
            // Closed, then freed: a recoverer frees only for an open journal, so never twice.
            self.table.free_record(old)?;
            return Ok(Inserted::Replaced);
        }
        match located.free {
            Some(first) => self.claim(w, key, value, h, first),
            None => Err(Error::TableFull {
                capacity: self.table.capacity(),
            }),
        }
    }
}
