//! Compaction (`compact.rs`): churn does not lengthen the probes of present keys, readers of
//! keys present throughout never miss one while entries move under them, and a compactor
//! killed at any point leaves every key exactly once.
mod common;

use std::collections::HashSet;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmap::{MapBackend, MapOps, MapParams, Meta, SlotState};
use shmap_backends::{LockFreeMap, SharedMap};
use shmap_testkit::checked::{self, SplitMix};

use common::{finish, spawn_worker, TestName};

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

fn fixed(capacity: usize) -> MapParams {
    MapParams {
        capacity,
        max_key_size: 16,
        max_value_size: 32,
        max_capacity: capacity,
    }
}

/// Mean probe (buckets visited to reach a present key) of a quiescent map.
fn mean_probe(map: &SharedMap<impl shmap_backends::Protocol>) -> f64 {
    let t = map.raw_table().unwrap();
    let (mut sum, mut n, mut k) = (0, 0, Vec::new());
    for i in 0..t.capacity() {
        // Relaxed: nothing else runs.
        if Meta(t.meta(i).load(Ordering::Relaxed)).state() == Some(SlotState::Full) {
            t.read_key(i, &mut k);
            sum += (i + t.capacity() - t.hash(&k).home) % t.capacity() + 1;
            n += 1;
        }
    }
    sum as f64 / n as f64
}

/// Issue 13: during churn of 50x the capacity (remove a random present key, insert a new
/// one), checked every 1/4 capacity of churn, the mean probe of present keys stays close to
/// a table freshly built with the same keys. Below half live nothing moves (the moves cost
/// more than they save there, `reclaim.rs`). From half live up, removes shift entries back.
///
/// Each map hashes with a seed of its own, and one table's mean probe at 3/4 full varies by
/// a tenth from seed to seed (linear probing's clusters). So the churned side is two maps
/// with the same keys, their mean probes averaged, as the fresh side is three: with one
/// churned map the worst of 200 checks reached 1.52x at 3/4 about once in 50 runs.
///
/// The worst ratio in 32 runs of this test, and in 3 with removes not shifting back (the
/// reclaim's moves alone), which the bounds must catch:
///
/// | live | 3/8 | 1/2 | 5/8 | 3/4 |
/// |---|---:|---:|---:|---:|
/// | as built | 1.38-1.43 | 1.04-1.10 | 1.06-1.13 | 1.12-1.27 |
/// | no shift back | 1.40-1.41 | 1.34-1.35 | 1.52-1.54 | 1.50-1.56 |
/// | bound | 1.6 | 1.25 | 1.35 | 1.45 |
#[test]
fn present_key_probes_stay_close_to_a_fresh_tables() {
    const CAPACITY: usize = 4096;
    for (load, bound) in [(0.375, 1.6), (0.5, 1.25), (0.625, 1.35), (0.75, 1.45)] {
        let live = (CAPACITY as f64 * load) as u64;
        let names = [
            TestName::new("compact-probe"),
            TestName::new("compact-probe"),
        ];
        let maps = names
            .each_ref()
            .map(|n| LockFreeMap::create(n.as_str(), fixed(CAPACITY)).unwrap());
        let mut present: Vec<u64> = (0..live).collect();
        for map in &maps {
            for &k in &present {
                map.insert(&key(k), b"v").unwrap();
            }
        }
        let (mut rng, mut next, mut worst) = (SplitMix(7), live, 0f64);
        for step in 1..=50 * CAPACITY {
            let at = rng.below(live as usize);
            for map in &maps {
                assert!(map.remove(&key(present[at])).unwrap());
                map.insert(&key(next), b"v").unwrap();
            }
            present[at] = next;
            next += 1;
            if step % (CAPACITY / 4) == 0 {
                let fresh: f64 = (0..3)
                    .map(|_| {
                        let name = TestName::new("compact-fresh");
                        let fresh = LockFreeMap::create(name.as_str(), fixed(CAPACITY)).unwrap();
                        for &k in &present {
                            fresh.insert(&key(k), b"v").unwrap();
                        }
                        mean_probe(&fresh)
                    })
                    .sum::<f64>()
                    / 3.0;
                let churned = maps.iter().map(mean_probe).sum::<f64>() / maps.len() as f64;
                worst = worst.max(churned / fresh);
            }
        }
        eprintln!("load {load}: worst mean-probe ratio to a fresh table {worst:.2}");
        assert!(
            worst <= bound,
            "load {load}: {worst:.2}x a fresh table's probes"
        );
    }
}

