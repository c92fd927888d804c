//! A large map emptied by removes from several real processes gives its table back
//! (`shmap::RawTable::watch_emptying`; issue 32 item 3): its count is a sum over every
//! process's registry records, and the remove that empties it, in whichever process, must
//! still notice. Each process removes 63 more keys than a multiple of the sample, so its last
//! sampled count comes 63 removes before its end; how much the processes overlap is up to
//! the scheduler (`backends/tests/emptied_by_removes.rs` removes in lockstep, where a watch
//! that ignored the other records' counts fails).

mod common;

use shmap::{MapBackend, MapOps, MapParams, EMPTIED};
use shmap_backends::{Protocol, SharedMap};
use shmap_testkit::checked::make;
use shmap_testkit::shm_table_bytes;

use common::{field, finish, spawn_worker, TestName};

const PROCESSES: u64 = 4;
const KEYS: u64 = PROCESSES * (shmap::EMPTYING_SAMPLE as u64 * 150 + 63);

fn removers_in_four_processes_give_the_table_back<P: Protocol>(backend: &str) {
    let name = TestName::new(&format!("emptied-{backend}"));
    let params = MapParams::with_capacity(1024).without_size_limits();
    let map = SharedMap::<P>::create(name.as_str(), params).unwrap();
    for round in 0..3u64 {
        for id in 0..KEYS {
            map.insert(format!("gone-{id}").as_bytes(), &make(id, round, 24))
                .unwrap();
        }
        let full = shm_table_bytes(name.as_str());
        assert!(
            full > 1 << 20,
            "round {round}: the table holds {full} bytes"
        );
        let workers: Vec<_> = (0..PROCESSES)
            .map(|p| {
                let args = [
                    "gone",
                    &KEYS.to_string(),
                    &PROCESSES.to_string(),
                    &p.to_string(),
                ]
                .map(String::from);
                spawn_worker(backend, "remove-stride", name.as_str(), &args)
            })
            .collect();
        for worker in workers {
            let out = finish(worker);
            assert_eq!(
                field(&out, "removed"),
                KEYS / PROCESSES,
                "round {round}: {out}"
            );
        }
        let emptied = shm_table_bytes(name.as_str());
        assert_eq!(map.len().unwrap(), 0, "round {round}");
        assert_eq!(
            map.tables().generation() / EMPTIED,
            round + 1,
            "round {round}: not given back once"
        );
        assert!(
            emptied <= 64 << 10,
            "round {round}: the table holds {emptied} of {full} bytes"
        );
    }
}

#[test]
fn lockfree_removers_in_four_processes() {
    removers_in_four_processes_give_the_table_back::<
        shmap_backends::Striped<shmap_backends::Seqlock>,
    >("lockfree");
}

#[test]
fn spinlock_removers_in_four_processes() {
    removers_in_four_processes_give_the_table_back::<
        shmap_backends::Striped<shmap_backends::SlotLocks>,
    >("spinlock");
}

#[test]
fn mutex_removers_in_four_processes() {
    removers_in_four_processes_give_the_table_back::<shmap_backends::GlobalMutex>("mutex");
}
