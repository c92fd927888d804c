//! Noticing that removes emptied the map, so that its table's pages go back to the kernel
//! (issue 32, item 3). `clear()` gives them back at once; a map whose entries were removed one
//! by one is noticed here by its last remove, and given back by that remover's upkeep
//! (`backends/src/lifecycle/clear.rs`, `give_back_if_empty`), as a `clear` of nothing.
//!
//! Why not count on every remove: a striped map's count is a sum over its registry records,
//! and loading every writer's record on every remove would cost each remove a miss per
//! writer; and the store-load order an exact count needs (a `SeqCst` store of the remover's
//! count, or a fence) waits for the remove's earlier stores, which miss in a large table: a Python `del`
//! measured 5-13% slower with it on every remove. So the header's `emptying` word, loaded by
//! the remover under its key's lock before it stores its count, says how to count
//! (`backends/tests/loom_emptying.rs` checks the argument below):
//!
//! | value | meaning | set by |
//! |---|---|---|
//! | `NEAR` (0) | near empty, or not counted yet: every remove counts, after a `SeqCst` fence | a new or emptied table (zero); a settle |
//! | `FAR` (1) | the last count found more than `2 * near`: a remove stores its count as always, and counts (`Relaxed`) only when its record's count lands on a multiple of [`EMPTYING_SAMPLE`] | a count of more than `2 * near` in `NEAR` |
//! | `DUE` (2) | a settle is due: the remover's upkeep moves it to `NEAR`, takes every writer lock, counts exactly, and gives the table back if the map is empty (`backends/src/lifecycle/clear.rs`) | a count in `NEAR` that found 0, or one in `FAR` that found at most `near`, in a table worth giving back |
//!
//! `near` is `2 * R * K`, with `R` the records whose counts the map sums and `K` the sample.
//! Why the map emptied by removes is always given back:
//! - A record's count moves by one at each write it ends. A record whose count fell by `K`
//!   net had, on the way, a remove that landed it on a multiple of `K`. So while the map loses
//!   `R * K` entries net, some record lost `K`, and some remove counted.
//! - Take the last time the map held `2 * R * K` entries before it emptied. From there it
//!   lost `2 * R * K` net, holding fewer all along: a remove in that stretch counted in
//!   `FAR`, found at most `near`, and made a settle due (or the word was `NEAR` already).
//! - The settle stores `NEAR` before it takes every writer lock. A remover that loaded an
//!   older value did so holding its key's lock, and stored its count before letting go: the
//!   settle, taking that lock after it, counts it exactly. Every remover that takes its lock
//!   after the settle let go loads `NEAR`.
//! - In `NEAR` every remover stores its count, then fences (`SeqCst`), then loads the other
//!   records' counts: of two last removes racing, the one whose fence comes second in the
//!   single order sees both stores, and counts 0.
//!
//! Not seen: an entry whose remove a recoverer finished (a remover killed after its tombstone),
//! which takes no count. The map is then given back at its next remove, or its next `clear()`.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{fence, AtomicU64, Ordering};

use super::RawTable;

/// Tables of fewer buckets than this (1 MiB of words) keep their pages when removes empty
/// them: too little to be worth a pass over the table with every writer stopped.
pub const GIVE_BACK_MIN_CAPACITY: usize = 1 << 16;

/// In state `FAR`, a remove counts the map when its record's count lands on a multiple of this.
pub const EMPTYING_SAMPLE: u32 = 64;

const NEAR: u64 = 0;
const FAR: u64 = 1;
const DUE: u64 = 2;

impl RawTable {
    /// Whether removes in this table watch for the map emptying: large tables only.
    #[inline]
    pub fn watches_emptying(&self) -> bool {
        self.capacity >= GIVE_BACK_MIN_CAPACITY
    }

    /// Ends a remove and watches for the map emptying (see the module docs): `finish` stores
    /// the remover's count and returns its record's count after it; `records` is how many
    /// counts the map's is a sum of; `count` loads that sum (`Relaxed`). The caller holds the
    /// removed key's lock.
    #[inline]
    pub fn watch_emptying(
        &self,
        finish: impl FnOnce() -> u32,
        records: usize,
        count: impl FnMut() -> usize,
    ) {
        let word = self.segment.header().emptying();
        // Relaxed: under the key's lock, which a settle takes after its store (module docs).
        let state = word.load(Relaxed);
        let landed = finish() % EMPTYING_SAMPLE == 0;
        if state == NEAR || (state == FAR && landed) {
            self.count_for_emptying(word, state, records, count);
        }
    }

    #[cold]
    #[inline(never)]
    fn count_for_emptying(
        &self,
        word: &AtomicU64,
        state: u64,
        records: usize,
        mut count: impl FnMut() -> usize,
    ) {
        let near = records.max(1).saturating_mul(2 * EMPTYING_SAMPLE as usize);
        if state == FAR {
            // A sample: the settle it asks for counts exactly.
            if count() <= near {
                let next = if self.worth_giving_back() { DUE } else { NEAR };
                let _ = word.compare_exchange(FAR, next, Relaxed, Relaxed);
            }
            return;
        }
        // Between our count's store and the loads of the others': of two removers here, the
        // one whose fence comes second sees the other's store (module docs).
        fence(SeqCst);
        let live = count();
        if live == 0 && self.worth_giving_back() {
            let _ = word.compare_exchange(NEAR, DUE, Relaxed, Relaxed);
        } else if live > near.saturating_mul(2) {
            let _ = word.compare_exchange(NEAR, FAR, Relaxed, Relaxed);
        }
    }

    /// Whether emptying this table in place would give back much: a large table with at
    /// least 1/16 of its slots taken since it was made or last emptied (every page then
    /// holds some). A table that churns a few entries (a queue) is given back only after
    /// that many new slots were taken, so its passes are paid for by its inserts.
    pub fn worth_giving_back(&self) -> bool {
        self.watches_emptying() && self.used_slots() >= self.capacity / 16
    }

    /// Whether a settle is due: removes found the map empty, or near it (see the module docs).
    #[inline]
    pub fn give_back_due(&self) -> bool {
        // Relaxed: a hint; the upkeep that acts on it checks the table itself.
        self.segment.header().emptying().load(Relaxed) == DUE
    }

    /// Takes the due settle (`DUE` to `NEAR`), for one upkeep only: whether it was due. The
    /// caller then takes every writer lock and counts.
    pub fn take_give_back(&self) -> bool {
        let word = self.segment.header().emptying();
        word.compare_exchange(DUE, NEAR, Relaxed, Relaxed).is_ok()
    }

    /// Makes the settle due again (one that could not take every writer lock).
    pub fn settle_again(&self) {
        // Relaxed: as `take_give_back`.
        self.segment.header().emptying().store(DUE, Relaxed);
    }

    /// A table emptied in place watches every remove again.
    pub(super) fn restart_emptying_watch(&self) {
        self.segment
            .header()
            .emptying()
            .store(NEAR, Ordering::Relaxed);
    }
}