/// Readers in other processes of keys present throughout (each behind tombstones) never miss
/// one or see it torn while churners make reclaims move entries under them.
fn readers_never_miss_a_moving_key<P: shmap_backends::Protocol>(backend: &str) {
    const STABLE: u64 = 520; // over half of the table: compaction runs
                             // Fillers and stable keys stay under 7/8 of the table, where one that cannot grow stops
                             // taking new keys.
    const FILLERS: u64 = 360;
    let name = TestName::new("compact-readers");
    let map = SharedMap::<P>::create(name.as_str(), fixed(1024)).unwrap();
    // Fillers before most stable keys, then removed: those sit behind tombstones to move to.
    for id in 0..STABLE {
        if id < FILLERS {
            map.insert(format!("filler-{id}").as_bytes(), b"x").unwrap();
        }
        map.insert(&key(id), &checked::make(id, 0, 16)).unwrap();
    }
    for id in 0..FILLERS {
        assert!(map.remove(format!("filler-{id}").as_bytes()).unwrap());
    }
    let s = |v: u64| v.to_string();
    let mut workers = Vec::new();
    for r in 0..2 {
        workers.push(spawn_worker(
            backend,
            "read",
            name.as_str(),
            &[s(STABLE), s(1500)],
        ));
        workers.push(spawn_worker(
            backend,
            "churn",
            name.as_str(),
            &[format!("c{r}"), s(60), s(400)],
        ));
    }
    for w in workers {
        finish(w);
    }
    let moves = map.raw_table().unwrap().moves();
    assert!(moves > 0, "no entry moved: the test did not test moves");
    assert_eq!(map.len().unwrap(), STABLE as usize);
    eprintln!("{backend}: {moves} entries moved under the readers");
}

#[test]
fn lockfree_readers_never_miss_a_moving_key() {
    readers_never_miss_a_moving_key::<shmap_backends::Striped<shmap_backends::Seqlock>>("lockfree");
}

#[test]
fn spinlock_readers_never_miss_a_moving_key() {
    readers_never_miss_a_moving_key::<shmap_backends::Striped<shmap_backends::SlotLocks>>(
        "spinlock",
    );
}

