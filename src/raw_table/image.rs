//! Checksums and slot images.
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
//!
//! A slot image is a slot's words as a writer's journal holds them, laid out like the slot, so
//! that a recoverer can check it and copy it in.

use std::sync::atomic::{AtomicU64, Ordering};

use super::words::{lens_word, store_words, sum_of};
use super::{KeyHash, RawTable, KEY_WORD};
use crate::meta::Meta;

impl RawTable {
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

    /// Whether slot `i`, published as the stable FULL word `m`, holds a whole entry: lengths
    /// within the maximums, a key whose tag is `m`'s and a checksum that matches `m`'s
    /// version. Only for a caller that excludes every writer (open validation); in a map
    /// without checksums only lengths and tag are checked.
    pub fn entry_is_intact(&self, i: usize, m: Meta) -> bool {
        let (mut key, mut value) = (Vec::new(), Vec::new());
        if !self.read_entry(i, &mut key, &mut value) {
            return false;
        }
        // Relaxed: the caller excludes writers; see `lens`.
        let sum = self.word(i, self.sum_index()).load(Ordering::Relaxed);
        self.hash(&key).tag == m.tag()
            && (!self.checksummed || sum == self.entry_sum(&key, &value, m.version()))
    }

    /// Index of the checksum word in a slot and in a slot image: the last one.
    #[inline]
    pub(super) fn sum_index(&self) -> usize {
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

    /// Copies image `src` into slot `i`, which the caller holds. An image that claims lengths
    /// beyond the maximums is not copied at all (never out of bounds): check it with
    /// [`RawTable::image_is_intact`] first.
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
}
