//! Reclaims cut short, counted, recounted and shared out among writers.

use shmap::{Location, MapBackend, MapOps, MapParams, Meta, SlotState};

use super::*;
use crate::{Seqlock, Striped};

type Map = SharedMap<Striped<Seqlock>>;

/// A map's name, removed when the test ends, also when it fails.
struct Named(String);

impl Drop for Named {
    fn drop(&mut self) {
        let _ = shmap::unlink(&self.0);
    }
}

/// A table of 16,384 buckets that cannot grow (four holds of a reclaim), with 8,000 keys
/// inserted and 6,000 of them removed: tombstones all over it.
fn churned(tag: &str) -> (Named, Map) {
    let name = format!("shmap-unit-reclaim-{tag}-{}", std::process::id());
    let params = MapParams {
        capacity: 16_384,
        max_key_size: 16,
        max_value_size: 8,
        max_capacity: 16_384,
    };
    let map = Map::create_in(&Location::Shm(name.clone()), params).unwrap();
    for i in 0..8_000u64 {
        map.insert(format!("k{i}").as_bytes(), &i.to_le_bytes())
            .unwrap();
    }
    for i in 0..6_000u64 {
        assert!(map.remove(format!("k{i}").as_bytes()).unwrap());
    }
    (Named(name), map)
}

fn slots_taken(table: &RawTable) -> usize {
    // Relaxed: a quiescent map.
    (0..table.capacity())
        .filter(|&i| Meta(table.meta(i).load(Ordering::Relaxed)).state() != Some(SlotState::Empty))
        .count()
}

/// A reclaim that takes one hold and is then cut short, as a writer keeping its lock does.
fn one_hold(map: &Map) -> Reclaimed {
    let mut holds = 0;
    let r = map.reclaim_holding(Pass::Whole, || {
        holds += 1;
        match holds {
            1 => map.protocol().try_lock_all(map.tables()),
            _ => Ok(None),
        }
    });
    r.unwrap().expect("the first hold was taken")
}

#[test]
fn a_reclaim_cut_short_counts_what_it_freed() {
    let (_name, map) = churned("counts");
    let table = map.raw_table().unwrap();
    let r = one_hold(&map);
    assert!(r.partial && r.freed > 0, "{r:?}");
    assert_eq!(table.used_slots(), slots_taken(table));
    map.unlink().unwrap();
}

#[test]
fn a_count_left_high_by_a_killed_reclaimer_is_recounted_not_reported_full() {
    let (_name, map) = churned("recount");
    let table = map.raw_table().unwrap();
    map.reclaim_tombstones().unwrap().unwrap();
    let taken = slots_taken(table);
    // What a reclaimer killed in a hold leaves: slots freed, the count not lowered.
    table.restart_usage(0);
    assert!(!table.empty_claims_allowed());
    for i in 0..1_000u64 {
        map.insert(format!("new{i}").as_bytes(), &i.to_le_bytes())
            .unwrap_or_else(|e| panic!("insert {i} of a table {taken} of 16,384 taken: {e}"));
    }
    assert_eq!(table.used_slots(), slots_taken(table));
    map.unlink().unwrap();
}

#[test]
fn reclaims_cut_short_take_the_whole_table_in_turn() {
    let (_name, map) = churned("turns");
    // One hold each covers at least 4,096 slots: five go round a 16,384-slot table.
    let freed: usize = (0..5).map(|_| one_hold(&map).freed).sum();
    assert!(freed > 0);
    let after = map.reclaim_tombstones().unwrap().unwrap();
    assert_eq!(after.freed, 0, "reclaims cut short went over the same runs");
    let table = map.raw_table().unwrap();
    assert_eq!(table.used_slots(), slots_taken(table));
    map.unlink().unwrap();
}

/// A writer's reclaim takes at most `HOLDS_PER_WRITER` holds of a pass over a table too
/// large for them; the writers after it find the reclaim due and go on from where it
/// stopped, and the pass is counted once, when it is over.
#[test]
fn writers_share_out_a_pass_over_a_large_table() {
    const CAPACITY: usize = 4 * HOLDS_PER_WRITER * CHUNK;
    let name = format!("shmap-unit-reclaim-shares-{}", std::process::id());
    let _named = Named(name.clone());
    let params = MapParams {
        capacity: CAPACITY,
        max_key_size: 16,
        max_value_size: 8,
        max_capacity: CAPACITY,
    };
    let map = Map::create_in(&Location::Shm(name), params).unwrap();
    for i in 0..70_000u64 {
        map.insert(format!("k{i}").as_bytes(), &i.to_le_bytes())
            .unwrap();
    }
    // Removes reclaim nothing: 50,000 tombstones, and no pass under way.
    for i in 0..50_000u64 {
        assert!(map.remove(format!("k{i}").as_bytes()).unwrap());
    }
    let table = map.raw_table().unwrap();
    assert_eq!(table.reclaim_left(), 0);
    // Due as if the last reclaim were long ago (the mark is a hint the rules read).
    let h = table.segment().header();
    h.reclaim_mark().store(0, Ordering::Relaxed);
    assert!(table.reclaim_due());
    let reclaims = || h.reclaims().load(Ordering::Relaxed);
    let (before, mut shares, mut freed) = (reclaims(), 0, 0);
    loop {
        let mut holds = 0;
        let r = map.reclaim_holding(Pass::WritersShare, || {
            holds += 1;
            map.protocol().try_lock_all(map.tables())
        });
        let r = r.unwrap().expect("no writer holds a lock");
        assert!(holds <= HOLDS_PER_WRITER, "{holds} holds in one share");
        (shares, freed) = (shares + 1, freed + r.freed);
        if !r.partial {
            break;
        }
        assert!(table.reclaim_left() > 0 && table.reclaim_due(), "{r:?}");
        assert_eq!(reclaims(), before, "a share counted as a pass");
        assert!(shares < 8, "the pass does not end");
    }
    assert!((2..=4).contains(&shares), "{shares} shares");
    assert_eq!((table.reclaim_left(), reclaims()), (0, before + 1));
    assert!(freed > 40_000, "{freed} of 50,000 tombstones freed");
    // The shares went round the whole table: a whole pass after them frees nothing.
    assert_eq!(map.reclaim_tombstones().unwrap().unwrap().freed, 0);
    assert_eq!(table.used_slots(), slots_taken(table));
    assert!(!table.reclaim_due());
    map.unlink().unwrap();
}
