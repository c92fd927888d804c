//! The heap under processes that are SIGKILLed at random instants (issue 32, step 2): three
//! `heap_worker`s allocate, stamp, check and free records of many sizes in one heap file,
//! and one of them is killed every few milliseconds (possibly while it holds the heap lock,
//! makes a run or grows the file) and replaced. No block is ever held by two processes (a
//! worker's stamps would be overwritten), no operation meets a corrupt heap, and the heap
//! stays usable; what the dead held stays allocated (the file's growth is bounded by what
//! they held) until a rebuild from the live records gives it back. And writers of a map
//! killed while they write large values leave nothing held; writers killed under churn leak
//! almost nothing (their magazines come back from the heap).
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmap::heap::{Heap, DEFAULT_RESERVE};
use shmap::Location;

use common::Rng;

const WORKERS: usize = 3;
const KILLS: usize = 150;

struct Name(String);

impl Drop for Name {
    fn drop(&mut self) {
        let _ = Location::Shm(self.0.clone()).unlink_one();
    }
}

fn spawn(name: &str, id: u64, seconds: f64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_heap_worker"))
        .args([name, &id.to_string(), &seconds.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn heap_worker")
}

/// What a worker printed; panics on a violation (a killed worker may have printed nothing).
fn reap(child: Child, killed: bool) -> String {
    let out = child.wait_with_output().expect("wait for heap_worker");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !stdout.contains("VIOLATION"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !killed {
        assert!(
            out.status.success(),
            "{:?}: {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
}

#[test]
fn workers_killed_at_random_never_share_a_block_or_corrupt_the_heap() {
    let name = Name(format!("shmap-heapkill-{}", std::process::id()));
    let location = Location::Shm(name.0.clone());
    let heap = Heap::create(&location, DEFAULT_RESERVE).unwrap();
    let mut rng = Rng(0x5EED ^ u64::from(std::process::id()));
    let mut next_id = 1u64;
    let mut live: Vec<Child> = (0..WORKERS)
        .map(|_| {
            next_id += 1;
            spawn(&name.0, next_id, 60.0)
        })
        .collect();
    let start = Instant::now();
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(2 + rng.below(15)));
        let i = rng.below(WORKERS as u64) as usize;
        let mut victim = live.swap_remove(i);
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        unsafe { libc::kill(victim.id() as i32, libc::SIGKILL) };
        victim.wait().expect("reap the killed worker");
        reap(victim, true);
        next_id += 1;
        live.push(spawn(&name.0, next_id, 60.0));
    }
    // The survivors and a last round that ends by itself: every check they make passes.
    for mut child in live {
        // SAFETY: as above.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        reap(child, true);
    }
    let finishers: Vec<Child> = (0..WORKERS)
        .map(|_| {
            next_id += 1;
            spawn(&name.0, next_id, 0.5)
        })
        .collect();
    for child in finishers {
        let out = reap(child, false);
        assert!(out.contains("ok ops="), "{out}");
    }
    // Still usable from here, and grown only by what the dead held (at most 48 blocks each,
    // none over 133 KB; runs of many classes are part of it).
    let at = heap.alloc(100).unwrap();
    heap.free(at, 100).unwrap();
    let held = heap.resident_bytes().unwrap();
    let bound = (KILLS + WORKERS) as u64 * 48 * 4096 + (KILLS as u64) * 140_000 + (64 << 20);
    assert!(held < bound, "{held} bytes held after {KILLS} kills");
    // The recovery: nothing is referenced (no process lives), so the rebuild frees what the
    // dead held and punches every run, and the free space merges and lowers the top.
    let rebuilt = heap.rebuild([]).unwrap();
    let after = heap.resident_bytes().unwrap();
    eprintln!(
        "{KILLS} kills in {:.1} s; the heap held {:.1} MiB, {:.2} MiB after the rebuild ({rebuilt:?})",
        start.elapsed().as_secs_f64(),
        held as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64,
    );
    assert!(after <= 1 << 20, "{after} bytes held after the rebuild");
    let at = heap.alloc(100).unwrap();
    heap.free(at, 100).unwrap();
}

/// Issue 32 item 6: a writer killed while it reserves or copies a large value leaks nothing.
/// Its journal names the new block as soon as the block has its lengths and key, before the
/// kernel zeroes the rest of its pages and before the value is copied, so the repair of the
/// dead writer frees it. (Before, every kill in those steps left the block's pages held until
/// `unlink`: up to 64 MiB each here.)
#[test]
fn writers_killed_while_they_write_large_values_leak_nothing() {
    use std::io::BufRead;

    use shmap::{MapBackend, MapOps, MapParams};
    use shmap_backends::LockFreeMap;

    const MIB: usize = 64;
    const BIG_KILLS: usize = 8;
    let name = common::TestName::new("bigkill");
    let params = MapParams::default().without_size_limits();
    let map = LockFreeMap::create(name.as_str(), params).unwrap();
    let heap = map.raw_table().unwrap().heap().clone();
    let mut rng = Rng(0xB16 ^ u64::from(std::process::id()));
    for round in 0..BIG_KILLS {
        let args = ["big".to_string(), MIB.to_string()];
        let mut child = common::spawn_worker("lockfree", "big", name.as_str(), &args);
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "writing", "round {round}");
        if round == BIG_KILLS - 1 {
            // One write finishes for sure (on a loaded machine every kill could land in the
            // first write): what it left must be live after the recovery.
            line.clear();
            out.read_line(&mut line).unwrap();
            assert!(line.starts_with("wrote"), "round {round}: {line:?}");
        }
        // An insert of 64 MiB takes tens of milliseconds, most of them zeroing and copying.
        std::thread::sleep(Duration::from_millis(10 + rng.below(120)));
        common::kill_and_reap(&mut child, &format!("round {round}: the writer"));
    }
    map.recover_dead().unwrap();
    // What the last whole write left is live: removed, its pages go back too.
    let last = map.get(b"big").unwrap().map(|v| (v.len(), v[0]));
    assert!(
        last.is_some_and(|(len, _)| len == MIB << 20),
        "no write finished: {last:?}"
    );
    assert!(map.remove(b"big").unwrap());
    let held = heap.resident_bytes().unwrap();
    eprintln!(
        "{BIG_KILLS} writers of {MIB} MiB values killed: the heap holds {:.1} MiB",
        held as f64 / (1 << 20) as f64
    );
    assert!(
        held < (MIB as u64) << 19,
        "{held} bytes held after {BIG_KILLS} kills: a killed writer's block leaked"
    );
}

/// Issue 32 item 6: after 300 writers are killed at random under churn (values log-uniform
/// from 16 B to 16 KiB, updates that change an entry's size, removes) and a recovery, no
/// block is leaked, and a compaction gives back the runs the churn left sparse, to within
/// 1.2x of a fresh map's pages (the 1.1x is printed: met in most runs, below).
/// What a killed writer had
/// in hand comes back: its journal's records (by the repair), its magazines (their area is
/// drained by the next process to claim one, or the trim), and the blocks it held that
/// nothing names (by the sweep that follows).
#[test]
fn writers_killed_under_churn_leak_nothing_and_sparse_runs_come_back() {
    use shmap::{MapBackend, MapOps, MapParams};
    use shmap_backends::LockFreeMap;

    const KEYS: u64 = 3_000;
    const CHURN_KILLS: usize = 300;
    const CHURNERS: usize = 2;
    let params = MapParams::default().without_size_limits();
    let name = common::TestName::new("churnkill");
    let map = LockFreeMap::create(name.as_str(), params).unwrap();
    let mut rng = Rng(0xC4u64 << 32 ^ u64::from(std::process::id()));
    let mut seed = 0u64;
    let mut spawn = |rng: &mut Rng| {
        seed += 1;
        let args = [
            KEYS.to_string(),
            (seed ^ rng.below(1 << 30)).to_string(),
            "100000000".into(),
        ];
        common::spawn_worker("lockfree", "churn-sized", name.as_str(), &args)
    };
    let mut live: Vec<Child> = (0..CHURNERS).map(|_| spawn(&mut rng)).collect();
    let start = Instant::now();
    for _ in 0..CHURN_KILLS {
        std::thread::sleep(Duration::from_millis(5 + rng.below(25)));
        let mut victim = live.swap_remove(rng.below(CHURNERS as u64) as usize);
        common::kill_and_reap(&mut victim, "a churner");
        live.push(spawn(&mut rng));
    }
    for mut child in live {
        let _ = child.kill();
        child.wait().unwrap();
    }
    let churned = start.elapsed();
    // The recovery: repairs of the dead writers, then a trim (which drains the magazine
    // areas of the dead and gives back the runs nothing lives in).
    map.recover_dead().unwrap();
    map.trim().unwrap();
    // Writers swept as they went: a writer that took over a stripe a killed one held repaired
    // it, and a sweep followed (142 in 300 kills; a kill between operations costs none).
    let table = map.raw_table().unwrap();
    let (auto_sweeps, auto_compactions) = (table.heap().sweeps(), table.heap().compactions());
    // And one more now, after the last kills, as the next writer would make it.
    let swept = map.sweep_heap().unwrap().expect("it waits");
    let swept_held = shmap_testkit::shm_bytes_held(name.as_str());
    // And a compaction: the records of runs the churn left sparse move into fuller ones.
    let compacted = map.compact_heap().unwrap().expect("it waits");
    let held = shmap_testkit::shm_bytes_held(name.as_str());
    eprintln!(
        "{auto_compactions} compactions on the way; after the sweep {:.2} MiB; a compaction \
         moved {} records out of {} runs: {:.2} MiB",
        swept_held as f64 / (1 << 20) as f64,
        compacted.moved,
        compacted.runs,
        held as f64 / (1 << 20) as f64
    );
    // What is still leaked: the blocks still allocated that no live record is, as a rebuild
    // from the records the table names finds them (the mark and sweep a file map's first
    // open makes; every other handle is gone). Our handle goes too: the repair of the dead
    // freed records through it, so it holds a magazine area, which the rebuild would count.
    drop(map);
    let map = LockFreeMap::attach(name.as_str()).unwrap();
    let table = map.raw_table().unwrap();
    let live = common::live_records(table);
    let live_bytes: u64 = live.iter().map(|&(_, b)| b as u64).sum();
    let rebuilt = table.heap().rebuild(live).unwrap();

    let fresh_name = common::TestName::new("churnkill-fresh");
    let fresh = LockFreeMap::create(fresh_name.as_str(), params).unwrap();
    let mut entries = 0;
    for id in 0..KEYS {
        let k = format!("key-{id:08}");
        if let Some(v) = map.get(k.as_bytes()).unwrap() {
            shmap_testkit::checked::verify(id, &v).unwrap();
            fresh.insert(k.as_bytes(), &v).unwrap();
            entries += 1;
        }
    }
    assert_eq!(map.len().unwrap(), entries);
    let fresh_held = shmap_testkit::shm_bytes_held(fresh_name.as_str());
    let ratio = held as f64 / fresh_held as f64;
    census_side_by_side(
        &table.heap().census().unwrap(),
        &fresh.raw_table().unwrap().heap().census().unwrap(),
    );
    let leaked = rebuilt.leaked_bytes as f64 / live_bytes as f64;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "{CHURN_KILLS} kills in {:.1} s; {auto_sweeps} sweeps on the way, the last found {} \
         blocks, {:.2} MiB; {entries} entries of {:.2} MiB; still leaked {} blocks, {:.2} \
         MiB ({:.1}% of the live bytes); the map held {:.2} MiB, a fresh map {:.2} MiB: {ratio:.3}x",
        churned.as_secs_f64(),
        swept.leaked,
        mib(swept.leaked_bytes),
        mib(live_bytes),
        rebuilt.leaked,
        mib(rebuilt.leaked_bytes),
        100.0 * leaked,
        mib(held),
        mib(fresh_held),
    );
    // Before the sweep: 2-10 blocks (0.2-0.8% of the live bytes) in 4 runs, kills between
    // the heap's taking a block and the journal's naming it, or in a trim. With a dead
    // process's magazines forgotten, as they were before they lay in the heap: 124,831
    // blocks, 97 MiB (19x the live bytes).
    assert!(auto_sweeps > 0, "no writer swept after a kill");
    assert_eq!(
        (rebuilt.leaked, rebuilt.leaked_bytes),
        (0, 0),
        "after {CHURN_KILLS} kills, a recovery and a sweep, blocks no record names ({:.2}% of \
         the live bytes)",
        100.0 * leaked
    );
    // The compaction emptied runs, and gave back more than it took.
    assert!(compacted.runs > 0 && compacted.moved > 0, "{compacted:?}");
    assert!(
        held <= swept_held,
        "{swept_held} bytes before the compaction, {held} after"
    );
    // Against a fresh map with the same entries: 1.073-1.102x in six runs since a large
    // run's free-list links lie in its header page (`results/2026-12-07-epyc-2cpu/
    // heap-census.md`), so the 1.1x held in five; 1.070-1.086x in four more. Before: 1.12-1.14x (free blocks
    // of 4 KiB and more kept their link's page), 1.17-1.29x (large runs not compacted), and
    // 1.44-1.50x or 3x (pages above the heap's top not punched). The bound catches the
    // last and most of the second (a Xeon measured 1.10-1.20x at that commit: room for
    // another machine), not the first.
    assert!(
        ratio <= 1.2,
        "the map holds {ratio:.3}x a fresh map's pages after the churn, recovery and compaction"
    );
}

/// A sweep stops every writer for a walk of the whole heap (0.45-0.5 s at 10M entries), so it
/// runs only when a process may have leaked: one that died holding a writer lock (whose
/// repair asks for it) or the heap lock. A process gone between operations (here by `exit`
/// without dropping its handle, as a forked Python worker's `os._exit` does) had only its
/// magazines in hand, and the drain of its area gives them back: no sweep, and no block
/// leaked. Before, each such exit cost the writers a sweep (~46 ms at 1M entries).
#[test]
fn only_a_death_under_a_lock_makes_writers_sweep() {
    use shmap::{MapBackend, MapOps, MapParams};
    use shmap_backends::LockFreeMap;

    const EXITS: u64 = 3;
    let name = common::TestName::new("sweepwhen");
    let params = MapParams::default().without_size_limits();
    let map = LockFreeMap::create(name.as_str(), params).unwrap();
    for seed in 0..EXITS {
        let args = ["500".into(), seed.to_string(), "2000".into()];
        let out = common::finish(common::spawn_worker(
            "lockfree",
            "churn-exit",
            name.as_str(),
            &args,
        ));
        assert_eq!(common::field(&out, "ops"), 2000, "{out}");
    }
    // Each worker drained the area of the one before as it claimed its own; ours drains the
    // last (a trim would too).
    let sweeps = |m: &LockFreeMap| m.raw_table().unwrap().heap().sweeps();
    let heap_due = |m: &LockFreeMap| m.raw_table().unwrap().heap().sweep_due();
    assert_eq!(
        map.raw_table().unwrap().heap().recover_magazines().unwrap(),
        1
    );
    for i in 0..100u32 {
        map.insert(format!("mine-{i}").as_bytes(), &[7; 100])
            .unwrap();
    }
    assert_eq!(
        (sweeps(&map), heap_due(&map)),
        (0, false),
        "{EXITS} workers that exited between operations made writers sweep"
    );

    // A writer that dies holding its stripe: the writer that takes the stripe over repairs
    // it, and sweeps after its write. Then again with another process started in between,
    // which may take the dead one's registry record (and repair it) before anyone takes the
    // stripe: the stripe's taker must ask for the sweep all the same.
    let die_holding = |k: &str| {
        let mut holder =
            common::spawn_worker("lockfree", "die-holding", name.as_str(), &[k.into()]);
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "held");
        assert!(holder.wait().unwrap().success());
    };
    die_holding("k");
    map.insert(b"k", b"v").unwrap();
    assert_eq!(
        (sweeps(&map), heap_due(&map)),
        (1, false),
        "a stripe taken over from a dead holder: one sweep"
    );
    die_holding("k2");
    let args = ["1".into(), "99".into(), "1".into()];
    common::finish(common::spawn_worker(
        "lockfree",
        "churn-exit",
        name.as_str(),
        &args,
    ));
    map.insert(b"k2", b"v").unwrap();
    assert_eq!(
        (sweeps(&map), heap_due(&map)),
        (2, false),
        "a stripe taken over after its dead holder's record was reused: one sweep more"
    );

    // Nothing was leaked without the sweeps: a rebuild from the records the table names
    // (every other handle gone; ours drops its area) finds every block accounted for.
    drop(map);
    let map = LockFreeMap::attach(name.as_str()).unwrap();
    let table = map.raw_table().unwrap();
    let live = common::live_records(table);
    let rebuilt = table.heap().rebuild(live).unwrap();
    assert_eq!(
        (rebuilt.leaked, rebuilt.leaked_bytes),
        (0, 0),
        "{rebuilt:?}"
    );
}

