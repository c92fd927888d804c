//! A `clear` SIGKILLed at random instants (issue 32 items 3 and 6): the clearer stops every
//! writer, makes every entry a tombstone, sweeps the heap and punches the table's pages, and
//! journals none of it (`backends/src/lifecycle/clear.rs`: every step leaves a table lookups
//! read right). After each kill, whatever it got to: every key a lookup finds is whole, a scan
//! lists each key once and exactly the keys lookups find, the count agrees, and writing every
//! key again gives exactly one entry per key. After the last kill, a recovery and a sweep
//! leave no block that nothing names.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use shmap::{MapBackend, MapOps, MapParams};
use shmap_backends::{Protocol, SharedMap};
use shmap_testkit::checked::{make, verify};

use common::Rng;

const KEYS: u64 = 10_000;
const KILLS: u64 = 40;

fn key(id: u64) -> Vec<u8> {
    format!("key-{id:08}").into_bytes()
}

fn clearers_killed_at_random_leave_a_map_that_reads_right<P: Protocol>(backend: &str) {
    let name = common::TestName::new(&format!("clearkill-{backend}"));
    let params = MapParams::with_capacity(1 << 12).without_size_limits();
    let map = SharedMap::<P>::create(name.as_str(), params).unwrap();
    let mut rng = Rng(0xC1u64 << 32 ^ u64::from(std::process::id()));
    let (mut cut, mut whole) = (0, 0);
    for kill in 0..KILLS {
        for id in 0..KEYS {
            map.insert(&key(id), &make(id, kill, 16 + rng.below(400) as usize))
                .unwrap();
        }
        assert_eq!(map.len().unwrap(), KEYS as usize, "kill {kill}: refilled");
        let mut child = common::spawn_worker(backend, "clear-loop", name.as_str(), &[]);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("the clearer printed").unwrap();
        assert_eq!(line, "clearing", "kill {kill}");
        // A clear of the 10,000 entries takes about 2 ms here: most kills land in it.
        std::thread::sleep(Duration::from_micros(rng.below(3_000)));
        common::kill_and_reap(&mut child, &format!("kill {kill}: the clearer"));
        drop(lines);
        let entries = map.entries().unwrap();
        let mut listed = HashSet::new();
        for (k, v) in &entries {
            assert!(listed.insert(k.clone()), "kill {kill}: a key listed twice");
            let id: u64 = std::str::from_utf8(&k[4..]).unwrap().parse().unwrap();
            assert_eq!(verify(id, v), Ok(kill), "kill {kill}: key {id}");
        }
        for id in 0..KEYS {
            let found = map.get(&key(id)).unwrap();
            assert_eq!(
                found.is_some(),
                listed.contains(&key(id)),
                "kill {kill}: key {id}"
            );
        }
        assert_eq!(map.len().unwrap(), entries.len(), "kill {kill}: the count");
        if (1..KEYS as usize).contains(&entries.len()) {
            cut += 1;
        } else {
            whole += 1;
        }
    }
    // Every key written once more: one entry each, none hidden behind what a kill left.
    for id in 0..KEYS {
        map.insert(&key(id), &make(id, KILLS, 40)).unwrap();
    }
    let entries = map.entries().unwrap();
    assert_eq!(
        (entries.len(), map.len().unwrap()),
        (KEYS as usize, KEYS as usize)
    );
    map.recover_dead().unwrap();
    map.sweep_heap().unwrap().expect("it waits");
    eprintln!("{backend}: {KILLS} clearers killed: {cut} in the middle of the entries, {whole} before or after them");
    // What is left: counted by a rebuild through a handle of its own (every other is gone).
    drop(map);
    let map = SharedMap::<P>::attach(name.as_str()).unwrap();
    let table = map.raw_table().unwrap();
    let live = common::live_records(table);
    let rebuilt = table.heap().rebuild(live).unwrap();
    assert_eq!(rebuilt.leaked, 0, "{rebuilt:?}");
}

#[test]
fn lockfree_clearers_killed_at_random() {
    clearers_killed_at_random_leave_a_map_that_reads_right::<
        shmap_backends::Striped<shmap_backends::Seqlock>,
    >("lockfree");
}

#[test]
fn spinlock_clearers_killed_at_random() {
    clearers_killed_at_random_leave_a_map_that_reads_right::<
        shmap_backends::Striped<shmap_backends::SlotLocks>,
    >("spinlock");
}
