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
//! Checksums (file-backed maps): a file can outlive an unclean shutdown of the machine with
//! some of its pages written back and others stale, so a control word may say FULL over a slot
//! whose words come from several writes. Every write to a file-backed map therefore also
//! stores [`RawTable::entry_sum`], a hash of the lengths, key, value and the version the write
//! publishes, in the slot's checksum word (and in the journal's image). The first process to
//! open such a file validates every entry against it (`SharedMap`'s open validation); reads
//! never check it: between processes that are running, the slot protocol alone keeps copies
//! whole. Shared memory does not outlive the machine, so its maps skip the hash (the word
//! stays 0).

use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::{Error, Result};
use crate::meta::Meta;
use crate::segment::Segment;
use crate::shm_file::Location;
use crate::value_words::ValueWords;

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

/// Stores `bytes` into the leading words of `dst`, zero-padding the last one.
#[inline]
fn store_words(dst: &[AtomicU64], bytes: &[u8]) {
    // Whole words, then the last chunk: `chunks(8)` tested every chunk for a short one (perf,
    // a set of a 64-byte str: the loop's compares and moves, 6% of the set in the journal's
    // copy and 5% in the slot's).
    let whole = bytes.chunks_exact(8);
    let rest = whole.remainder();
    let mut n = 0;
    for (word, chunk) in dst.iter().zip(whole) {
        let chunk: [u8; 8] = chunk.try_into().expect("chunks_exact(8)");
        // Relaxed: the writer's protocol publishes these with a Release store afterwards.
        word.store(u64::from_le_bytes(chunk), Ordering::Relaxed);
        n += 1;
    }
    if let (false, Some(word)) = (rest.is_empty(), dst.get(n)) {
        // Relaxed: as above.
        word.store(partial_word(rest), Ordering::Relaxed);
    }
}

/// An odd constant (2^64 / golden ratio) that spreads the version over the checksum's seed.
const SUM_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// [`RawTable::entry_sum`] of a key with hash `key_hash` and length `klen`.
#[inline]
fn sum_of(key_hash: u64, klen: usize, value: &[u8], version: u64) -> u64 {
    let lens = lens_word(klen, value.len());
    let seed = key_hash ^ lens.rotate_left(29) ^ version.wrapping_mul(SUM_MIX);
    xxh3_64_with_seed(value, seed)
}

/// The length word of a slot: key length in the low half, value length in the high half.
#[inline]
fn lens_word(klen: usize, vlen: usize) -> u64 {
    klen as u64 | (vlen as u64) << 32
}

/// The word a key or value chunk of at most 8 bytes is stored as (zero-padded).
#[inline]
fn chunk_word(chunk: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(chunk) {
        Ok(full) => u64::from_le_bytes(full),
        Err(_) => partial_word(chunk),
    }
}

/// A chunk of fewer than 8 bytes as a zero-padded little-endian word, from two overlapping
/// loads (as xxh3 reads short inputs). Copying it into a zeroed `[u8; 8]` instead calls
/// `memcpy` and then reads the 8 bytes back as one word, which the CPU cannot forward from
/// the narrower stores: perf put two thirds of a journal write on those loads, since nearly
/// every key and value ends in such a chunk.
#[inline]
fn partial_word(c: &[u8]) -> u64 {
    let n = c.len();
    let le4 = |at: usize| u64::from(u32::from_le_bytes([c[at], c[at + 1], c[at + 2], c[at + 3]]));
    let le2 = |at: usize| u64::from(u16::from_le_bytes([c[at], c[at + 1]]));
    match n {
        // The two halves overlap on equal bytes, so OR-ing them is exact.
        4..=7 => le4(0) | le4(n - 4) << ((n - 4) * 8),
        2..=3 => le2(0) | le2(n - 2) << ((n - 2) * 8),
        1 => u64::from(c[0]),
        _ => 0,
    }
}

