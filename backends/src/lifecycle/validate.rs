//! Opening a file-backed map that no other process has open: undoing what an unclean shutdown
//! of the machine can leave in the file.
//!
//! A file outlives the machine, but only the pages the kernel wrote back before a power cut or
//! a kernel crash. Any 4 KiB page of it may then be newer or older than its neighbours, so:
//!
//! | what a torn file can hold                             | found by                | done                |
//! |-------------------------------------------------------|-------------------------|---------------------|
//! | a FULL word naming a record of other writes, or none (torn entry) | the record's checksum, bound to its offset; its bounds | tombstone (dropped) |
//! | a control word with an invalid state, or left busy    | its bits, after the dead are repaired | tombstone (dropped if FULL) |
//! | a journal naming a torn record                        | its checksum, in `recovery` | entry dropped       |
//! | an EMPTY word (older page) before a FULL slot of a key whose probe passes it | probing from the key's home | EMPTY -> TOMBSTONE (bridged) |
//! | one key in two FULL slots (a remove and re-insert seen half) | the same probe   | the later copy dropped |
//! | counts, stripe and mutex words of processes long gone | -                       | recounted, freed    |
//! | pass counts older or newer than the entries           | -                       | recounted (`raw_table/passes.rs`) |
//! | heap bitmaps and free lists older or newer than the table, blocks a dead process left allocated | - | rebuilt from the records the table names (`Heap::rebuild`) |
//!
//! Whoever takes the file's session lock exclusively ([`shmap::SESSION_BYTE`]) is the only
//! process with the map open, so it may rewrite any word without a protocol; attachers wait
//! for it on the shared lock. It runs at every such first open, not only after a crash: a
//! clean flag would need every process to agree that it was the last to leave, which a fork
//! that shares the lock's description cannot tell. The cost is a read of every slot.
//!
//! Reads never check checksums: between running processes the slot protocol keeps every copy
//! whole, and a torn page can only come from a crash that also ended every reader.

use std::sync::atomic::Ordering;

use shmap::{Meta, RawTable, Result, SlotState};

use crate::generations::discard_leftovers;
use crate::protocol::Protocol;
use crate::table::{SharedMap, Validation};

/// Retires slot `i` with control word `m` (nobody else has the map open).
fn retire(table: &RawTable, i: usize, m: Meta) {
    // Relaxed: nobody else has the map open; the session lock hands the file over.
    table
        .meta(i)
        .store(m.next(SlotState::Tombstone, 0).0, Ordering::Relaxed);
}

impl<P: Protocol> SharedMap<P> {
    /// Validates the whole map; the caller holds the session lock exclusively.
    pub(crate) fn validate_exclusive(&self) -> Result<Validation> {
        let (g, table) = self.tables().current()?;
        // What a resizer killed half way (or a crash of the machine) left beside the map.
        discard_leftovers(self.tables(), g, &self.tables().location(g + 1));
        let mut v = Validation::default();
        match self.recover_dead() {
            Ok(n) => v.repaired = n,
            Err(_) => v.unrepairable = true,
        }
        self.drop_torn(table, &mut v);
        self.reconnect(table, &mut v);
        self.rebuild_heap(table, &mut v)?;
        self.protocol().reset(table, v.entries);
        // The reclaim statistics (`reclaim.rs`) from what is there now, not what a tear left.
        table.recount_usage();
        Ok(v)
    }

    /// Pass 1: every FULL slot must hold a whole entry; every word must be stable and valid.
    fn drop_torn(&self, table: &RawTable, v: &mut Validation) {
        for i in 0..table.capacity() {
            // Relaxed: as in `retire`.
            let m = Meta(table.meta(i).load(Ordering::Relaxed));
            match (m.state(), m.is_busy()) {
                (Some(SlotState::Empty | SlotState::Tombstone), false) => {}
                (Some(SlotState::Full), false) if table.entry_is_intact(i, m) => {}
                (Some(SlotState::Full), _) => {
                    v.dropped += 1;
                    retire(table, i, m);
                }
                _ => {
                    v.bad_words += 1;
                    retire(table, i, m);
                }
            }
        }
    }

    /// Pass 2: every entry reachable from its home bucket, and found only once; then the
    /// pass counts of the entries kept (`raw_table/passes.rs`: derived, and a torn page may
    /// hold them older than the entries, too low).
    fn reconnect(&self, table: &RawTable, v: &mut Validation) {
        let (mut key, mut other) = (Vec::new(), Vec::new());
        let mut passes = vec![0usize; table.capacity()];
        for i in 0..table.capacity() {
            // Relaxed: as in `retire`.
            let m = Meta(table.meta(i).load(Ordering::Relaxed));
            if m.state() != Some(SlotState::Full) {
                continue;
            }
            table.read_key(i, &mut key); // whole: `drop_torn` kept only those
            let h = table.hash(&key);
            let mut duplicate = false;
            for j in table.probe(h.home).take_while(|&j| j != i) {
                let mj = Meta(table.meta(j).load(Ordering::Relaxed));
                match mj.state() {
                    Some(SlotState::Empty) => {
                        v.bridged += 1;
                        table.meta(j).store(
                            Meta::stable(SlotState::Tombstone, 0, 0).0,
                            Ordering::Relaxed,
                        );
                    }
                    Some(SlotState::Full)
                        if mj.tag() == h.tag && table.read_key(j, &mut other) && other == key =>
                    {
                        duplicate = true;
                        break;
                    }
                    _ => {}
                }
            }
            if duplicate {
                v.duplicates += 1;
                retire(table, i, m);
            } else {
                v.entries += 1;
                for j in table.passed_buckets(h.home, i) {
                    passes[j] += 1;
                }
            }
        }
        for (j, n) in passes.into_iter().enumerate() {
            table.set_passes(j, n);
        }
    }

    /// Pass 3: the heap's bookkeeping is derived data, like the pass counts: rebuilt from
    /// the records the entries kept name (each once: `reconnect` kept one slot per key). An
    /// entry whose record is no block of the heap (a torn run header, a bucket page newer than
    /// the heap's) is dropped. (Its probe's pass counts stay as counted, one too high: a
    /// longer miss until the next recount.)
    fn rebuild_heap(&self, table: &RawTable, v: &mut Validation) -> Result<()> {
        let full: Vec<usize> = (0..table.capacity())
            // Relaxed: as in `retire`.
            .filter(|&i| {
                Meta(table.meta(i).load(Ordering::Relaxed)).state() == Some(SlotState::Full)
            })
            .collect();
        let live = full
            .iter()
            .filter_map(|&i| table.record_extent(table.ref_of(i)));
        let (rebuilt, rejected) = table.heap().rebuild_torn(live)?;
        v.heap = rebuilt;
        let rejected: std::collections::HashSet<u64> = rejected.into_iter().collect();
        for &i in &full {
            if rejected.contains(&table.ref_of(i).offset()) {
                // Relaxed: as in `retire`.
                retire(table, i, Meta(table.meta(i).load(Ordering::Relaxed)));
                v.dropped += 1;
                v.entries -= 1;
            }
        }
        Ok(())
    }
}
