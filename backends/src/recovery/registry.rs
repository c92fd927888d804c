//! The process registry of the striped backends: who holds a lock or slot, whether it is
//! alive, and what it was doing, so that any process can finish or undo the work of one that
//! was killed (see `recovery`).
//!
//! The registry follows the stripe words in the backend area: a 64-byte header whose first
//! word is the high-water mark of records ever used, then [`RECORDS`] records. A record is
//! owned by one lease of one handle at a time; its owner holds an OFD lock on byte `r` of the
//! segment file ([`shmap::LockFile`]), which the kernel releases when the owner dies.
//!
//! Record words: `0` generation, `1` pid (for error messages), `2` state, `3` slot,
//! `4` before, `5` after, then a journal of two references (see [`RawTable::write_image`]).
//!
//! State word (only its owner writes it, or a recoverer holding its byte lock):
//!
//! | bits  | meaning                                                                   |
//! |-------|---------------------------------------------------------------------------|
//! | 0-2   | the operation in flight on `slot`: [`Op`]                                 |
//! | 32-63 | net entries this record has inserted minus removed, wrapping modulo 2^32  |
//!
//! | from         | to                         | by                                         |
//! |--------------|----------------------------|--------------------------------------------|
//! | IDLE         | op (slot/before/after/journal written first, Release) | the owner, before it takes the slot |
//! | op           | IDLE, count + delta (one store) | the owner when done, or the recoverer   |
//!
//! Because the count and the end of the operation change in one store, a recoverer never
//! wonders whether a dead writer's count was applied. The map's length is the sum of the
//! records' counts, which wraps back to the exact figure.
//!
//! An owner id is `generation << INDEX_BITS | record`, never 0 (generations start at 1); the
//! generation is bumped when a record is taken over, so an id names one owner for ever.

use std::sync::atomic::{AtomicU64, Ordering};

use shmap::{Error, MapParams, RawTable, Segment, JOURNAL_WORDS, OWNER_BITS};

use crate::journal::Op;

/// Records in every registry: handles (per thread writing at once) that can use one map.
pub const RECORDS: usize = 1024;
const INDEX_BITS: u32 = 10;
const _: () = assert!(1 << INDEX_BITS == RECORDS);
const GENERATION_MASK: u64 = (1 << (OWNER_BITS - INDEX_BITS)) - 1;
const HEADER_BYTES: usize = 64;
const RECORD_HEAD_WORDS: usize = 8;

/// The record index of an owner id.
#[inline]
pub fn record_of(id: u64) -> usize {
    (id & (RECORDS as u64 - 1)) as usize
}

/// The generation of an owner id.
pub fn generation_of(id: u64) -> u64 {
    id >> INDEX_BITS
}

/// The owner id of record `r` at `generation`.
pub fn owner_id(r: usize, generation: u64) -> u64 {
    generation << INDEX_BITS | r as u64
}

/// The generation after `g`: never 0, never wider than a busy word's owner field.
pub fn next_generation(g: u64) -> u64 {
    match (g + 1) & GENERATION_MASK {
        0 => 1,
        n => n,
    }
}

fn record_len(_: &MapParams) -> usize {
    // A record's words fill a cache line of their own, so records of two writers never
    // share one.
    (RECORD_HEAD_WORDS + JOURNAL_WORDS).next_multiple_of(8) * 8
}

/// Bytes the registry of a `params` map takes.
pub fn registry_len(params: &MapParams) -> usize {
    record_len(params)
        .saturating_mul(RECORDS)
        .saturating_add(HEADER_BYTES)
}

/// One record's words.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    words: &'a [AtomicU64],
}

