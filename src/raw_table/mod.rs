//! The open-addressing table every backend shares: slot addressing, hashing, probing, and
//! word-wise copies in and out of slots. It knows no synchronisation protocol; each backend
//! decides when a copy is allowed and how it is validated.
//!
//! Invariants (upheld by construction from a validated [`Segment`]):
//! - `meta(i)` and every slot word of `i < capacity` lie inside the mapping and are 8-aligned;
//! - every length read from a slot is checked against the maximum before it sizes a copy, so
//!   a lying slot can make a copy wrong (the backend's validation discards it), never out of
//!   bounds.
//!
//! The rest of the table's methods live beside it: `image` (checksums and the journal's slot
//! images), `passes` (how many probes pass each bucket), `usage` (the header's counters that
//! decide reclaims and growth), `words` (bytes to and from 8-byte words).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::shm_file::Location;
use crate::value_words::ValueWords;

mod image;
mod passes;
mod usage;

pub use usage::FILL_LIMIT_MIN_CAPACITY;
mod words;

use words::{chunk_word, lens_word, store_words};

/// Index of a slot's first key word, after the length word (see `layout.rs`; the checksum word
/// is the slot's last, `RawTable::sum_index`).
const KEY_WORD: usize = 1;

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

/// The table over one segment. Owns the segment, so its pointers live exactly as long.
#[derive(Debug)]
pub struct RawTable {
    meta: *const AtomicU64,
    passes: *const AtomicU8,
    slots: *const AtomicU64,
    capacity: usize,
    stride_words: usize,
    key_words: usize,
    max_key: usize,
    max_value: usize,
    seed: u64,
    /// Whether writes store checksums (file-backed maps).
    checksummed: bool,
    /// `capacity` where a write's prefetch pays, 0 where it does not (see
    /// [`RawTable::prefetch_for_write`]): one compare rejects both a bad index and a small table.
    write_prefetch_below: usize,
    segment: Segment,
}

