//! The algorithm all backends share: open addressing with linear probing over [`RawTable`],
//! parameterised by a [`Protocol`].
//!
//! - **lookup**: probe from the key's home bucket. A stable EMPTY slot ends the probe (no key
//!   lies beyond it: see `shmap::Meta`); a TOMBSTONE, a claim in progress (its key is
//!   not published yet) or a FULL slot with another tag is passed over without touching its
//!   data; a busy FULL slot with the key's tag is waited for (it may be the key, being
//!   updated); a stable FULL slot with the tag is read through the protocol's
//!   `read_consistent`.
//! - **insert / remove**: under the protocol's key lock, so no two processes insert one key in
//!   two slots, probe for the key, then update it in place (take the slot by CAS to busy,
//!   `fence(Release)`, write, store the next version with Release), or claim the first free
//!   (EMPTY or TOMBSTONE) slot by CAS and publish it FULL, or retire it with one CAS to
//!   TOMBSTONE. Tombstones are reused at once, and those no present key's probe passes are
//!   returned to EMPTY when the table runs short of EMPTY slots (`reclaim.rs`), so lookups of
//!   absent keys stay short under any churn.
//!
//! Entries never move once placed: a key present throughout a lookup is always found.

use std::sync::atomic::{fence, Ordering};

use shmap::{
    compare_exchange_by_update, get_or_insert_by_update, remove_entry_by_update, AttachOptions,
    BackendKind, Backoff, Error, Inserted, KeyHash, Layout, Location, MapBackend, MapOps,
    MapParams, Meta, RawTable, Result, Segment, SlotState, Update,
};

use crate::protocol::{Journal, Op, Protocol};
use crate::slot;
use crate::validate::Validation;

/// A map over one shared segment, synchronised by protocol `P`.
#[derive(Debug)]
pub struct SharedMap<P: Protocol> {
    // Field order matters: the protocol may point into the segment the table owns, so it is
    // dropped first.
    protocol: P,
    table: RawTable,
    /// Fields no lookup touches, out of line so the hot ones stay as compact as they were.
    cold: Box<Cold>,
}

#[derive(Debug, Default)]
struct Cold {
    /// What validating a file-backed map found, if this handle opened it first.
    validation: Option<Validation>,
    /// When this handle may try a due reclaim of tombstones again (see `reclaim.rs`).
    reclaim_retry: parking_lot::Mutex<Option<std::time::Instant>>,
}

/// What one slot says about the key being looked up.
enum Step {
    Found,
    Next,
    End,
    /// The key's slot is being rewritten and the caller asked not to wait.
    Busy,
}

/// Where a writer found its key, and the first free slot before the probe ended.
pub(crate) struct Located {
    pub(crate) found: Option<(usize, Meta)>,
    /// Probe distance of the first EMPTY or TOMBSTONE slot.
    free: Option<usize>,
}

fn stalled(m: Meta, backoff: &Backoff) -> Error {
    Error::Stalled {
        what: "a slot held by another process",
        owner: m.owner(),
        waited_ms: backoff.waited_ms(),
    }
}

impl<P: Protocol> SharedMap<P> {
    fn from_segment(segment: Segment) -> Result<Self> {
        let protocol = P::open(&segment)?;
        let mut map = Self {
            protocol,
            table: RawTable::new(segment),
            cold: Box::default(),
        };
        if map.table.segment().is_exclusive() {
            map.cold.validation = Some(map.validate_exclusive()?);
            map.table.segment().share()?;
        }
        Ok(map)
    }

    /// The shared table (for tests and tools that inspect slots).
    pub fn raw_table(&self) -> &RawTable {
        &self.table
    }

    /// What this handle's open found in a file-backed map nobody else had open (see
    /// [`Validation`]); `None` if another process had it open, or for shared memory.
    pub fn validation(&self) -> Option<&Validation> {
        self.cold.validation.as_ref()
    }

    pub(crate) fn reclaim_retry(&self) -> &parking_lot::Mutex<Option<std::time::Instant>> {
        &self.cold.reclaim_retry
    }

    /// The protocol (for tests that must hold a lock at a chosen moment).
    #[doc(hidden)]
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    fn state(&self, i: usize, m: Meta) -> Result<SlotState> {
        m.state()
            .ok_or_else(|| self.table.corrupt(i, "invalid state bits"))
    }

