//! The algorithm all backends share: open addressing with linear probing over [`RawTable`],
//! parameterised by a [`Protocol`].
//!
//! - **lookup**: probe from the key's home bucket. A stable EMPTY slot ends the probe (no key
//!   lies beyond it: see `shmap::Meta`), and so does any slot that is not the key's and that
//!   no probe passes (its pass count is 0: `raw_table/passes.rs`); a TOMBSTONE, a claim in
//!   progress (its key is not published yet) or a FULL slot with another tag is passed over
//!   without touching its data; a busy FULL slot with the key's tag is waited for (it may be the key, being
//!   updated); a stable FULL slot with the tag is read through the protocol's
//!   `read_consistent`.
//! - **insert / remove**: under the protocol's key lock, so no two processes insert one key in
//!   two slots, probe for the key, then update it in place (take the slot to busy, by CAS
//!   where readers may lock slots and by a plain store where they never do, since only the
//!   key's lock holder changes its slot; `fence(Release)`, write, store the next version with
//!   Release), or claim the first free (EMPTY or TOMBSTONE) slot by CAS and publish it FULL,
//!   or retire it (taken the same way) to TOMBSTONE. Tombstones are reused at once, and those
//!   no present key's probe passes are returned to EMPTY when the table runs short of EMPTY
//!   slots (`reclaim.rs`), so lookups of absent keys stay short under any churn.
//!
//! A key present throughout a lookup is always found. Entries move within a table only
//! under their key's writer lock, to an earlier slot of their probe, in tables at least half
//! live (`compact.rs`): a lookup that misses checks the table's move count did not change,
//! or looks again. A table that fills up is replaced by one twice its size (`grow.rs`,
//! `docs/growth.md`): every operation starts by loading the current generation
//! (`generations.rs`); writers load it once they hold their key's lock, readers check it
//! again at the end.
//!
//! The rooms: this file holds the map's handle, its open, the lookup and the write of one key
//! under its lock, and the exclusion of every writer that scans and resizes share;
//! `probe.rs` the steps of one probe in one table; `rmw.rs` read-modify-write of one key;
//! `ops.rs` the contract ([`MapOps`], [`MapBackend`]) on top. Whole-table work (growth,
//! reclaim, compaction, validation of files) is in `lifecycle/`, each an `impl` block of
//! [`SharedMap`] that calls down into this module, never the other way by import.

mod ops;
pub(crate) mod probe;
mod rmw;

use shmap::{
    AttachOptions, Backoff, Error, Inserted, KeyHash, MapParams, ProbeKey, RawTable, Result,
    Segment, ValueSink,
};

use std::sync::Arc;

use shmap::heap::Heap;

use crate::generations::Tables;
use crate::protocol::Protocol;

use probe::{At, Located, Step};

/// A map over one shared segment (and the table generations it grew), synchronised by
/// protocol `P`.
#[derive(Debug)]
pub struct SharedMap<P: Protocol> {
    // Field order matters: the protocol points into the root segment the tables own, so it
    // is dropped first.
    protocol: P,
    tables: Tables,
    /// Fields no lookup touches, out of line so the hot ones stay as compact as they were.
    cold: Box<Cold>,
}

#[derive(Debug, Default)]
struct Cold {
    /// What validating a file-backed map found, if this handle opened it first.
    validation: Option<Validation>,
    /// When this handle may try a due reclaim of tombstones (or a resize) again (see
    /// `reclaim.rs`).
    reclaim_retry: parking_lot::Mutex<Option<std::time::Instant>>,
}

impl<P: Protocol> SharedMap<P> {
    fn from_segment(segment: Segment, heap: Arc<Heap>, opts: AttachOptions) -> Result<Self> {
        let protocol = P::open(&segment)?;
        let exclusive = segment.is_exclusive();
        let mut map = Self {
            protocol,
            tables: Tables::new(segment, heap, P::KIND, opts)?,
            cold: Box::default(),
        };
        if exclusive {
            map.cold.validation = Some(map.validate_exclusive()?);
            map.tables.root().segment().share()?;
        }
        Ok(map)
    }

    /// The current table (for tests and tools that inspect slots).
    pub fn raw_table(&self) -> Result<&RawTable> {
        self.tables.current().map(|(_, t)| t)
    }

    /// Gives the runs of the map's heap that hold no record back to the kernel, and their
    /// space to any size (`shmap::heap::Heap::trim`): what Python's `clear()` does after its
    /// removals. Frees also trim by themselves once enough blocks came back; readers and
    /// writers go on meanwhile.
    pub fn trim(&self) -> Result<shmap::heap::Trimmed> {
        self.raw_table()?.heap().trim()
    }