impl<'a> Record<'a> {
    #[inline]
    pub fn generation(&self) -> &'a AtomicU64 {
        &self.words[0]
    }
    #[inline]
    pub fn pid(&self) -> &'a AtomicU64 {
        &self.words[1]
    }
    #[inline]
    pub fn state(&self) -> &'a AtomicU64 {
        &self.words[2]
    }
    #[inline]
    pub fn slot(&self) -> &'a AtomicU64 {
        &self.words[3]
    }
    #[inline]
    pub fn before(&self) -> &'a AtomicU64 {
        &self.words[4]
    }
    #[inline]
    pub fn after(&self) -> &'a AtomicU64 {
        &self.words[5]
    }
    #[inline]
    pub fn journal(&self, slot_words: usize) -> &'a [AtomicU64] {
        &self.words[RECORD_HEAD_WORDS..RECORD_HEAD_WORDS + slot_words]
    }

    /// The operation in flight, or `None` for a state no owner writes (corruption).
    #[inline]
    pub fn op(state: u64) -> Option<Op> {
        Op::from_state(state)
    }

    /// The state word that ends the operation and adds `delta` to the count.
    #[inline]
    pub fn idle_state(state: u64, delta: i32) -> u64 {
        let count = ((state >> 32) as u32).wrapping_add(delta as u32);
        u64::from(count) << 32
    }

    /// The state word of `op` with the count kept.
    #[inline]
    pub fn op_state(state: u64, op: Op) -> u64 {
        state & !0xFFFF_FFFF | op as u64
    }
}

/// The registry of one segment, as this process maps it.
#[derive(Debug)]
pub struct Registry {
    base: *const u8,
    record_words: usize,
}

// SAFETY: `base` points into the shared mapping, which outlives the registry (both belong to
// one SharedMap, the table dropped last), and is only accessed through atomics.
unsafe impl Send for Registry {}
// SAFETY: as above.
unsafe impl Sync for Registry {}

impl Registry {
    /// The registry at byte `offset` of the validated backend area of `segment`.
    pub fn new(segment: &Segment, offset: usize) -> Self {
        let l = segment.layout();
        let len = registry_len(&l.params);
        assert!(
            offset + len <= l.backend_len,
            "backend area too small for the registry"
        );
        // SAFETY: backend_offset + offset + len lies inside the validated mapping.
        let base = unsafe { segment.ptr_at(l.backend_offset + offset) } as *const u8;
        Self {
            base,
            record_words: record_len(&l.params) / 8,
        }
    }

    /// The high-water mark: records `0..used` may have been used.
    pub fn used(&self) -> &AtomicU64 {
        // SAFETY: the header's first word, 64-byte aligned, inside the area.
        unsafe { &*(self.base as *const AtomicU64) }
    }

    /// Record `r` (< [`RECORDS`]).
    #[inline]
    pub fn record(&self, r: usize) -> Record<'_> {
        assert!(r < RECORDS);
        // SAFETY: record r lies inside the area (r < RECORDS, sized by registry_len), and is
        // 8-aligned; other processes write it only through atomics.
        let words = unsafe {
            let at = self.base.add(HEADER_BYTES + r * self.record_words * 8);
            std::slice::from_raw_parts(at as *const AtomicU64, self.record_words)
        };
        Record { words }
    }

    /// Records that may ever have been used, clamped (a corrupt mark must not send us out).
    pub fn used_records(&self) -> usize {
        // Acquire: a record counted here was initialised by its registrar before the fetch_max.
        (self.used().load(Ordering::Acquire) as usize).min(RECORDS)
    }

    /// Live entries: the sum of every record's count, exact when no write is in flight.
    pub fn live_entries(&self, table: &RawTable) -> usize {
        let total = (0..self.used_records()).fold(0u32, |sum, r| {
            // Relaxed: a statistic; each count is one word (a remover that watches for the
            // map emptying orders its loads with a fence: `shmap::RawTable::watch_emptying`).
            sum.wrapping_add((self.record(r).state().load(Ordering::Relaxed) >> 32) as u32)
        });
        (total as usize).min(table.capacity())
    }

    /// Makes every record idle, with all `len` entries counted on record 0. Only for a caller
    /// that excludes every other process (the first opener of a file-backed map, after
    /// repairing what the dead left): counts a crash of the machine tore are recounted.
    pub fn reset(&self, len: usize) {
        for r in 0..self.used_records().max(1) {
            // Counts are 32-bit and summed wrapping, as `idle_state` keeps them.
            let count = if r == 0 { u64::from(len as u32) } else { 0 };
            // Relaxed: nobody else has the map open; the session lock hands it over.
            self.record(r).state().store(count << 32, Ordering::Relaxed);
        }
        self.used().fetch_max(1, Ordering::Relaxed);
    }

    /// The error for a record no protocol produces.
    pub fn corrupt(table: &RawTable, r: usize, what: &str) -> Error {
        Error::Corrupt {
            name: table.segment().name().to_owned(),
            reason: format!("registry record {r}: {what}"),
        }
    }
}