    /// Examines slot `i` for `key`; copies its value into `out` if it is the key's slot.
    fn read_slot(
        &self,
        guard: &P::ReadGuard<'_>,
        i: usize,
        key: &[u8],
        h: &KeyHash,
        mut out: Option<&mut Vec<u8>>,
        patient: bool,
    ) -> Result<Step> {
        let meta = self.table.meta(i);
        let mut backoff = Backoff::new();
        loop {
            // Acquire: pairs with the Release that published m1, so the words read under it
            // are at least as new.
            let m1 = Meta(meta.load(Ordering::Acquire));
            // Plain compares, most likely outcome first for a probe passing other slots (see
            // `Meta::is_stable_empty`): the end of the probe, then any slot but our tag's.
            if m1.is_stable_empty() {
                return Ok(Step::End);
            }
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
                self.wait(m1, &mut backoff)?;
                continue;
            }
            let read = self.protocol.read_consistent(guard, i, meta, m1, || {
                let (klen, vlen) = self.table.lens(i);
                let in_bounds = self.table.lens_in_bounds(klen, vlen);
                let matched = klen == key.len() && self.table.key_matches(i, key);
                if let (true, true, Some(out)) = (matched, in_bounds, out.as_deref_mut()) {
                    self.table.read_value(i, vlen, out);
                }
                (matched, in_bounds)
            });
            match read {
                None => continue, // changed under us: look again
                Some((_, false)) => {
                    return Err(self.table.corrupt(i, "stored lengths exceed the maximums"))
                }
                Some((matched, true)) => return Ok(if matched { Step::Found } else { Step::Next }),
            }
        }
    }

    /// Finds `key`, copying its value into `out`; `None` if a slot on the way is being
    /// rewritten and not `patient`.
    fn lookup(
        &self,
        key: &[u8],
        mut out: Option<&mut Vec<u8>>,
        patient: bool,
    ) -> Result<Option<bool>> {
        self.table.check_key(key)?;
        let h = self.table.hash(key);
        let read = self.protocol.begin_read(&self.table)?;
        for i in self.table.probe(h.home) {
            match self.read_slot(&read, i, key, &h, out.as_deref_mut(), patient)? {
                Step::Found => return Ok(Some(true)),
                Step::End => return Ok(Some(false)),
                Step::Busy => return Ok(None),
                Step::Next => {}
            }
        }
        Ok(Some(false))
    }

    fn lookup_patiently(&self, key: &[u8], out: Option<&mut Vec<u8>>) -> Result<bool> {
        self.lookup(key, out, true)
            .map(|found| found.expect("a patient lookup always decides"))
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
    fn locate_with(&self, key: &[u8], h: &KeyHash, patient: bool) -> Result<Located> {
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
                let (klen, _) = self.table.lens(i);
                if klen == key.len() && self.table.key_matches(i, key) {
                    fence(Ordering::Acquire); // validate as in the seqlock recipe
                    if meta.load(Ordering::Relaxed) != m.0 {
                        continue;
                    }
                    return Ok(Located {
                        found: Some((i, m)),
                        free,
                    });
                }
                break;
            }
        }
        Ok(Located { found: None, free })
    }

    /// One step of a wait for the busy word `m`: now and then, asks whether its holder died
    /// (then what it left is repaired and the caller looks again at once); otherwise backs
    /// off. [`Error::Stalled`] once a live holder has kept it past the stall timeout.
    fn wait(&self, m: Meta, backoff: &mut Backoff) -> Result<()> {
        if backoff.owner_check_due() && self.protocol.recover(&self.table, m.owner())? {
            return Ok(());
        }
        if !backoff.snooze() {
            return Err(stalled(m, backoff));
        }
        Ok(())
    }

    /// Removes our key from slot `i`, found stable as `m`, under the key's lock.
    #[inline(always)]
    pub(crate) fn remove_found(&self, w: &P::WriteGuard<'_>, i: usize, m: Meta) -> Result<()> {
        self.remove_found_with(w, i, m, true)
    }

    /// [`SharedMap::remove_found`]; with `patient == false`, [`Error::Stalled`] (nothing
    /// changed) where it would wait past a short spin.
    #[inline(always)]
    fn remove_found_with(
        &self,
        w: &P::WriteGuard<'_>,
        i: usize,
        m: Meta,
        patient: bool,
    ) -> Result<()> {
        let tombstone = m.next(SlotState::Tombstone, 0);
        // Journalled first: a remover killed half way is rolled forward.
        w.intend(&self.table, Op::Remove, i, m, tombstone, None);
        self.take_own(i, m, w.owner(), patient)?;
        // The new version makes any reader that copied the old entry meanwhile look again and
        // see the tombstone.
        slot::publish(self.table.meta(i), tombstone);
        w.finish(&self.table, -1);
        Ok(())
    }

    /// Takes the slot of our own key, found stable as `m`: only a reader's slot lock may
    /// delay us, and it restores `m` exactly. Anything else means another process broke the
    /// protocol.
    #[inline(always)]
    fn take_own(&self, i: usize, m: Meta, owner: u64, patient: bool) -> Result<()> {
        let meta = self.table.meta(i);
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
        // The journal's image is written once; a claim is never redone, so its sum is unused.
        let mut entry = Some((key, value, 0));
        for i in self.table.probe_from(h.home, first) {
            let meta = self.table.meta(i);
            loop {
                // Relaxed: the CAS in `try_take` revalidates the word.
                let m = Meta(meta.load(Ordering::Relaxed));
                let free = matches!(m.state(), Some(SlotState::Empty | SlotState::Tombstone));
                if m.is_busy() || !free {
                    break; // taken by another key's inserter meanwhile: look further
                }
                let full = m.next(SlotState::Full, h.tag);
                w.intend(&self.table, Op::Claim, i, m, full, entry.take());
                if slot::try_take(meta, m, w.owner()) {
                    let sum = self.table.sum_word(h, key.len(), value, full.version());
                    self.table.write_entry(i, key, value, sum);
                    slot::publish(meta, full); // key, value and lengths with the FULL word
                    w.finish(&self.table, 1);
                    if m.state() == Some(SlotState::Empty) {
                        self.table.note_empty_claim();
                    }
                    return Ok(Inserted::New);
                }
            }
        }
        w.finish(&self.table, 0);
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
            // Journalled first: an updater killed half way is rolled forward.
            let sum = self.table.sum_word(h, key.len(), value, after.version());
            w.intend(
                &self.table,
                Op::Update,
                i,
                m,
                after,
                Some((key, value, sum)),
            );
            self.take_own(i, m, w.owner(), patient)?;
            self.table.write_value(i, key.len(), value, sum);
            slot::publish(self.table.meta(i), after); // the new value, next version
            w.finish(&self.table, 0);
            return Ok(Inserted::Replaced);
        }
        match located.free {
            Some(first) => self.claim(w, key, value, h, first),
            None => Err(Error::TableFull {
                capacity: self.table.capacity(),
            }),
        }
    }

    /// Repairs what processes that died mid-operation left behind, and returns how many
    /// operations were repaired. Operations do this themselves when they meet such leftovers;
    /// `len` does it too, so a quiescent map counts exactly.
    pub fn recover_dead(&self) -> Result<usize> {
        self.protocol.recover_dead(&self.table)
    }

    /// [`MapBackend::insert`] that never waits past a short spin: `Ok(None)` where `insert`
    /// would wait (for a key lock or slot another process holds) or repair a full table, with
    /// nothing changed. For callers that hold something others need while they run (Python's
    /// GIL): they release it, then call `insert`. It does not reclaim tombstones either: call
    /// [`SharedMap::reclaim_if_due`] after it, without the GIL, when
    /// [`SharedMap::reclaim_due`].
    #[inline]
    pub fn try_insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Inserted>> {
        self.table.check_key(key)?;
        self.table.check_value(value)?;
        let h = self.table.hash(key);
        let Some(w) = self.protocol.try_lock_key(&self.table, &h)? else {
            return Ok(None);
        };
        match self.insert_locked(&w, key, value, &h, false) {
            Ok(inserted) => Ok(Some(inserted)),
            // A write journalled but not made is ended by the lease's drop (nothing changed).
            Err(Error::Stalled { .. } | Error::TableFull { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`MapBackend::remove`] that never waits past a short spin: `Ok(None)` where `remove`
    /// would wait, with nothing changed (see [`SharedMap::try_insert`]).
    #[inline]
    pub fn try_remove(&self, key: &[u8]) -> Result<Option<bool>> {
        self.table.check_key(key)?;
        let h = self.table.hash(key);
        let Some(w) = self.protocol.try_lock_key(&self.table, &h)? else {
            return Ok(None);
        };
        let removed = match self.locate_with(key, &h, false) {
            Ok(Located { found: None, .. }) => Ok(false),
            Ok(Located {
                found: Some((i, m)),
                ..
            }) => self.remove_found_with(&w, i, m, false).map(|()| true),
            Err(e) => Err(e),
        };
        match removed {
            Ok(removed) => Ok(Some(removed)),
            // A remove journalled but not made is ended by the lease's drop.
            Err(Error::Stalled { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether a writer should reclaim tombstones now (see `reclaim.rs`).
    #[inline]
    pub fn reclaim_due(&self) -> bool {
        self.table.reclaim_due()
    }
}

impl<P: Protocol> MapOps for SharedMap<P> {
    fn name(&self) -> &str {
        self.table.segment().name()
    }

    fn params(&self) -> MapParams {
        self.table.segment().layout().params
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        self.lookup_patiently(key, Some(out))
    }

    fn contains_key(&self, key: &[u8]) -> Result<bool> {
        self.lookup_patiently(key, None)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Inserted> {
        self.table.check_key(key)?;
        self.table.check_value(value)?;
        let h = self.table.hash(key);
        let w = self.protocol.lock_key(&self.table, &h)?;
        // `Ok(i) => i` rather than passing the whole `Result` on: it is 80 bytes, copied through
        // the stack in 8- and 16-byte moves that read what was stored as one byte (a failed
        // store-to-load forwarding, the hottest instruction of the write path in perf).
        let inserted = match self.insert_locked(&w, key, value, &h, true) {
            Ok(inserted) => inserted,
            // Free slots may be held by claimers that died: repair them and look again.
            Err(Error::TableFull { .. }) if self.protocol.recover_dead(&self.table)? > 0 => {
                self.insert_locked(&w, key, value, &h, true)?
            }
            Err(e) => return Err(e),
        };
        drop(w);
        if inserted == Inserted::New {
            self.reclaim_if_due();
        }
        Ok(inserted)
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        self.table.check_key(key)?;
        let h = self.table.hash(key);
        let w = self.protocol.lock_key(&self.table, &h)?;
        let Some((i, m)) = self.locate(key, &h)?.found else {
            return Ok(false);
        };
        self.remove_found(&w, i, m)?;
        Ok(true)
    }

    fn len(&self) -> Result<usize> {
        Ok(self.protocol.len(&self.table))
    }

    fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let read = self.protocol.begin_read(&self.table)?;
        let mut entries = Vec::with_capacity(self.protocol.len(&self.table));
        for i in 0..self.table.capacity() {
            let meta = self.table.meta(i);
            let mut backoff = Backoff::new();
            loop {
                // Acquire: as in `read_slot`.
                let m1 = Meta(meta.load(Ordering::Acquire));
                match (self.state(i, m1)?, m1.is_busy()) {
                    (SlotState::Full, true) => {
                        self.wait(m1, &mut backoff)?;
                        continue;
                    }
                    (SlotState::Full, false) => {}
                    _ => break,
                }
                let copied = self.protocol.read_consistent(&read, i, meta, m1, || {
                    let (klen, vlen) = self.table.lens(i);
                    if !self.table.lens_in_bounds(klen, vlen) {
                        return None;
                    }
                    let (mut k, mut v) = (Vec::new(), Vec::new());
                    self.table.read_key(i, klen, &mut k);
                    self.table.read_value(i, vlen, &mut v);
                    Some((k, v))
                });
                match copied {
                    None => continue,
                    Some(None) => {
                        return Err(self.table.corrupt(i, "stored lengths exceed the maximums"))
                    }
                    Some(Some(entry)) => entries.push(entry),
                }
                break;
            }
        }
        // A key removed behind the scan and inserted again ahead of it is met twice; each copy
        // was present at some instant, so keep the first. Cheap next to the scan.
        let mut seen = std::collections::HashSet::with_capacity(entries.len());
        let keep: Vec<bool> = entries
            .iter()
            .map(|(k, _)| seen.insert(k.as_slice()))
            .collect();
        drop(seen);
        let mut keep = keep.into_iter();
        entries.retain(|_| keep.next().unwrap_or(true));
        Ok(entries)
    }

    fn compare_exchange(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), Option<Vec<u8>>>> {
        compare_exchange_by_update(self, key, expected, new)
    }

    fn get_or_insert(&self, key: &[u8], value: &[u8]) -> Result<(Vec<u8>, bool)> {
        get_or_insert_by_update(self, key, value)
    }

    fn remove_entry(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        remove_entry_by_update(self, key)
    }
}

impl<P: Protocol> MapBackend for SharedMap<P> {
    const KIND: BackendKind = P::KIND;

    fn create_in(location: &Location, params: MapParams) -> Result<Self> {
        let layout = Layout::new(params, P::area_len(&params))?;
        // Zeroed memory is already an EMPTY slot of version 0 everywhere.
        let segment = Segment::create(location, Self::KIND, layout, P::init)?;
        // A create that fails after the segment exists (the protocol's own setup) removes it:
        // the name is ours alone until we return.
        Self::from_segment(segment).inspect_err(|_| {
            let _ = location.unlink();
        })
    }

    fn attach_in(location: &Location, opts: AttachOptions) -> Result<Self> {
        Self::from_segment(Segment::attach(location, Self::KIND, P::area_len, opts)?)
    }

    fn location(&self) -> &Location {
        self.table.segment().location()
    }

    fn flush(&self) -> Result<()> {
        self.table.segment().flush()
    }

    fn try_get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<Option<bool>> {
        self.lookup(key, Some(out), false)
    }

    fn try_contains_key(&self, key: &[u8]) -> Result<Option<bool>> {
        self.lookup(key, None, false)
    }

    fn update<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> (Update, R)) -> Result<R> {
        let out = self.update_locked(key, f)?;
        self.reclaim_if_due(); // after the key's lock is released
        Ok(out)
    }
}
