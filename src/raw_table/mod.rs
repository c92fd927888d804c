//! The open-addressing table every backend shares: bucket addressing, hashing, probing, and
//! the records its buckets name in the map's heap. It knows no synchronisation protocol; each
//! backend decides when a read is allowed and how it is validated.
//!
//! A bucket is a control word and a reference word ([`Ref`]) side by side (`layout.rs`); the
//! entry's key and value live in a record in the heap ([`Heap`]), allocated by size when the
//! entry is written and freed once its replacement (or its tombstone) is published
//! (`docs/variable-size-entries.md`, 2.3: a reader's copy of a freed block is rejected by its
//! version check, so no epochs are needed).
//!
//! Invariants (upheld by construction from a validated [`Segment`]):
//! - `meta(i)` and `reference(i)` of every `i < capacity` lie inside the mapping, 8-aligned;
//! - every offset and length read from a bucket or a record is checked against what the heap
//!   file backs (`Heap::words`) and against the map's limits before it sizes a copy, so a
//!   lying bucket can make a copy wrong (the backend's validation discards it), never out of
//!   bounds.
//!
//! The rest of the table's methods live beside it: `entry` (a record as a bucket names it),
//! `image` (checksums and the journal's references), `passes` (how many probes pass each
//! bucket), `usage` (the header's counters that decide reclaims and growth), `words` (bytes to
//! and from 8-byte words).

use std::sync::atomic::{AtomicU64, AtomicU8};
use std::sync::Arc;

use crate::probe_key::ProbeKey;

use crate::error::{Error, Result};
use crate::heap::{Heap, Ref};
use crate::segment::Segment;
use crate::shm_file::Location;

mod emptying;
mod entry;
mod image;
mod passes;
mod usage;

pub use emptying::{EMPTYING_SAMPLE, GIVE_BACK_MIN_CAPACITY};
pub use entry::Entry;
pub use image::JOURNAL_WORDS;
pub use usage::FILL_LIMIT_MIN_CAPACITY;
pub(crate) use words::partial_word;
mod words;

/// A key's hash, split into the parts the table uses.
#[derive(Debug, Clone, Copy)]
pub struct KeyHash {
    /// The full 64-bit hash (stripe selection uses its low bits).
    pub hash: u64,
    /// The bucket the probe starts at.
    pub home: usize,
    /// 16 bits kept in the control word to skip slots without touching them.
    pub tag: u16,
}

/// A probe sequence: `capacity` buckets from the home bucket, wrapping around.
#[derive(Debug, Clone)]
pub struct Probe {
    next: usize,
    left: usize,
    capacity: usize,
}

impl Iterator for Probe {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        let i = self.next;
        self.left -= 1;
        self.next = if i + 1 == self.capacity { 0 } else { i + 1 };
        Some(i)
    }
}

/// The table over one segment, and the map's heap its buckets name records in. Owns the
/// segment, so its pointers live exactly as long.
#[derive(Debug)]
pub struct RawTable {
    /// Bucket 0's control word; bucket `i`'s is word `2i`, its reference word `2i + 1`.
    buckets: *const AtomicU64,
    passes: *const AtomicU8,
    capacity: usize,
    max_key: usize,
    max_value: usize,
    seed: u64,
    /// Whether records carry checksums (file-backed maps).
    checksummed: bool,
    heap: Arc<Heap>,
    segment: Segment,
}

// SAFETY: the pointers address the shared mapping owned by `segment` (which is Send + Sync) and
// are only dereferenced as atomics.
unsafe impl Send for RawTable {}
// SAFETY: as above.
unsafe impl Sync for RawTable {}