/// A compactor SIGKILLed at spread-out points of its pass: every key is there exactly once
/// and whole, `len` is exact, and the next compaction finishes the job.
fn a_compactor_killed_anywhere<P: shmap_backends::Protocol>(backend: &str) {
    const CAPACITY: usize = 1 << 16;
    const KEYS: u64 = 52_000;
    let build = |name: &TestName, round: u64| {
        let map = SharedMap::<P>::create(name.as_str(), fixed(CAPACITY)).unwrap();
        for id in 0..KEYS {
            map.insert(&key(id), &checked::make(id, 1, 16)).unwrap();
        }
        let mut rng = SplitMix(round + 1);
        let mut present: HashSet<u64> = (0..KEYS).collect();
        // Removes in a table marked sparse leave their tombstones (a dense one's removes
        // shift entries back at once): the pass below has moves to make.
        map.raw_table().unwrap().note_live(0);
        for _ in 0..16_000 {
            let id = rng.below(KEYS as usize) as u64;
            if present.remove(&id) {
                assert!(map.remove(&key(id)).unwrap());
            }
        }
        (map, present)
    };
    // How long one pass over such a table takes here, to spread the kills over it.
    let name = TestName::new("compact-kill");
    let (map, _) = build(&name, 0);
    let t = Instant::now();
    let done = map.reclaim_tombstones().unwrap().unwrap();
    let pass = t.elapsed();
    assert!(done.moved > 1000, "{done:?}");
    map.unlink().unwrap();
    drop(map);
    let mut mid_pass = 0;
    for round in 0..12u64 {
        let name = TestName::new("compact-kill");
        let (map, present) = build(&name, round);
        let mut child = Command::new(env!("CARGO_BIN_EXE_stress_worker"))
            .args([backend, "compact", name.as_str()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "compacting");
        std::thread::sleep(pass * round as u32 / 8);
        let _ = child.kill();
        child.wait().unwrap();
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        let moves = map.raw_table().unwrap().moves();
        if moves > 0 && !rest.contains("compacted") {
            mid_pass += 1;
        }
        let check = |when: &str| {
            assert_eq!(map.len().unwrap(), present.len(), "{when}, round {round}");
            let entries = map.entries().unwrap();
            let keys: HashSet<&[u8]> = entries.iter().map(|(k, _)| k.as_slice()).collect();
            assert_eq!(keys.len(), entries.len(), "{when}: a key stored twice");
            assert_eq!(entries.len(), present.len(), "{when}");
            for &id in &present {
                let v = map.get(&key(id)).unwrap().expect("present");
                checked::verify(id, &v).unwrap();
            }
        };
        check("after the kill");
        let t = Instant::now();
        map.reclaim_tombstones()
            .unwrap()
            .expect("no live writer holds a lock");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        check("after the next compaction");
        map.unlink().unwrap();
    }
    eprintln!(
        "{backend}: a pass {pass:?}; {mid_pass} of 12 kills landed after moves began, \
         before the pass ended"
    );
    assert!(mid_pass >= 1, "no kill landed mid-pass");
}

#[test]
fn lockfree_compactor_killed_anywhere() {
    a_compactor_killed_anywhere::<shmap_backends::Striped<shmap_backends::Seqlock>>("lockfree");
}

#[test]
fn spinlock_compactor_killed_anywhere() {
    a_compactor_killed_anywhere::<shmap_backends::Striped<shmap_backends::SlotLocks>>("spinlock");
}

/// Scans under a churn that keeps reclaims moving entries: each lists every stable key once
/// (a scan spoiled twice by moves holds the writer locks for its third try).
#[test]
fn scans_finish_and_list_every_stable_key_once_under_moves() {
    const STABLE: u64 = 300;
    let name = TestName::new("compact-scan");
    let map = std::sync::Arc::new(LockFreeMap::create(name.as_str(), fixed(512)).unwrap());
    for id in 0..STABLE {
        map.insert(&key(id), &checked::make(id, 0, 16)).unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churner = {
        let (map, stop) = (map.clone(), stop.clone());
        std::thread::spawn(move || {
            // New keys, each removed 64 inserts later: EMPTY slots get used, reclaims run.
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                map.insert(format!("churn-{n}").as_bytes(), b"c").unwrap();
                if n >= 64 {
                    assert!(map.remove(format!("churn-{}", n - 64).as_bytes()).unwrap());
                }
                n += 1;
            }
        })
    };
    let started = Instant::now();
    for _ in 0..300 {
        let entries = map.entries().unwrap();
        let keys: HashSet<&[u8]> = entries.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys.len(), entries.len(), "a key listed twice");
        for id in 0..STABLE {
            assert!(keys.contains(key(id).as_slice()), "stable key {id} missing");
        }
    }
    stop.store(true, Ordering::Relaxed);
    churner.join().unwrap();
    assert!(
        map.raw_table().unwrap().moves() > 0,
        "nothing moved: the test tested nothing"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
