//! The header's counters a table keeps for the decisions around it: how many slots were taken
//! from EMPTY (reclaims and growth), how many entries moved (lookups that missed look again),
//! whether the table is dense, and the live-entry count.

use std::sync::atomic::Ordering;

use super::RawTable;
use crate::layout::BUCKET_BYTES;
use crate::Meta;

/// Tables this large or larger take new keys up to 7/8 of their buckets when they cannot grow
/// ([`RawTable::empty_claims_allowed`]); smaller ones fill up.
pub const FILL_LIMIT_MIN_CAPACITY: usize = 1024;

impl RawTable {
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

    /// Whether an insert of a new key may take an EMPTY slot: below 7/8 of the slots used,
    /// or in a table of fewer than [`FILL_LIMIT_MIN_CAPACITY`] buckets (their misses are short
    /// whatever the load). Past it a new key makes the table grow, and where it cannot (at
    /// `max_capacity`, or no room for the next table) the insert fails with why, instead of
    /// filling the table to the brim, where a miss probes nearly all of it (23-42 us per miss
    /// measured at 100%, against 0.37 us at 0.7: issue 33). Tombstones stay claimable: they
    /// lengthen no probe.
    #[inline]
    pub fn empty_claims_allowed(&self) -> bool {
        // Relaxed: a heuristic; the count only grows between reclaims, which writers wait for.
        let used = self.segment.header().used().load(Ordering::Relaxed);
        self.capacity < FILL_LIMIT_MIN_CAPACITY || used < (self.capacity - self.capacity / 8) as u64
    }

    /// Whether this table has a fill limit ([`RawTable::empty_claims_allowed`]) and is under
    /// it now. A new key refused at the limit looks again when this turns true: another
    /// process's reclaim lowered the count since. Never true of a small table, whose refusal
    /// means no free slot at all.
    #[inline]
    pub fn back_under_fill_limit(&self) -> bool {
        self.capacity >= FILL_LIMIT_MIN_CAPACITY && self.empty_claims_allowed()
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
    /// - half the slots used, and 1/4 more than at the mark: early, which kept misses short
    ///   while they probed to the first EMPTY slot (before pass counts: misses now stop where
    ///   no probe passes, tombstones or not); it still compacts dense tables. Dropping it
    ///   measured inconclusive on a noisy machine (read-heavy 1.06-1.13x, `exchange` 0.74-0.93x
    ///   at one process, 1.08-1.16x at two). A scan costs at most 4 slot visits per slot
    ///   claimed;
    /// - 7/8 used, and 1/64 more than at the mark: the table is running out of EMPTY slots,
    ///   whatever the last reclaim freed (at most 64 visits per claim);
    /// - none left, and the mark was before that;
    /// - or a pass that earlier writers' reclaims began is not over ([`RawTable::reclaim_left`]).
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
            || self.reclaim_left() > 0
    }

    /// Slots of a reclaim pass that earlier writers' reclaims left to the next (0: none
    /// under way): a writer's reclaim covers a few holds of the pass, not all of it.
    #[inline]
    pub fn reclaim_left(&self) -> usize {
        // Relaxed: a hint; the reclaimer decides under its exclusion where to go on.
        let left = self.segment.header().reclaim_left().load(Ordering::Relaxed);
        usize::try_from(left).unwrap_or(0).min(self.capacity)
    }

    /// A reclaim stopped with `left` slots of its pass not covered (0: the pass is over, or
    /// is given up): the next due reclaim goes on from [`RawTable::reclaim_start`].
    pub fn note_reclaim_left(&self, left: usize) {
        // Relaxed: a hint, as above.
        self.segment
            .header()
            .reclaim_left()
            .store(left as u64, Ordering::Relaxed);
    }

    /// The slot where the next reclaim starts looking for an EMPTY slot (see
    /// [`RawTable::note_reclaim_reached`]).
    pub fn reclaim_start(&self) -> usize {
        // Relaxed: a hint; any slot is a correct place to look from.
        let at = self
            .segment
            .header()
            .reclaim_cursor()
            .load(Ordering::Relaxed);
        usize::try_from(at).unwrap_or(0) % self.capacity.max(1)
    }

    /// A reclaim covered the runs up to slot `at`: the next one starts there, so that
    /// reclaims cut short still take the whole table in turn.
    pub fn note_reclaim_reached(&self, at: usize) {
        // Relaxed: a hint, as above.
        self.segment
            .header()
            .reclaim_cursor()
            .store(at as u64, Ordering::Relaxed);
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

    /// Restarts the reclaim statistics from the control words: every slot not stably EMPTY
    /// counts as used (one held busy too). The caller excludes every claimer (every writer
    /// lock, or a file's first open); one pass over the control words.
    pub fn recount_usage(&self) {
        let empty = (0..self.capacity)
            // Acquire: as every probe reads a control word.
            .filter(|&i| Meta(self.meta(i).load(Ordering::Acquire)).is_stable_empty())
            .count();
        self.restart_usage(empty);
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

    /// Makes every bucket EMPTY (version 0) and every pass count 0, giving the table's whole
    /// pages back to the kernel, and restarts the counters for an empty table (a `clear`).
    ///
    /// The caller excludes every writer and has made every FULL slot a tombstone first: so no
    /// reader meets an entry here, and a caller killed half way leaves a table that lookups
    /// read right. Versions start again from 0, so the caller has stored a new generation
    /// word before (after the tombstones), which sends every reader that may have read a word
    /// from before back to read again (`shmap::Header::generation`).
    pub fn empty_in_place(&self) {
        let zero_from = self.segment.punch_table();
        let l = self.segment.layout();
        // What lies below the first punched page (the root's header shares it), or all of it
        // where the file system could not punch. Relaxed: the caller's generation word
        // publishes it; meanwhile readers meet tombstones and zeros alike as no entry.
        let buckets = (zero_from.saturating_sub(l.meta_offset) / BUCKET_BYTES).min(self.capacity);
        for i in 0..buckets {
            self.meta(i).store(0, Ordering::Relaxed);
            self.reference(i).store(0, Ordering::Relaxed);
        }
        for i in 0..zero_from.saturating_sub(l.passes_offset).min(self.capacity) {
            self.set_passes(i, 0);
        }
        self.restart_usage(self.capacity);
        self.note_reclaim_left(0);
        self.note_live(0);
        self.restart_emptying_watch();
    }
}
