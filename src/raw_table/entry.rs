//! A bucket's entry: the record its reference names, read and compared in place; and the
//! writes that make, name and free records.
//!
//! Reads are unvalidated: a lock-free reader loads the bucket's control word, then the
//! reference and the record with Relaxed loads, then checks the control word again (the
//! seqlock); a lock holder sees them stable. Every offset and length is checked against what
//! the heap file backs and against the map's limits before it sizes anything, so a torn or
//! hostile reference makes [`RawTable::entry`] return `None`, never a read out of bounds.
//!
//! A record is the key's bytes and the value's bytes packed together (`crate::heap::record`),
//! then, in a file-backed map, one checksum word ([`RawTable::entry_sum`]).

use std::sync::atomic::{AtomicU64, Ordering};

use super::words::sum_of;
use super::{KeyHash, RawTable};
use crate::error::Result;
use crate::heap::record::{record_words, write_record};
use crate::heap::{record_len, Ref};
use crate::probe_key::ProbeKey;
use crate::value_words::ValueWords;

/// The record a bucket named when its reference word was loaded: its lengths, within the
/// map's limits and backed by the heap, and the words of its bytes (key, then value).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The reference it was found by.
    pub r: Ref,
    /// The key's length in bytes.
    pub klen: usize,
    /// The value's length in bytes.
    pub vlen: usize,
    words: &'a [AtomicU64],
}

impl<'a> Entry<'a> {
    /// Whether the key is `key`.
    #[inline(always)]
    pub fn key_matches(&self, key: &[u8]) -> bool {
        self.key_is(key)
    }

    /// Whether the key is `key`, of any kind.
    #[inline(always)] // in every lookup's probe loop
    pub fn key_is<K: ProbeKey + ?Sized>(&self, key: &K) -> bool {
        // Relaxed: see the module comment.
        key.len() == self.klen && key.matches(|q| self.words[q].load(Ordering::Relaxed))
    }

    /// The value, as the words it is stored in.
    #[inline(always)]
    pub fn value(&self) -> ValueWords<'a> {
        ValueWords::at(self.words, self.klen, self.vlen)
    }

    /// The key, as the words it is stored in.
    #[inline]
    pub fn key(&self) -> ValueWords<'a> {
        ValueWords::at(self.words, 0, self.klen)
    }

    /// Copies the key into `out` (replacing its contents).
    pub fn read_key(&self, out: &mut Vec<u8>) {
        self.key().copy_to_vec(out);
    }

    /// Copies the value into `out` (replacing its contents).
    pub fn read_value(&self, out: &mut Vec<u8>) {
        self.value().copy_to_vec(out);
    }
}

impl RawTable {
    /// Bucket `i`'s reference word as loaded now (unvalidated).
    #[inline(always)]
    pub fn ref_of(&self, i: usize) -> Ref {
        // Relaxed: the backend's protocol orders this read (seqlock fence or lock).
        Ref(self.reference(i).load(Ordering::Relaxed))
    }