impl RawTable {
    /// The table over a created or attached (hence validated) segment.
    pub fn new(segment: Segment) -> Self {
        let l = *segment.layout();
        // SAFETY: meta_offset and slots_offset lie within total_len (checked by the layout).
        let (meta, slots) = unsafe {
            (
                segment.ptr_at(l.meta_offset) as *const AtomicU64,
                segment.ptr_at(l.slots_offset) as *const AtomicU64,
            )
        };
        Self {
            meta,
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

    /// Whether writes store checksums, and opening validates them (file-backed maps).
    pub fn checksummed(&self) -> bool {
        self.checksummed
    }

    /// The checksum of an entry as published with `version`: xxh3 of the value, seeded with the
    /// key's hash, the lengths and the version. A slot passes only if every word of the entry
    /// and the control word's version come from one write (a 64-bit hash: a torn slot passes
    /// with odds of 2^-64).
    pub fn entry_sum(&self, key: &[u8], value: &[u8], version: u64) -> u64 {
        sum_of(self.hash(key).hash, key.len(), value, version)
    }

    /// The checksum word a write of `value` under the key hashed to `h` (of `klen` bytes)
    /// stores, to be published with `version`: [`RawTable::entry_sum`] in file-backed maps
    /// (computed once per write, for the slot and the journal), 0 in shared memory (which no
    /// reboot tears).
    #[inline]
    pub fn sum_word(&self, h: &KeyHash, klen: usize, value: &[u8], version: u64) -> u64 {
        if !self.checksummed {
            return 0;
        }
        sum_of(h.hash, klen, value, version)
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

    /// Whether the table is due to grow: 3/4 of its slots taken from EMPTY (FULL plus
    /// TOMBSTONE) and room to grow (see `docs/growth.md`). The resizer decides again, exactly,
    /// with every writer excluded.
    #[inline]
    pub fn growth_due(&self) -> bool {
        let max = self.segment.layout().params.max_capacity;
        // Relaxed: a heuristic, as in `reclaim_due`.
        let used = self.segment.header().used().load(Ordering::Relaxed);
        self.capacity < max && used >= (self.capacity - self.capacity / 4) as u64
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

    /// Whether slot `i`, published as the stable FULL word `m`, holds a whole entry: lengths
    /// within the maximums, a key whose tag is `m`'s and a checksum that matches `m`'s
    /// version. Only for a caller that excludes every writer (open validation); in a map
    /// without checksums only lengths and tag are checked.
    pub fn entry_is_intact(&self, i: usize, m: Meta) -> bool {
        let (klen, vlen) = self.lens(i);
        if !self.lens_in_bounds(klen, vlen) {
            return false;
        }
        let (mut key, mut value) = (Vec::new(), Vec::new());
        self.read_key(i, klen, &mut key);
        self.read_value(i, vlen, &mut value);
        // Relaxed: the caller excludes writers; see `lens`.
        let sum = self.word(i, self.sum_index()).load(Ordering::Relaxed);
        self.hash(&key).tag == m.tag()
            && (!self.checksummed || sum == self.entry_sum(&key, &value, m.version()))
    }

    /// Index of the checksum word in a slot and in a slot image: the last one.
    #[inline]
    fn sum_index(&self) -> usize {
        self.stride_words - 1
    }

    /// Words in one slot, and so in one image of a slot (see [`RawTable::write_image`]).
    pub fn slot_words(&self) -> usize {
        self.stride_words
    }

    /// Writes the slot image of `(key, value)` with checksum word `sum` into `dst`, a private
    /// journal of [`RawTable::slot_words`] words laid out like a slot.
    #[inline]
    pub fn write_image(&self, dst: &[AtomicU64], key: &[u8], value: &[u8], sum: u64) {
        assert_eq!(dst.len(), self.stride_words);
        // Relaxed: the journal is published by its owner's Release store of its state word.
        dst[0].store(lens_word(key.len(), value.len()), Ordering::Relaxed);
        dst[self.sum_index()].store(sum, Ordering::Relaxed);
        store_words(&dst[KEY_WORD..], key);
        store_words(&dst[KEY_WORD + self.key_words..], value);
    }

    fn image_lens(&self, src: &[AtomicU64]) -> Option<(usize, usize)> {
        // Relaxed: read by a recoverer that synchronised with the image's writer through the
        // kernel's lock handoff (the writer is dead).
        let w = src.first()?.load(Ordering::Relaxed);
        let (klen, vlen) = ((w & 0xFFFF_FFFF) as usize, (w >> 32) as usize);
        (src.len() == self.stride_words && self.lens_in_bounds(klen, vlen)).then_some((klen, vlen))
    }

    /// Whether image `src` claims lengths within the maximums (so it can be restored) and, in
    /// a checksummed map, holds the entry its checksum says for `version` (a journal in a
    /// file can be torn by a crash of the machine like any slot).
    pub fn image_is_intact(&self, src: &[AtomicU64], version: u64) -> bool {
        let Some((klen, vlen)) = self.image_lens(src) else {
            return false;
        };
        if !self.checksummed {
            return true;
        }
        let bytes = |first: usize, len: usize| -> Vec<u8> {
            let words = &src[first..first + len.div_ceil(8)];
            // Relaxed: see `image_lens`.
            let mut out: Vec<u8> = words
                .iter()
                .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
                .collect();
            out.truncate(len);
            out
        };
        let (key, value) = (
            bytes(KEY_WORD, klen),
            bytes(KEY_WORD + self.key_words, vlen),
        );
        src[self.sum_index()].load(Ordering::Relaxed) == self.entry_sum(&key, &value, version)
    }

    /// Copies image `src` into slot `i`, which the caller holds. Check the image with
    /// [`RawTable::image_in_bounds`] first: one that claims lengths beyond the maximums is not
    /// copied at all (never out of bounds).
    pub fn restore_image(&self, i: usize, src: &[AtomicU64]) {
        let Some((klen, vlen)) = self.image_lens(src) else {
            return;
        };
        let slot = self.slot(i);
        let key = KEY_WORD..KEY_WORD + klen.div_ceil(8);
        let value = KEY_WORD + self.key_words..KEY_WORD + self.key_words + vlen.div_ceil(8);
        for w in key
            .chain(value)
            .chain(self.sum_index()..self.sum_index() + 1)
            .chain(0..1)
        {
            // Relaxed: published by the caller's Release store of the control word; the
            // length word goes last only for tidiness, readers validate by version.
            slot[w].store(src[w].load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Whether slot `i` holds the key of image `src`.
    pub fn image_key_matches(&self, i: usize, src: &[AtomicU64]) -> bool {
        let Some((klen, _)) = self.image_lens(src) else {
            return false;
        };
        let slot = self.slot(i);
        // Relaxed: as in `lens`; the caller validates the slot word around the comparison.
        self.lens(i).0 == klen
            && (KEY_WORD..KEY_WORD + klen.div_ceil(8))
                .all(|w| slot[w].load(Ordering::Relaxed) == src[w].load(Ordering::Relaxed))
    }

    /// Entries moved within this table so far: a lookup that misses loads it before and after
    /// its probe, and looks again if it changed (a moved key may have been passed over).
    #[inline]
    pub fn moves(&self) -> u64 {
        // Acquire: loaded after a probe, it is ordered after every control word the probe
        // read; a retired old slot seen there means the bump before it is seen here.
        self.segment.header().moves().load(Ordering::Acquire)
    }

    /// Whether removes should shift entries back (the table was at least half live when a
    /// reclaim or a resize last counted it).
    #[inline]
    pub fn is_dense(&self) -> bool {
        // Relaxed: a hint that only chooses whether to try moves.
        self.segment.header().dense().load(Ordering::Relaxed) != 0
    }

    /// Records whether the table is at least half live (`live` entries now), and returns it.
    pub fn note_live(&self, live: usize) -> bool {
        let dense = live.saturating_mul(2) >= self.capacity;
        // Relaxed: a hint, as above.
        self.segment
            .header()
            .dense()
            .store(u64::from(dense), Ordering::Relaxed);
        dense
    }

    /// Bumps [`RawTable::moves`]: by a compaction (or the repair of one), after the entry is
    /// published in its new slot and before its old slot is retired.
    #[inline]
    pub fn note_move(&self) {
        // Release: ordered before the store that retires the old slot (Release), which a
        // reader that missed saw before it loads this again.
        self.segment.header().moves().fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a claim that took an EMPTY slot (the only way the table runs out of EMPTY
    /// slots, which end lookups of absent keys).
    #[inline]
    pub fn note_empty_claim(&self) {
        // Relaxed: a statistic that only decides when to reclaim.
        self.segment.header().used().fetch_add(1, Ordering::Relaxed);
    }

    /// Whether tombstones should be reclaimed, counting `used` (slots taken from EMPTY) and
    /// `mark` (`used` when reclaims were last looked at: a reclaim, or
    /// [`RawTable::defer_reclaim`]):
    ///
    /// - half the slots used, and 1/4 more than at the mark: early, while misses (which probe
    ///   to the first EMPTY slot) are still short; a scan costs at most 4 slot visits per slot
    ///   claimed;
    /// - 7/8 used, and 1/64 more than at the mark: the table is running out of EMPTY slots,
    ///   whatever the last reclaim freed (at most 64 visits per claim);
    /// - none left, and the mark was before that.
    ///
    /// Writers skip (defer) a due reclaim when few of the used slots are tombstones (a table
    /// filling with inserts), since it would free little. The first rule is new: with only the
    /// other two, half of a `read-heavy` run's gets (misses) made a get cost 1.5x a `read` one.
    #[inline]
    pub fn reclaim_due(&self) -> bool {
        let h = self.segment.header();
        // Relaxed: a heuristic; the reclaimer decides again under its exclusion.
        let used = h.used().load(Ordering::Relaxed);
        let mark = h.reclaim_mark().load(Ordering::Relaxed);
        let cap = self.capacity as u64;
        let after = |share: u64| used >= mark.saturating_add((cap / share).max(1));
        (used >= cap / 2 && after(4))
            || (used >= cap - cap / 8 && after(64))
            || (used >= cap && mark < cap)
    }

    /// Slots ever taken from EMPTY since the last reclaim counted them (FULL plus TOMBSTONE,
    /// as far as writers have noted them).
    #[inline]
    pub fn used_slots(&self) -> usize {
        // Relaxed: a statistic.
        let used = self.segment.header().used().load(Ordering::Relaxed);
        usize::try_from(used)
            .unwrap_or(usize::MAX)
            .min(self.capacity)
    }

    /// After a reclaim that writers could interleave with: `freed` slots went back to EMPTY,
    /// and the statistics restart from there.
    pub fn note_reclaimed(&self, freed: usize) {
        let h = self.segment.header();
        // Relaxed: statistics that only decide the next reclaim.
        let _ = h
            .used()
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(freed as u64))
            });
        h.reclaim_mark()
            .store(h.used().load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Puts off a due reclaim until 1/4 more slots are used: for a writer that found too few
    /// tombstones for a scan to be worth it.
    pub fn defer_reclaim(&self) {
        let h = self.segment.header();
        // Relaxed: statistics; racing writers store nearly the same value.
        h.reclaim_mark()
            .store(h.used().load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Restarts the reclaim statistics from `empty` EMPTY slots counted by a caller that
    /// excludes every writer (a reclaim, or the validation of a file's first open).
    pub fn restart_usage(&self, empty: usize) {
        let used = self.capacity.saturating_sub(empty) as u64;
        let h = self.segment.header();
        // Relaxed: statistics that only decide the next reclaim.
        h.used().store(used, Ordering::Relaxed);
        h.reclaim_mark().store(used, Ordering::Relaxed);
    }

    /// The live-entry counter in the header, clamped to the capacity (a corrupt counter
    /// must not make callers allocate absurdly).
    pub fn live_entries(&self) -> usize {
        // Relaxed: a statistic; exact whenever no write is in flight.
        let n = self.segment.header().live_count().load(Ordering::Relaxed);
        usize::try_from(n).unwrap_or(usize::MAX).min(self.capacity)
    }

    /// Adds `delta` to the header's live-entry counter (backends that count there).
    pub fn add_live(&self, delta: i64) {
        // Relaxed: the counter orders nothing; the entry itself is published by its slot word.
        self.segment
            .header()
            .live_count()
            .fetch_add(delta as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_words_are_the_zero_padded_bytes() {
        let bytes: Vec<u8> = (1..=8).collect();
        for n in 0..8 {
            let mut padded = [0u8; 8];
            padded[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(
                chunk_word(&bytes[..n]),
                u64::from_le_bytes(padded),
                "{n} bytes"
            );
        }
        assert_eq!(
            chunk_word(&bytes),
            u64::from_le_bytes(bytes.try_into().unwrap())
        );
    }

    #[test]
    fn stored_words_are_the_bytes_zero_padded_and_never_pass_dst() {
        let bytes: Vec<u8> = (1..=40).collect();
        for n in 0..=40usize {
            for words in [0, 1, 2, n / 8, n.div_ceil(8), 6] {
                let dst: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(u64::MAX)).collect();
                store_words(&dst, &bytes[..n]);
                let mut padded = bytes[..n].to_vec();
                padded.resize(n.div_ceil(8) * 8, 0);
                for (q, word) in dst.iter().enumerate() {
                    let want = padded
                        .get(q * 8..q * 8 + 8)
                        .map_or(u64::MAX, |c| u64::from_le_bytes(c.try_into().unwrap()));
                    assert_eq!(word.load(Ordering::Relaxed), want, "{n} bytes, word {q}");
                }
            }
        }
    }
}
