//! Pass counts: for every bucket, how many entries' probes pass it (issue 13). A lookup that
//! has not found its key at bucket `j` may stop there when no probe passes `j`, whatever the
//! slots after it hold, so tombstones no longer lengthen the lookups of absent keys (F14's
//! overflow counts, per bucket; see `docs/tombstones.md`).
//!
//! The entry of key `K` in slot `s`, whose home is `h`, *passes* the buckets `h..s` (`s`
//! excluded, circularly). Invariant, for every bucket `j`:
//!
//! > `passes(j)` >= the number of entries published in the table whose probe passes `j`,
//! > or `passes(j) == MAX_PASSES` (255, sticky).
//!
//! | who                         | what                                   | when                              |
//! |-----------------------------|----------------------------------------|-----------------------------------|
//! | inserter of `K` into `s`    | +1 on `h..s`                           | after claiming `s`, before publishing it FULL |
//! | remover of `K` from `s`     | -1 on `h..s`                           | after publishing `s` TOMBSTONE    |
//! | mover of `K` from `j` to `t`| -1 on `t..j`                           | after retiring `j` (`compact.rs`) |
//! | resizer, new table          | +1 on `h..s` per entry copied          | before the table is published     |
//! | reclaim, one run            | the exact count of its probes          | every writer excluded             |
//! | open of a file, exclusive   | the exact count of every probe         | nobody else has the map open      |
//!
//! Each +1 comes before the entry is published and each -1 after it is gone, so the count
//! errs high only while an operation is under way, or for good where a process died between
//! the two (recovery leaves the counts as they are: too high only costs a longer miss, and the
//! next reclaim of the table recounts). A count that reaches 255 ([`MAX_PASSES`]) stays there
//! until a recount, since the increments it dropped cannot be told from those it kept.
//!
//! Orderings: a reader loads a count with Acquire, and a -1 is a Release RMW, so a reader
//! that stops at a count a mover lowered also sees the move count it bumped before
//! (`compact.rs`: the lookup then looks again). The +1 may be Relaxed: the inserter's Release
//! store that publishes the entry orders it before anything that can make the entry known.
//! A RMW always reads the latest value, so concurrent +1 and -1 on one bucket never lose one.

use std::sync::atomic::{AtomicU8, Ordering};

use super::RawTable;
use crate::meta::{Meta, SlotState};

/// The count that sticks: every value below it is exact or high by the dead's leftovers.
pub(crate) const MAX_PASSES: u8 = u8::MAX;

impl RawTable {
    /// Bucket `i`'s pass count.
    #[inline(always)]
    fn pass_count(&self, i: usize) -> &AtomicU8 {
        assert!(i < self.capacity);
        // SAFETY: i < capacity and the passes region holds `capacity` bytes, accessed only as
        // `AtomicU8` (which has the alignment and size of `u8`).
        unsafe { &*self.passes.add(i) }
    }

    /// Whether some entry's probe may pass bucket `i`: `false` proves that no entry whose
    /// home is at or before `i` lies after it, so a lookup that did not find its key at `i`
    /// may stop.
    #[inline(always)]
    pub fn is_passed(&self, i: usize) -> bool {
        // Acquire: see the module's orderings (a mover's -1).
        self.pass_count(i).load(Ordering::Acquire) != 0
    }

    /// Bucket `i`'s pass count (for tests and tools).
    pub fn passes(&self, i: usize) -> u8 {
        // Relaxed: a snapshot for inspection.
        self.pass_count(i).load(Ordering::Relaxed)
    }

    /// The buckets from `from` up to `to` (excluded), circularly: those an entry homed at
    /// `from` in slot `to` passes (what its pass counts count).
    pub fn passed_buckets(&self, from: usize, to: usize) -> impl Iterator<Item = usize> {
        let len = (to + self.capacity - from) % self.capacity;
        self.probe(from).take(len)
    }

    /// +1 on the buckets an entry homed at `home` in slot `slot` passes, before it is
    /// published. A no-op for an entry in its home bucket.
    #[inline]
    pub fn add_passes(&self, home: usize, slot: usize) {
        if home != slot {
            self.add_passes_slow(home, slot);
        }
    }

    #[inline(never)] // a claim past home: keeps the claim at home as short as it was
    fn add_passes_slow(&self, home: usize, slot: usize) {
        for j in self.passed_buckets(home, slot) {
            // Relaxed: see the module's orderings (the publication that follows orders it).
            let _ = self
                .pass_count(j)
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n != MAX_PASSES).then(|| n + 1)
                });
        }
    }

    /// -1 on the buckets from `from` up to `to` (excluded): after an entry homed at `from` left
    /// slot `to`, or after an entry moved from `to` back to `from`.
    #[inline]
    pub fn sub_passes(&self, from: usize, to: usize) {
        if from != to {
            self.sub_passes_slow(from, to);
        }
    }

    #[inline(never)]
    fn sub_passes_slow(&self, from: usize, to: usize) {
        for j in self.passed_buckets(from, to) {
            // Release: see the module's orderings (a mover's bump of the move count).
            let _ = self
                .pass_count(j)
                // A count of 0 here is a pass removed that was never added: a corrupt
                // segment can hold it (the heap fuzz met it in a debug build, where this was
                // an assertion: a panic on input). It stays 0; a recount makes it exact.
                .fetch_update(Ordering::Release, Ordering::Relaxed, |n| {
                    (n != MAX_PASSES && n != 0).then(|| n - 1)
                });
        }
    }

    /// Sets bucket `i`'s count to `n` (exact, saturated at 255), for a recount: the
    /// caller excludes every writer of the buckets whose probes pass `i`. Stores only a
    /// count that differs: a recount of a whole run or table leaves the lines other cores
    /// read (and a file's pages) clean where nothing changed.
    pub fn set_passes(&self, i: usize, n: usize) {
        let n = u8::try_from(n).unwrap_or(MAX_PASSES);
        let count = self.pass_count(i);
        // Relaxed: only writers change a count, and the caller excludes them.
        if count.load(Ordering::Relaxed) != n {
            // Release: a reader that loads it sees the stores of the recount before it (the
            // tombstones it freed are published by their own Release CAS).
            count.store(n, Ordering::Release);
        }
    }

    /// Every bucket's exact pass count, from the entries as they are (a quiescent table, or
    /// every writer excluded), for tests and tools. `None` at a FULL slot whose record is out of bounds or a word
    /// no writer produces; free slots, busy or not, hold no entry.
    pub fn exact_passes(&self) -> Option<Vec<usize>> {
        let mut counts = vec![0usize; self.capacity];
        let mut key = Vec::new();
        for s in 0..self.capacity {
            // Acquire: the key words read below are at least as new as the word.
            let m = Meta(self.meta(s).load(Ordering::Acquire));
            match m.state() {
                Some(SlotState::Full) => {}
                Some(_) => continue,
                None => return None,
            }
            if !self.read_key(s, &mut key) {
                return None;
            }
            for j in self.passed_buckets(self.hash(&key).home, s) {
                counts[j] += 1;
            }
        }
        Some(counts)
    }
}