    /// The record bucket `i` names, if its reference and lengths are in bounds: see the
    /// module comment. Unvalidated: the caller excludes writers or validates the read.
    #[inline(always)]
    pub fn entry(&self, i: usize) -> Option<Entry<'_>> {
        self.entry_of(self.ref_of(i))
    }

    /// The record `r` names, if it is in bounds (see [`RawTable::entry`]).
    #[inline(always)]
    pub fn entry_of(&self, r: Ref) -> Option<Entry<'_>> {
        let (klen, vlen, words) = record_words(&self.heap, r)?;
        self.lens_in_bounds(klen, vlen).then_some(Entry {
            r,
            klen,
            vlen,
            words,
        })
    }

    /// Whether a key and a value of these lengths are within the maximums.
    #[inline(always)]
    pub fn lens_in_bounds(&self, klen: usize, vlen: usize) -> bool {
        klen <= self.max_key && vlen <= self.max_value
    }

    /// Copies bucket `i`'s key and value into `key` and `value`; `false`, copying nothing, when
    /// its reference names no record in bounds. Unvalidated, as [`RawTable::entry`].
    pub fn read_entry(&self, i: usize, key: &mut Vec<u8>, value: &mut Vec<u8>) -> bool {
        let Some(e) = self.entry(i) else {
            return false;
        };
        e.read_key(key);
        e.read_value(value);
        true
    }

    /// Copies bucket `i`'s key into `key`; `false` as [`RawTable::read_entry`].
    pub fn read_key(&self, i: usize, key: &mut Vec<u8>) -> bool {
        self.entry(i).map(|e| e.read_key(key)).is_some()
    }

    /// Bytes the heap allocates for the record of a `klen`-byte key and a `vlen`-byte value.
    #[inline]
    pub fn record_bytes(&self, klen: usize, vlen: usize) -> usize {
        record_len(klen, vlen) + if self.checksummed { 8 } else { 0 }
    }

    /// Allocates and writes the record of `key` (hashed to `h`) and `value`, not yet named by
    /// any bucket; the caller names it ([`RawTable::set_ref`]) under a bucket it holds and
    /// publishes, or frees it ([`RawTable::free_record`]).
    ///
    /// `named(r)` runs as soon as the block has its lengths and key, before the rest of its
    /// pages are reserved and its value copied (`write_record`): the caller journals `r`
    /// there, so that a writer killed while the kernel zeroes a large value's pages or while
    /// it copies the value leaves a journal naming the block, which its repair frees. An error
    /// after `named` (the file system full for the rest) runs `unnamed` (the caller closes
    /// the journal), then frees the block: closed first, so no repair frees it again. An error
    /// before `named` frees the block alone.
    #[inline]
    pub fn new_record(
        &self,
        h: &KeyHash,
        key: &[u8],
        value: &[u8],
        named: impl FnOnce(Ref),
        unnamed: impl FnOnce(),
    ) -> Result<Ref> {
        let bytes = self.record_bytes(key.len(), value.len());
        // A header word, the key, and the word it shares with the value.
        let at = self.heap.alloc_staged(bytes, 16 + key.len())?;
        let outside = || -> Result<Ref> {
            let _ = self.heap.free(at, bytes);
            Err(self.heap.corrupt(format!(
                "a block the heap just allocated is outside it (offset {at:#x})"
            )))
        };
        // The checksum's word, found before anything is written (see above).
        let sum_word = match self.checksummed {
            true => match self
                .heap
                .word(at + record_len(key.len(), value.len()) as u64)
            {
                Some(w) => Some(w),
                None => return outside(),
            },
            false => None,
        };
        let mut reserved = Ok(());
        let written = write_record(&self.heap, at, key, value, |r| {
            named(r);
            // The error stored only when there is one: a `Result` stored for every record came
            // back through memory, and copying it out stalled on the store that wrote it (17%
            // of a harness `write`'s samples in this function, perf).
            match self.heap.reserve_rest(at, bytes) {
                Ok(()) => true,
                Err(e) => {
                    reserved = Err(e);
                    false
                }
            }
        });
        let Some(r) = written else {
            return outside();
        };
        if let Err(e) = reserved {
            unnamed();
            let _ = self.heap.free(at, bytes);
            return Err(e);
        }
        if let Some(w) = sum_word {
            // Relaxed: published with the record by the reference's publication.
            w.store(sum_of(h.hash, key.len(), value, at), Ordering::Relaxed);
        }
        Ok(r)
    }

    /// Names record `r` in bucket `i`, which the caller holds (busy, or every writer
    /// excluded); published by the caller's Release store of the control word.
    #[inline]
    pub fn set_ref(&self, i: usize, r: Ref) {
        // Relaxed: published by the holder's Release store of the control word.
        self.reference(i).store(r.0, Ordering::Relaxed);
    }

    /// Frees the record `r` names, once nothing can reach it any more: only after the word
    /// that published its replacement (the bucket's next version, or the generation word),
    /// and only once (the heap reports a second free as `Corrupt`).
    pub fn free_record(&self, r: Ref) -> Result<()> {
        let (klen, vlen, _) = record_words(&self.heap, r).ok_or_else(|| {
            let at = r.offset();
            self.heap.corrupt(format!(
                "a record to free is outside the heap (offset {at:#x})"
            ))
        })?;
        self.heap.free(r.offset(), self.record_bytes(klen, vlen))
    }

    /// The live record `r` as the heap's rebuild wants it: its offset and allocated bytes.
    pub fn record_extent(&self, r: Ref) -> Option<(u64, usize)> {
        let e = self.entry_of(r)?;
        Some((r.offset(), self.record_bytes(e.klen, e.vlen)))
    }

    /// The checksum word a file-backed map's record `r` ends with, if the heap backs it.
    pub(super) fn stored_sum(&self, e: &Entry<'_>) -> Option<u64> {
        let end = e.r.offset() + record_len(e.klen, e.vlen) as u64;
        // Relaxed: read under exclusion (open validation) or by a recoverer.
        Some(self.heap.word(end)?.load(Ordering::Relaxed))
    }
}