    /// The map's table generations (for tests that must hold a lock at a chosen moment).
    #[doc(hidden)]
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The shape the map was created with (`capacity` is the first table's).
    pub fn initial_params(&self) -> MapParams {
        self.tables.params()
    }

    /// The current table's generation: 0 until the first resize, one more at each (its
    /// segment is `name.t<g>`). A `clear` keeps the table, and so the generation.
    pub fn generation(&self) -> u64 {
        shmap::table_number(self.tables.generation())
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

    /// The view of the current generation.
    #[inline(always)]
    pub(crate) fn at(&self) -> Result<At<'_, P>> {
        let (gen, table) = self.tables.current()?;
        Ok(self.view_of(gen, table))
    }

    /// The view of generation `gen`, whose table is `table`.
    #[inline(always)]
    pub(crate) fn view_of<'a>(&'a self, gen: u64, table: &'a RawTable) -> At<'a, P> {
        At {
            protocol: &self.protocol,
            tables: &self.tables,
            table,
            gen,
        }
    }

    /// [`MapBackend::try_get_into`](shmap::MapBackend::try_get_into) that hands the value's
    /// words to `sink` instead of copying them into a buffer (see [`ValueSink`]: it may be called several times, the last call
    /// read the value returned). `Ok(None)` where a writer is in the middle of the key.
    #[inline]
    pub fn try_get_with<S: ValueSink + ?Sized>(
        &self,
        key: &[u8],
        sink: &mut S,
    ) -> Result<Option<bool>> {
        self.lookup(key, Some(sink), false)
    }

    /// [`MapOps::get_into`](shmap::MapOps::get_into) that hands the value's words to `sink`
    /// (called again for each read attempt; the last call read the value returned). Waits
    /// for a writer in the middle of the key, as `get_into` does.
    #[inline]
    pub fn get_with<K: ProbeKey + ?Sized, S: ValueSink + ?Sized>(
        &self,
        key: &K,
        sink: &mut S,
    ) -> Result<bool> {
        self.lookup_patiently(key, Some(sink))
    }

    /// Finds `key`, handing its value to `out`; `None` if a slot on the way is being
    /// rewritten and not `patient`. Starts over when a resize replaced the table it probed
    /// (see `generations.rs`).
    #[inline(always)]
    fn lookup<K: ProbeKey + ?Sized, S: ValueSink + ?Sized>(
        &self,
        key: &K,
        mut out: Option<&mut S>,
        patient: bool,
    ) -> Result<Option<bool>> {
        self.tables.root().check_key_len(key.len())?;
        let h0 = self.tables.root().hash_key(key);
        loop {
            let at = self.at()?;
            let h = at.table.rehome(&h0);
            let moves = at.table.moves();
            let read = self.protocol.begin_read(&self.tables)?;
            let step = at.find(&read, key, &h, out.as_deref_mut(), patient);
            drop(read);
            // Acquire (in `generation`): ordered after every word `find` read.
            if self.tables.generation() != at.gen {
                continue; // what we read may be of a table being released: look again
            }
            return match step? {
                Step::Found => Ok(Some(true)),
                // A compaction may have moved the key from behind us to ahead (`compact.rs`).
                Step::End | Step::Next if at.table.moves() != moves => continue,
                Step::End | Step::Next => Ok(Some(false)),
                Step::Busy => Ok(None),
                Step::Moved => continue,
            };
        }
    }

    fn lookup_patiently<K: ProbeKey + ?Sized, S: ValueSink + ?Sized>(
        &self,
        key: &K,
        out: Option<&mut S>,
    ) -> Result<bool> {
        self.lookup(key, out, true)
            .map(|found| found.expect("a patient lookup always decides"))
    }

    /// Runs the write `op` on `key` under its key lock, in the table current while the lock
    /// is held (no resize can pass a held key lock). When `op` finds the table full, releases
    /// the lock, grows the table and runs `op` again: `op` must change nothing when it fails.
    /// `patient == false`: [`Error::Stalled`] where it would wait for a lock, and a full table
    /// is reported rather than grown.
    #[inline(always)]
    pub(crate) fn write_key<R>(
        &self,
        key: &[u8],
        patient: bool,
        mut op: impl FnMut(&At<'_, P>, &P::WriteGuard<'_>, &KeyHash) -> Result<R>,
    ) -> Result<R> {
        self.tables.root().check_key(key)?;
        let h0 = self.tables.root().hash(key);
        if let Ok((_, t)) = self.tables.current() {
            // Where the key most likely is, in the table most likely current once we hold the
            // lock: a wrong guess only loads lines.
            t.prefetch_for_write(&h0);
        }
        // Only for a table full of tombstones that a reclaim could not scan yet (cold).
        let mut reclaim_wait: Option<Backoff> = None;
        let mut recounted = false;
        loop {
            let w = if patient {
                self.protocol.lock_key(&self.tables, &h0)?
            } else {
                match self.protocol.try_lock_key(&self.tables, &h0)? {
                    Some(w) => w,
                    None => {
                        return Err(Error::Stalled {
                            what: "a stripe lock",
                            owner: 0,
                            waited_ms: 0,
                        })
                    }
                }
            };
            let at = self.at()?;
            let h = at.table.rehome(&h0);
            // `Ok(r) => return Ok(r)` rather than passing the whole `Result` on: it is 80
            // bytes, copied through the stack in 8- and 16-byte moves that read what was
            // stored as one byte (a failed store-to-load forwarding, once the hottest
            // instruction of the write path in perf).
            let full_at = match op(&at, &w, &h) {
                Ok(r) => return Ok(r),
                Err(Error::TableFull { capacity }) => capacity,
                Err(e) => return Err(e),
            };
            // Free slots may be held by claimers that died: repair them and look again.
            if patient && self.protocol.recover_dead(&self.tables)? > 0 {
                match op(&at, &w, &h) {
                    Ok(r) => return Ok(r),
                    Err(Error::TableFull { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            drop(w);
            if !patient {
                return Err(Error::TableFull { capacity: full_at });
            }
            let cannot_grow = match self.grow_from(at.gen, true) {
                Ok(true) => continue,
                Ok(false) => Error::TableFull { capacity: full_at },
                // No room for the next table: say so, unless a reclaim makes room.
                Err(e @ Error::NoSpace { .. }) => e,
                Err(e) => return Err(e),
            };
            // A table that cannot grow stops new keys at 7/8 of its slots used, tombstones
            // included (`RawTable::empty_claims_allowed`): returning them to EMPTY makes room.
            // Another process's reclaim may have lowered the count since `op` met the limit
            // (the compaction test's churners met "full" with 653 of 1,024 slots used): look
            // again, for as long as the reclaim wait's backoff allows.
            let backoff = reclaim_wait.get_or_insert_with(Backoff::new);
            if at.table.back_under_fill_limit() && backoff.snooze() {
                continue;
            }
            // Not when the slots used are all live (a full table): the scan would free nothing.
            if at.table.used_slots() <= self.protocol.len(&self.tables)? {
                return Err(cannot_grow);
            }
            match self.reclaim_tombstones()? {
                Some(r) if r.freed > 0 => continue,
                // Another writer's reclaim made room meanwhile (ours then freed nothing).
                _ if at.table.empty_claims_allowed() => continue,
                // Another writer held its lock, so the reclaim could not run, or could not
                // go on past the runs it freed nothing in: a patient writer tries again (the
                // next reclaim goes on from there), up to the stall timeout, rather than
                // report a table full that a reclaim would empty (4 processes of `exchange`
                // met the first, 8 the second).
                None if reclaim_wait.get_or_insert_with(Backoff::new).snooze() => continue,
                Some(r) if r.partial && reclaim_wait.get_or_insert_with(Backoff::new).snooze() => {
                    continue
                }
                // A whole pass freed nothing, yet the count says the table is at the limit:
                // the count may be high (a reclaimer killed after freeing). Recount once.
                Some(r) if !r.partial && !r.aborted && !recounted => {
                    recounted = true;
                    if self.recount_usage()? {
                        continue;
                    }
                    return Err(cannot_grow);
                }
                _ => return Err(cannot_grow),
            }
        }
    }

    /// Every writer lock: waiting for live holders up to the stall timeout if `wait`, else
    /// `None` when one holds its lock past a short spin.
    pub(crate) fn lock_all(
        &self,
        wait: bool,
        what: &'static str,
    ) -> Result<Option<P::AllGuard<'_>>> {
        let mut backoff = Backoff::new();
        loop {
            match self.protocol().try_lock_all(self.tables())? {
                Some(all) => return Ok(Some(all)),
                None if !wait => return Ok(None),
                // A live writer kept its lock past a spin: it finishes in a bounded time, or
                // the stall timeout reports it.
                None if backoff.snooze() => {}
                None => {
                    return Err(Error::Stalled {
                        what,
                        owner: 0,
                        waited_ms: backoff.waited_ms(),
                    })
                }
            }
        }
    }

    /// Repairs what processes that died mid-operation left behind, and returns how many
    /// operations were repaired. Operations do this themselves when they meet such leftovers;
    /// `len` does it too, so a quiescent map counts exactly.
    pub fn recover_dead(&self) -> Result<usize> {
        self.protocol.recover_dead(&self.tables)
    }

    /// [`MapOps::insert`](shmap::MapOps::insert) that never waits past a short spin:
    /// `Ok(None)` where `insert` would wait (for a key lock or slot another process holds),
    /// repair or grow a full table, with nothing changed. For callers that hold something
    /// others need while they run (Python's GIL): they release it, then call `insert`. It does
    /// not reclaim tombstones or grow the table either: call [`SharedMap::reclaim_if_due`]
    /// after it, without the GIL, when [`SharedMap::reclaim_due`].
    #[inline]
    pub fn try_insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Inserted>> {
        self.tables.root().check_value(value)?;
        let inserted = self.write_key(key, false, |at, w, h| {
            at.insert_locked(w, key, value, h, false)
        });
        match inserted {
            Ok(inserted) => Ok(Some(inserted)),
            // A write journalled but not made is ended by the lease's drop (nothing changed).
            Err(Error::Stalled { .. } | Error::TableFull { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`MapOps::remove`](shmap::MapOps::remove) that never waits past a short spin:
    /// `Ok(None)` where `remove` would wait, with nothing changed (see
    /// [`SharedMap::try_insert`]).
    #[inline]
    pub fn try_remove(&self, key: &[u8]) -> Result<Option<bool>> {
        let removed = self.write_key(key, false, |at, w, h| {
            match at.locate_with(key, h, false)? {
                Located { found: None, .. } => Ok(false),
                Located {
                    found: Some((i, m)),
                    ..
                } => at.remove_found_with(w, i, m, h, false).map(|()| true),
            }
        });
        match removed {
            Ok(removed) => Ok(Some(removed)),
            // A remove journalled but not made is ended by the lease's drop.
            Err(Error::Stalled { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether removes found the map empty and its table is due to be given back (see
    /// `clear.rs`): then call [`SharedMap::give_back_if_due`], holding nothing others need.
    #[inline]
    pub fn give_back_due(&self) -> bool {
        self.tables.current().is_ok_and(|(_, t)| t.give_back_due())
    }

    /// Gives the table back if removes found the map empty and it still is (errors are not
    /// the remover's: its remove is done, and the next remove that finds the map empty asks
    /// again). Waits for every writer.
    pub fn give_back_if_due(&self) {
        if self.give_back_due() {
            let _ = self.give_back_if_empty();
        }
    }

    /// Whether a writer should reclaim tombstones, grow the table, sweep the heap or give
    /// back an emptied table now (see `reclaim.rs`, `sweep.rs`, `clear.rs`).
    #[inline]
    pub fn reclaim_due(&self) -> bool {
        self.tables.current().is_ok_and(|(_, t)| {
            let heap = t.heap();
            t.reclaim_due()
                || t.growth_due()
                || heap.sweep_due()
                || heap.compaction_due()
                || t.give_back_due()
        })
    }
}

/// What opening a file-backed map found and changed; all zero but `entries` after a clean
/// shutdown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validation {
    /// Entries found whole and kept.
    pub entries: usize,
    /// Entries dropped: a slot whose words failed the checksum, or a FULL slot left busy.
    pub dropped: usize,
    /// Control words no writer produces, or free slots left busy, made tombstones.
    pub bad_words: usize,
    /// Later copies of a key found in two slots (the one lookups find is kept).
    pub duplicates: usize,
    /// EMPTY words made tombstones so that an entry beyond them stays reachable.
    pub bridged: usize,
    /// Operations of dead processes finished or undone before the scan.
    pub repaired: usize,
    /// Whether repairing them met a record it could not repair (its slot is scanned anyway).
    pub unrepairable: bool,
    /// The heap's bookkeeping rebuilt from the records kept: what the blocks no entry names
    /// (left by killed processes, or by a tear) gave back.
    pub heap: shmap::heap::Rebuilt,
}

impl Validation {
    /// Whether the file held nothing torn: every entry kept, no word changed.
    pub fn is_clean(&self) -> bool {
        self.dropped + self.bad_words + self.duplicates + self.bridged == 0 && !self.unrepairable
    }
}
