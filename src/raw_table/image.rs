//! Checksums and the journal's references.
//!
//! Checksums (file-backed maps): a file can outlive an unclean shutdown of the machine with
//! some of its pages written back and others stale, so a control word may say FULL over a
//! reference, or a reference name a record, that come from different writes. Every record of
//! a file-backed map therefore ends with [`RawTable::entry_sum`], a hash of its lengths, key and
//! value seeded with its offset. The first process to open such a file validates every entry
//! against it (`SharedMap`'s open validation); reads never check it: between processes that
//! are running, the protocol alone keeps copies whole. Shared memory does not outlive the
//! machine, so its records carry no checksum.
//!
//! What a torn file can still pass: a bucket whose reference is older than its control word
//! names the key's previous record, which is whole (it was a real value of the key) unless
//! it was freed and reused since, which its checksum then catches; see the README's crash
//! section.
//!
//! A journal (a writer's registry record) holds [`JOURNAL_WORDS`] words: the reference its
//! operation publishes (claims and updates) and the one it replaces (updates and removes), so
//! that a recoverer can finish the publication and then free what the dead writer would have.

use std::sync::atomic::{AtomicU64, Ordering};

use super::words::sum_of;
use super::{Entry, RawTable};
use crate::heap::Ref;
use crate::meta::Meta;

/// Words of a writer's journal: the new reference, then the old one (0: none).
pub const JOURNAL_WORDS: usize = 2;

impl RawTable {
    /// Whether records carry checksums, and opening validates them (file-backed maps).
    pub fn checksummed(&self) -> bool {
        self.checksummed
    }

    /// The checksum of the record at `offset` of `key` and `value`: xxh3 of the value, seeded
    /// with the key's hash, the lengths and the offset (a 64-bit hash: a record torn or
    /// replaced by another passes with odds of 2^-64).
    pub fn entry_sum(&self, key: &[u8], value: &[u8], offset: u64) -> u64 {
        sum_of(self.hash(key).hash, key.len(), value, offset)
    }

    /// Whether bucket `i`, published as the stable FULL word `m`, names a whole entry: a
    /// record in bounds, a key whose tag is `m`'s and, in a checksummed map, a checksum that
    /// matches. Only for a caller that excludes every writer (open validation).
    pub fn entry_is_intact(&self, i: usize, m: Meta) -> bool {
        self.entry(i)
            .and_then(|e| self.summed_key(&e))
            .is_some_and(|key| self.hash(&key).tag == m.tag())
    }

    /// The record's key if the record is whole: in a checksummed map, if its checksum
    /// matches; in shared memory, always.
    fn summed_key(&self, e: &Entry<'_>) -> Option<Vec<u8>> {
        let (mut key, mut value) = (Vec::new(), Vec::new());
        e.read_key(&mut key);
        if self.checksummed {
            e.read_value(&mut value);
            let sum = self.entry_sum(&key, &value, e.r.offset());
            (self.stored_sum(e) == Some(sum)).then_some(key)
        } else {
            Some(key)
        }
    }

    /// Writes a journal: the reference the operation publishes and the one it replaces.
    #[inline]
    pub fn write_image(&self, dst: &[AtomicU64], new: Option<Ref>, old: Option<Ref>) {
        // Relaxed: the journal is published by its owner's Release store of its state word.
        dst[0].store(new.map_or(0, |r| r.0), Ordering::Relaxed);
        dst[1].store(old.map_or(0, |r| r.0), Ordering::Relaxed);
    }

    /// A journal's (new, old) references.
    pub fn image_refs(&self, src: &[AtomicU64]) -> (Option<Ref>, Option<Ref>) {
        // Relaxed: read by a recoverer that synchronised with the journal's writer through
        // the kernel's lock handoff (the writer is dead).
        let r = |w: &AtomicU64| Some(Ref(w.load(Ordering::Relaxed))).filter(|r| r.0 != 0);
        (r(&src[0]), r(&src[1]))
    }

    /// Whether the journal's new reference names a record in bounds and, in a checksummed
    /// map, one that passes its checksum (a journal in a file can be torn by a crash of the
    /// machine like any bucket).
    pub fn image_is_intact(&self, src: &[AtomicU64]) -> bool {
        self.image_refs(src)
            .0
            .and_then(|r| self.entry_of(r))
            .is_some_and(|e| self.summed_key(&e).is_some())
    }

    /// Names the journal's new record in bucket `i`, which the caller holds.
    pub fn restore_image(&self, i: usize, src: &[AtomicU64]) {
        if let Some(r) = self.image_refs(src).0 {
            self.set_ref(i, r);
        }
    }

    /// Whether bucket `i` names the journal's new record (a claim that published it).
    pub fn image_key_matches(&self, i: usize, src: &[AtomicU64]) -> bool {
        self.image_refs(src).0 == Some(self.ref_of(i))
    }
}