/// Asks the CPU to start loading the cache line at `p`. A prefetch only hints the cache: it
/// never faults and reads nothing into the program, so any address will do.
#[inline(always)]
fn prefetch(p: *const AtomicU64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: see above; `_mm_prefetch` has no other requirement.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl RawTable {
    /// The table over a created or attached (hence validated) segment, naming records in
    /// `heap` (the map's).
    pub fn new(segment: Segment, heap: Arc<Heap>) -> Self {
        let l = *segment.layout();
        // SAFETY: both offsets lie within total_len (checked by the layout).
        let (buckets, passes) = unsafe {
            (
                segment.ptr_at(l.meta_offset) as *const AtomicU64,
                segment.ptr_at(l.passes_offset) as *const AtomicU8,
            )
        };
        Self {
            buckets,
            passes,
            capacity: l.params.capacity,
            max_key: l.params.max_key_size,
            max_value: l.params.max_value_size,
            seed: segment.hash_seed(),
            checksummed: matches!(segment.location(), Location::File(_)),
            heap,
            segment,
        }
    }

    /// The segment this table lives in.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// The map's heap, where the records are.
    pub fn heap(&self) -> &Arc<Heap> {
        &self.heap
    }

    /// Number of buckets.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Rejects keys longer than the maximum.
    #[inline]
    pub fn check_key(&self, key: &[u8]) -> Result<()> {
        self.check_key_len(key.len())
    }

    /// Rejects a key of `len` bytes if that is longer than the maximum.
    #[inline]
    pub fn check_key_len(&self, len: usize) -> Result<()> {
        if len > self.max_key {
            return Err(Error::KeyTooLarge {
                size: len,
                max: self.max_key,
            });
        }
        Ok(())
    }

    /// Rejects values longer than the maximum.
    #[inline]
    pub fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.max_value {
            return Err(Error::ValueTooLarge {
                size: value.len(),
                max: self.max_value,
            });
        }
        Ok(())
    }

    /// The error for a bucket whose words contradict the protocol.
    pub fn corrupt(&self, slot: usize, what: &str) -> Error {
        Error::Corrupt {
            name: self.segment.name().to_owned(),
            reason: format!("slot {slot}: {what}"),
        }
    }

    /// Hashes `key` with the map's seed (xxh3: a fixed algorithm, so every process and every
    /// build agrees on where a key lives, whichever kind of [`ProbeKey`] it was).
    #[inline]
    pub fn hash(&self, key: &[u8]) -> KeyHash {
        self.hash_key(key)
    }

    /// [`RawTable::hash`] of any [`ProbeKey`].
    #[inline]
    pub fn hash_key<K: ProbeKey + ?Sized>(&self, key: &K) -> KeyHash {
        let hash = key.hash(self.seed);
        // Lemire's multiply-shift maps the high bits onto any capacity without a division.
        let home = ((hash as u128 * self.capacity as u128) >> 64) as usize;
        KeyHash {
            hash,
            home,
            tag: hash as u16,
        }
    }

    /// [`RawTable::hash`] of a key already hashed (by a table of another generation of the
    /// same map: one seed, so only the home bucket differs).
    #[inline]
    pub fn rehome(&self, h: &KeyHash) -> KeyHash {
        KeyHash {
            home: ((h.hash as u128 * self.capacity as u128) >> 64) as usize,
            ..*h
        }
    }

    /// The linear probe sequence from `home`: every bucket once.
    #[inline]
    pub fn probe(&self, home: usize) -> Probe {
        self.probe_from(home, 0)
    }

    /// The probe sequence from `home` (< capacity), skipping its first `skip` buckets.
    #[inline]
    pub fn probe_from(&self, home: usize, skip: usize) -> Probe {
        debug_assert!(home < self.capacity);
        let skip = skip.min(self.capacity);
        // Both terms are below or at capacity, so one subtraction wraps: a `%` here was a
        // `div` on every lookup (perf, a Python get: 2 ns of it).
        let next = home + skip;
        Probe {
            next: if next >= self.capacity {
                next - self.capacity
            } else {
                next
            },
            left: self.capacity - skip,
            capacity: self.capacity,
        }
    }

    /// Bucket `i`'s control word.
    #[inline]
    pub fn meta(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.capacity);
        // SAFETY: i < capacity and the bucket region holds `capacity` pairs of aligned words.
        unsafe { &*self.buckets.add(2 * i) }
    }

    /// Bucket `i`'s reference word: the [`Ref`] of its record while the control word is FULL,
    /// meaningless otherwise.
    #[inline]
    pub(crate) fn reference(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.capacity);
        // SAFETY: as in `meta`.
        unsafe { &*self.buckets.add(2 * i + 1) }
    }

    /// Asks the CPU to start loading the first line of the record `r` names, if the heap
    /// backs it: for a copy that reads many records in a row, so that their misses overlap.
    #[inline(always)]
    pub fn prefetch_record(&self, r: Ref) {
        if let Some(w) = self.heap.words(r.offset(), 1) {
            prefetch(w.as_ptr());
        }
    }

    /// Asks the CPU to start loading the bucket at the home of `h` (hashed by any generation
    /// of this map): a writer calls it before it takes its key's lock, so that this miss
    /// overlaps the lock's.
    #[inline(always)]
    pub fn prefetch_for_write(&self, h: &KeyHash) {
        let i = self.rehome(h).home;
        if i < self.capacity {
            // SAFETY: i < capacity, so the address is inside the bucket region.
            prefetch(unsafe { self.buckets.add(2 * i) });
        }
    }
}
