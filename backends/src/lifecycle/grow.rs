//! Growing the table: stop the writers, copy into a table twice the size, publish it.
//!
//! The design and its reasoning are in `docs/growth.md` ("A first build"); in short:
//!
//! 1. **Stop.** The resizer takes every writer lock ([`Protocol::try_lock_all`]: every
//!    stripe, or the table mutex), repairing dead holders as any writer does, then repairs
//!    every dead process's operation. From here until the locks are released, table `g` is
//!    frozen: readers go on reading it, nobody writes it.
//! 2. **Copy.** It creates `name.t<g+1>` (a leftover of a resizer that died before publishing
//!    is removed first: only the holder of every lock can be resizing `g`), inserts every
//!    FULL entry of `g` there (version 1, no journal: nobody else can see the table yet), sets
//!    the new table's counters, and flushes it for a file map.
//! 3. **Publish.** It stores the root's generation word `g + 1` (Release), releases table
//!    `g`'s memory (its pages are punched out; its name unlinked) and drops the locks.
//!    Writers that waited load the word once they hold their lock and write `g + 1`.
//!
//! Killed anywhere: before step 3 the word still names `g`, which is whole (the half-made
//! table is removed by the next resizer, and `unlink` removes every generation's name); after
//! it, `g + 1` is whole. The locks it held name a dead owner and are taken over as a dead
//! writer's are; it journals nothing, so there is nothing else to repair.

use std::sync::atomic::Ordering;

use shmap::{Layout, MapBackend, Meta, RawTable, Result, Segment, SlotState, MAX_GENERATIONS};

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
        self.grow_at(self.generation(), true)
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
        let Some(all) = self.lock_all(wait, "the writer locks, to grow the table")? else {
            return Ok(Grown::Busy);
        };
        // The locks are held: nobody else can move the generation now.
        let (g, old) = tables.current()?;
        if g != from {
            return Ok(Grown::ByOther);
        }
        let params = tables.params();
        let capacity = old.capacity().saturating_mul(2).min(params.max_capacity);
        let next = g + 1;
        if capacity <= old.capacity() || next >= MAX_GENERATIONS {
            return Ok(Grown::AtLimit);
        }
        let Ok(layout) = Layout::new(params.resized(capacity), 0) else {
            return Ok(Grown::AtLimit); // past MAX_SEGMENT_BYTES
        };
        // Every operation a dead process left in `old` is finished or undone, so every slot
        // is stable (but for spinlock readers' bits) and every entry is whole.
        self.protocol().recover_dead(tables)?;
        let location = tables.location(next);
        discard_leftovers(tables, g, &location);
        let root = tables.root().segment();
        let new = RawTable::new(
            Segment::create_table(&location, Self::KIND, layout, root.hash_seed())?,
            old.heap().clone(),
        );
        let copied = copy_entries(old, &new).and_then(|copied| {
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
        // Readers still in `old` load the generation again before they trust what they read.
        old.segment().release_table();
        if g > 0 {
            let _ = tables.location(g).unlink_one();
        }
        drop(all);
        Ok(Grown::Resized {
            generation: next,
            capacity: new.capacity(),
        })
    }
}

/// Inserts every entry of `old` (frozen: no writer runs) into the empty, unpublished `new`;
/// returns how many. The records stay where they are: both tables name them until `old` is
/// released, and a writer frees one only after the generation word moved.
fn copy_entries(old: &RawTable, new: &RawTable) -> Result<usize> {
    let mut key = Vec::new();
    let mut copied = 0;
    for i in 0..old.capacity() {
        // Acquire: the entry's words are at least as new as its FULL word.
        let m = Meta(old.meta(i).load(Ordering::Acquire));
        match m.state() {
            // Busy only by a spinlock reader, who writes nothing: the words are stable.
            Some(SlotState::Full) => {}
            // A busy free slot is a claim whose key was never published.
            Some(SlotState::Empty | SlotState::Tombstone) => continue,
            None => return Err(old.corrupt(i, "invalid state bits")),
        }
        if !old.read_key(i, &mut key) {
            return Err(old.corrupt(
                i,
                "its record lies outside the heap or exceeds the maximums",
            ));
        }
        let h = new.hash(&key);
        let j = new
            .probe(h.home)
            // Relaxed: only we write `new` until it is published.
            .find(|&j| Meta(new.meta(j).load(Ordering::Relaxed)).is_stable_empty())
            .ok_or_else(|| new.corrupt(0, "no room while copying a smaller table"))?;
        let full = Meta(0).next(SlotState::Full, h.tag);
        new.set_ref(j, old.ref_of(i));
        new.add_passes(h.home, j);
        // Relaxed: published to others by the generation word's Release store.
        new.meta(j).store(full.0, Ordering::Relaxed);
        copied += 1;
    }
    Ok(copied)
}
