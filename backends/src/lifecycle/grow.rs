//! Growing the table: make a table twice the size, stop the writers, copy into it, publish it.
//!
//! The design and its reasoning are in `docs/growth.md` ("A first build"); in short:
//!
//! 0. **Prepare.** The resizer takes the root's resize lock ([`shmap::RESIZE_BYTE`], an OFD
//!    lock the kernel drops when its holder dies): one resizer at a time, and the only process that
//!    touches the next generation's name. It removes what a resizer killed half way left
//!    (`discard_leftovers`), creates `name.t<g+1>` and maps its pages in, in one call, while
//!    writers go on: making the table is a third of a resize's time.
//! 1. **Stop.** It takes every writer lock ([`Protocol::try_lock_all`]: every stripe, or the
//!    table mutex), repairing dead holders as any writer does, then repairs every dead
//!    process's operation. From here until the locks are released, table `g` is frozen:
//!    readers go on reading it, nobody writes it.
//! 2. **Copy.** It inserts every FULL entry of `g` into the new table (version 1, no journal:
//!    nobody else can see the table yet), reading them in batches whose misses overlap
//!    ([`copy_entries`]), sets the new table's counters, and flushes it for a file map.
//! 3. **Publish.** It stores the root's generation word `g + 1` (Release) and drops the writer
//!    locks; writers that waited load the word once they hold their lock and write `g + 1`.
//!    Then it releases table `g`'s memory (its pages are punched out; its name unlinked),
//!    which nobody writes again, and the resize lock.
//!
//! Killed anywhere: before step 3 the word still names `g`, which is whole (the half-made
//! table is removed by the next resizer, and `unlink` removes every generation's name); after
//! it, `g + 1` is whole (and `g`'s memory is released by the next resizer). The locks it held
//! name a dead owner and are taken over as a dead writer's are; it journals nothing, so there
//! is nothing else to repair.

use std::sync::atomic::Ordering;

use shmap::heap::Ref;
use shmap::{
    table_number, KeyHash, Layout, MapBackend, Meta, RawTable, Result, Segment, SlotState,
    MAX_GENERATIONS,
};

use crate::generations::discard_leftovers;
use crate::protocol::Protocol;
use crate::table::SharedMap;

/// What [`SharedMap::grow`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grown {
    /// This call made generation `generation`, of `capacity` buckets.
    Resized { generation: u64, capacity: usize },
    /// Another process resized the table first.
    ByOther,
    /// The table is at `max_capacity` (or the next size would not fit a segment): it stays.
    AtLimit,
    /// A live writer held its lock past a short spin and the caller asked not to wait.
    Busy,
}

impl<P: Protocol> SharedMap<P> {
    /// Doubles the table now (up to `max_capacity`), whatever its load: for tools and tests.
    /// Writers grow it by themselves when it is 3/4 used (see `reclaim.rs`).
    pub fn grow(&self) -> Result<Grown> {
        self.grow_at(self.tables().generation(), true)
    }

    /// Grows table `from` unless a resize replaced it already; `true` if the current table is
    /// newer than `from` when it returns.
    pub(crate) fn grow_from(&self, from: u64, wait: bool) -> Result<bool> {
        Ok(matches!(
            self.grow_at(from, wait)?,
            Grown::Resized { .. } | Grown::ByOther
        ))
    }

