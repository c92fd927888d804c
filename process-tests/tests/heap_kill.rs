//! The heap under processes that are SIGKILLed at random instants (issue 32, step 2): three
//! `heap_worker`s allocate, stamp, check and free records of many sizes in one heap file,
//! and one of them is killed every few milliseconds (possibly while it holds the heap lock,
//! makes a run or grows the file) and replaced. No block is ever held by two processes (a
//! worker's stamps would be overwritten), no operation meets a corrupt heap, and the heap
//! stays usable; what the dead held stays allocated (the file's growth is bounded by what
//! they held) until a rebuild from the live records gives it back. And writers of a map
//! killed while they write large values leave nothing held.
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
        // An insert of 64 MiB takes tens of milliseconds, most of them zeroing and copying.
        std::thread::sleep(Duration::from_millis(10 + rng.below(120)));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "round {round}: the writer stopped by itself: {err}"
        );
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