/// Prints where two heaps' resident bytes are, side by side (KiB): the churned map's and a
/// fresh one's with the same records.
fn census_side_by_side(churned: &shmap::heap::Census, fresh: &shmap::heap::Census) {
    let kib = |b: u64| b / 1024;
    let mut sizes: Vec<usize> = churned
        .classes
        .iter()
        .chain(&fresh.classes)
        .map(|&(b, _)| b)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let of = |c: &shmap::heap::Census, b: usize| {
        c.classes
            .iter()
            .find(|&&(s, _)| s == b)
            .map_or(Default::default(), |&(_, share)| share)
    };
    eprintln!("where the heap's pages are, KiB (runs): churned | fresh");
    for b in sizes {
        let (c, f) = (of(churned, b), of(fresh, b));
        if c != f {
            eprintln!(
                "  blocks of {b:>6} B: {:>6} ({:>3}) | {:>6} ({:>3})",
                kib(c.resident),
                c.runs,
                kib(f.resident),
                f.runs
            );
        }
    }
    for (what, c, f) in [
        ("large records", churned.large, fresh.large),
        ("free extents", churned.free_extents, fresh.free_extents),
    ] {
        eprintln!(
            "  {what}: {:>6} ({:>3}) | {:>6} ({:>3})",
            kib(c.resident),
            c.runs,
            kib(f.resident),
            f.runs
        );
    }
    eprintln!(
        "  header and areas: {} | {}; above the top: {} | {}; reserved, never written: {} | {}; \
         total: {} | {}",
        kib(churned.header),
        kib(fresh.header),
        kib(churned.above_top),
        kib(fresh.above_top),
        kib(churned.unwritten),
        kib(fresh.unwritten),
        kib(churned.total),
        kib(fresh.total)
    );
}