/// Slot regions smaller than this stay in a core's L2 cache under a steady stream of writes
/// (1 MiB per core here, 1-2 MiB on most current x86 and Arm cores), where a write's prefetch
/// only costs instructions.
const WRITE_PREFETCH_FROM_BYTES: usize = 1 << 20;

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
    /// The table over a created or attached (hence validated) segment.
    pub fn new(segment: Segment) -> Self {
        let l = *segment.layout();
        // SAFETY: the three offsets lie within total_len (checked by the layout).
        let (meta, passes, slots) = unsafe {
            (
                segment.ptr_at(l.meta_offset) as *const AtomicU64,
                segment.ptr_at(l.passes_offset) as *const AtomicU8,
                segment.ptr_at(l.slots_offset) as *const AtomicU64,
            )
        };
        Self {
            meta,
            passes,
            slots,
            capacity: l.params.capacity,
            stride_words: l.slot_stride / 8,
            key_words: l.key_words,
            max_key: l.params.max_key_size,
            max_value: l.params.max_value_size,
            seed: segment.hash_seed(),
            checksummed: matches!(segment.location(), Location::File(_)),
            write_prefetch_below: if l.params.capacity.saturating_mul(l.slot_stride)
                >= WRITE_PREFETCH_FROM_BYTES
            {
                l.params.capacity
            } else {
                0
            },
            segment,
        }
    }

    /// The segment this table lives in.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Number of buckets.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Rejects keys longer than the maximum.
    #[inline]
    pub fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.len() > self.max_key {
            return Err(Error::KeyTooLarge {
                size: key.len(),
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

    /// The error for a slot whose words contradict the protocol.
    pub fn corrupt(&self, slot: usize, what: &str) -> Error {
        Error::Corrupt {
            name: self.segment.name().to_owned(),
            reason: format!("slot {slot}: {what}"),
        }
    }

    /// Hashes `key` with the map's seed (xxh3: a fixed algorithm, so every process and every
    /// build agrees on where a key lives).
    #[inline]
    pub fn hash(&self, key: &[u8]) -> KeyHash {
        let hash = xxh3_64_with_seed(key, self.seed);
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

    /// Slot `i`'s control word.
    #[inline]
    pub fn meta(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.capacity);
        // SAFETY: i < capacity and the meta region holds `capacity` aligned words.
        unsafe { &*self.meta.add(i) }
    }

    /// Asks the CPU to start loading slot `i`'s first line (its lengths and key), so that a
    /// lookup's miss on it overlaps its miss on the control word instead of following it.
    #[inline(always)]
    pub fn prefetch_slot(&self, i: usize) {
        if i < self.capacity {
            // SAFETY: i < capacity, so the address is inside the slot region.
            prefetch(unsafe { self.slots.add(i * self.stride_words) });
        }
    }

    /// Asks the CPU to start loading the control word and the lines of the slot that a write
    /// of a `value_len`-byte value touches (lengths, key, value) at the home bucket of `h`
    /// (hashed by any generation of this map): a writer calls it before it takes its key's
    /// lock, so that these misses overlap the lock's (perf, a set at 10,000 str keys: the
    /// first loads of the control word and of the slot were 22% of the samples, the lock's
    /// CAS 8%).
    #[inline(always)]
    pub fn prefetch_for_write(&self, h: &KeyHash, value_len: usize) {
        // Not in a table that fits the L2 cache (`WRITE_PREFETCH_FROM_BYTES`): with its lines
        // there already, the prefetch cost a set at 1,000 int keys 5% (python/bench/ab_tight.py,
        // with and without it), and gained 4-11% at 10,000 keys (3.8 MB of slots).
        let i = self.rehome(h).home;
        if i >= self.write_prefetch_below {
            return;
        }
        let words = (KEY_WORD + self.key_words + value_len.div_ceil(8)).min(self.stride_words);
        // SAFETY: i < write_prefetch_below <= capacity and words <= stride_words, so every
        // address is inside the meta or the slot region.
        unsafe {
            prefetch(self.meta.add(i));
            let slot = self.slots.add(i * self.stride_words);
            for line in (0..words).step_by(8) {
                prefetch(slot.add(line)); // 8 words: one 64-byte line
            }
        }
    }

    /// Slot `i`'s words: the length word, the key words, the value words, the checksum word.
    #[inline]
    fn slot(&self, i: usize) -> &[AtomicU64] {
        assert!(i < self.capacity);
        // SAFETY: i < capacity and the slot region holds `capacity` slots of `stride_words`
        // aligned words; atomics may alias memory other processes write.
        unsafe {
            std::slice::from_raw_parts(self.slots.add(i * self.stride_words), self.stride_words)
        }
    }

    #[inline]
    fn word(&self, i: usize, w: usize) -> &AtomicU64 {
        &self.slot(i)[w]
    }

    /// The (key, value) lengths slot `i` claims, unchecked: compare or check before use.
    #[inline]
    pub fn lens(&self, i: usize) -> (usize, usize) {
        // Relaxed: the backend's protocol orders this read (seqlock fence or lock).
        let w = self.word(i, 0).load(Ordering::Relaxed);
        ((w & 0xFFFF_FFFF) as usize, (w >> 32) as usize)
    }

    /// Whether slot `i` claims a key length and value length within the maximums.
    pub fn lens_in_bounds(&self, klen: usize, vlen: usize) -> bool {
        klen <= self.max_key && vlen <= self.max_value
    }

    /// Whether slot `i`'s key words equal `key` (whose length the caller compared already).
    #[inline(always)] // in every lookup's probe loop (a call here cost `k in m` 7%)
    pub fn key_matches(&self, i: usize, key: &[u8]) -> bool {
        let words = &self.slot(i)[KEY_WORD..KEY_WORD + self.key_words];
        key.chunks(8)
            .zip(words)
            // Relaxed: see `lens`.
            .all(|(chunk, word)| word.load(Ordering::Relaxed) == chunk_word(chunk))
    }

    fn copy_in(&self, i: usize, first_word: usize, bytes: &[u8]) {
        store_words(&self.slot(i)[first_word..], bytes);
    }

    /// Copies slot `i`'s key of `klen` bytes into `out`. `klen` must be within the maximum.
    pub fn read_key(&self, i: usize, klen: usize, out: &mut Vec<u8>) {
        debug_assert!(klen <= self.max_key);
        ValueWords::new(&self.slot(i)[KEY_WORD..], klen.min(self.max_key)).copy_to_vec(out);
    }

    /// Copies slot `i`'s value of `vlen` bytes into `out`. `vlen` must be within the maximum.
    pub fn read_value(&self, i: usize, vlen: usize, out: &mut Vec<u8>) {
        self.value_words(i, vlen).copy_to_vec(out);
    }

    /// Copies slot `i`'s key and value into `key` and `value`; `false`, copying nothing, when
    /// the lengths it claims exceed the maximums. Unvalidated, as [`RawTable::lens`]: the
    /// caller excludes writers or validates the copy.
    pub fn read_entry(&self, i: usize, key: &mut Vec<u8>, value: &mut Vec<u8>) -> bool {
        let (klen, vlen) = self.lens(i);
        if !self.lens_in_bounds(klen, vlen) {
            return false;
        }
        self.read_key(i, klen, key);
        self.read_value(i, vlen, value);
        true
    }

    /// Slot `i`'s value of `vlen` bytes, as its words. `vlen` must be within the maximum.
    #[inline]
    pub fn value_words(&self, i: usize, vlen: usize) -> ValueWords<'_> {
        debug_assert!(vlen <= self.max_value);
        let first = KEY_WORD + self.key_words;
        ValueWords::new(&self.slot(i)[first..], vlen.min(self.max_value))
    }

    /// Writes key, value, lengths and checksum word `sum` ([`RawTable::sum_word`]) into slot
    /// `i`, which the caller holds.
    #[inline]
    pub fn write_entry(&self, i: usize, key: &[u8], value: &[u8], sum: u64) {
        self.copy_in(i, KEY_WORD, key);
        self.write_value(i, key.len(), value, sum);
    }

    /// Writes value, lengths and checksum word `sum` into slot `i`, which holds a key of
    /// `klen` bytes and which the caller holds.
    #[inline]
    pub fn write_value(&self, i: usize, klen: usize, value: &[u8], sum: u64) {
        self.copy_in(i, KEY_WORD + self.key_words, value);
        // Only where it is checked: in shared memory the word stays 0, and it is the slot's
        // last, often on a line the entry does not otherwise touch.
        if self.checksummed {
            // Relaxed: published by the holder's Release store of the control word.
            self.word(i, self.sum_index()).store(sum, Ordering::Relaxed);
        }
        self.word(i, 0)
            .store(lens_word(klen, value.len()), Ordering::Relaxed);
    }
}