    fn grow_at(&self, from: u64, wait: bool) -> Result<Grown> {
        let tables = self.tables();
        if tables.generation() != from {
            return Ok(Grown::ByOther);
        }
        let root = tables.root().segment();
        let Some(resizing) = tables.resize_lock(wait)? else {
            return Ok(Grown::Busy);
        };
        // Only the resize lock's holder moves the generation: it stays `g` until we publish.
        let (g, old) = tables.current()?;
        if g != from {
            return Ok(Grown::ByOther);
        }
        let params = tables.params();
        let capacity = old.capacity().saturating_mul(2).min(params.max_capacity);
        let next = g + 1; // the next table, emptied as often as this one
        if capacity <= old.capacity() || table_number(next) >= MAX_GENERATIONS {
            return Ok(Grown::AtLimit);
        }
        let Ok(layout) = Layout::new(params.resized(capacity), 0) else {
            return Ok(Grown::AtLimit); // past MAX_SEGMENT_BYTES
        };
        // Made before the writers stop: nobody else touches `next`'s name while we hold the
        // resize lock, and making it (its pages reserved, then mapped in) is a third of a
        // resize's time that no writer needs to wait for.
        let location = tables.location(next);
        discard_leftovers(tables, g, &location);
        let new = RawTable::new(
            Segment::create_table(&location, Self::KIND, layout, root.hash_seed())?,
            old.heap().clone(),
        );
        new.segment().populate_table();
        let Some(all) = self.lock_all(wait, "the writer locks, to grow the table")? else {
            let _ = location.unlink_one();
            return Ok(Grown::Busy);
        };
        // Every operation a dead process left in `old` is finished or undone, so every slot
        // is stable (but for spinlock readers' bits) and every entry is whole.
        let copied = self
            .protocol()
            .recover_dead(tables)
            .and_then(|_| copy_entries(old, &new))
            .and_then(|copied| {
                if new.checksummed() {
                    new.segment().flush()?; // whole on disk before the root names it
                }
                Ok(copied)
            });
        let copied = match copied {
            Ok(copied) => copied,
            Err(e) => {
                let _ = location.unlink_one();
                return Err(e);
            }
        };
        new.restart_usage(capacity - copied);
        new.note_live(copied);
        // Relaxed: nobody reads the new table before the Release store below.
        new.segment()
            .header()
            .live_count()
            .store(copied as u64, Ordering::Relaxed);
        let new = tables.adopt(next, new);
        // Release: whoever loads `next` (Acquire) sees every entry copied above.
        root.header().generation().store(next, Ordering::Release);
        if new.checksummed() {
            let _ = root.flush(); // the new generation survives a restart of the machine
        }
        // Writers go on in `next`; nobody writes `old` again, so it is released after.
        drop(all);
        // Readers still in `old` load the generation again before they trust what they read.
        old.segment().release_table();
        if table_number(g) > 0 {
            let _ = tables.location(g).unlink_one();
        }
        drop(resizing);
        Ok(Grown::Resized {
            generation: table_number(next),
            capacity: new.capacity(),
        })
    }
}

/// Entries a copy reads ahead: enough for their records' misses (and then their new
/// buckets') to overlap, few enough that the first stays in cache until it is placed.
const BATCH: usize = 32;

/// Inserts every entry of `old` (frozen: no writer runs) into the empty, unpublished `new`;
/// returns how many. The records stay where they are: both tables name them until `old` is
/// released, and a writer frees one only after the generation word moved.
///
/// Every entry needs its key (the home in `new` is a hash bit `old` does not keep), so each
/// is a miss into the heap and another into `new`: the copy takes them in batches, asking
/// for every record of a batch before it reads the first, and for every new bucket before it
/// places the first, so that a batch waits for about two misses instead of two per entry.
fn copy_entries(old: &RawTable, new: &RawTable) -> Result<usize> {
    let mut key = Vec::new();
    let mut copied = 0;
    // A batch's entries (bucket, reference), then their hashes in `new`.
    let mut batch: Vec<(usize, Ref)> = Vec::with_capacity(BATCH);
    let mut hashes: Vec<KeyHash> = Vec::with_capacity(BATCH);
    let mut i = 0;
    while i < old.capacity() {
        batch.clear();
        while i < old.capacity() && batch.len() < BATCH {
            // Acquire: the entry's words are at least as new as its FULL word.
            let m = Meta(old.meta(i).load(Ordering::Acquire));
            match m.state() {
                // Busy only by a spinlock reader, who writes nothing: the words are stable.
                Some(SlotState::Full) => {
                    let r = old.ref_of(i);
                    old.prefetch_record(r);
                    batch.push((i, r));
                }
                // A busy free slot is a claim whose key was never published.
                Some(SlotState::Empty | SlotState::Tombstone) => {}
                None => return Err(old.corrupt(i, "invalid state bits")),
            }
            i += 1;
        }
        hashes.clear();
        for &(j, r) in &batch {
            let Some(e) = old.entry_of(r) else {
                return Err(old.corrupt(
                    j,
                    "its record lies outside the heap or exceeds the maximums",
                ));
            };
            e.read_key(&mut key);
            let h = new.hash(&key);
            new.prefetch_for_write(&h);
            hashes.push(h);
        }
        for (&(_, r), h) in batch.iter().zip(&hashes) {
            let j = new
                .probe(h.home)
                // Relaxed: only we write `new` until it is published.
                .find(|&j| Meta(new.meta(j).load(Ordering::Relaxed)).is_stable_empty())
                .ok_or_else(|| new.corrupt(0, "no room while copying a smaller table"))?;
            let full = Meta(0).next(SlotState::Full, h.tag);
            new.set_ref(j, r);
            new.add_passes(h.home, j);
            // Relaxed: published to others by the generation word's Release store.
            new.meta(j).store(full.0, Ordering::Relaxed);
            copied += 1;
        }
    }
    Ok(copied)
}
