//! Kill tests: worker processes (`kill_worker`) write and read until they are SIGKILLed at
//! random instants, hundreds of times per backend, and are respawned. After each kill the
//! test checks, while the others keep running, that every key the dead worker owned holds the
//! state it acknowledged or the one it had in flight, within the bound; each new worker checks
//! the same from its side, and checks every result it gets. At the end: no torn value, no
//! duplicate key, exact `len`, every acknowledged write present.
//!
//! The mutex backend is not here: a holder that dies leaves its mutex locked for ever, by
//! design of the baseline (see `mutex.rs` and the harness's `--kill-every`).
mod common;

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmap::{MapBackend, MapParams};
use shmap_testkit::acks::{holds, AckFile};
use shmap_testkit::checked;

use common::{Rng, TestName};

const WORKERS: u64 = 3;
const KEYS_PER_WORKER: u64 = 16;
const SHARED_KEYS: u64 = 16;
const KILLS: usize = 300;
/// No operation may take longer, even one that meets a dead process's leftovers.
const BOUND: Duration = Duration::from_secs(2);

fn spawn(backend: &str, name: &str, acks: &PathBuf, partition: u64, seed: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kill_worker"))
        .args([backend, name])
        .arg(acks)
        .args(
            [
                partition,
                KEYS_PER_WORKER,
                SHARED_KEYS,
                BOUND.as_millis() as u64,
                seed,
            ]
            .map(|n| n.to_string()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kill_worker")
}

fn output(child: Child) -> (std::process::ExitStatus, String) {
    let out = child.wait_with_output().expect("wait for worker");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

/// The running workers, one per partition; killed if the test fails half way.
struct Workers(Vec<Option<Child>>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in self.0.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn found<M: MapBackend>(map: &M, id: u64) -> Option<u64> {
    let key = format!("key-{id}");
    let started = Instant::now();
    let value = map.get(key.as_bytes()).expect("get within the bound");
    assert!(
        started.elapsed() < BOUND,
        "a get took {:?}",
        started.elapsed()
    );
    value.map(|v| checked::verify(id, &v).expect("no torn value"))
}

fn check_partition<M: MapBackend>(map: &M, acks: &AckFile, partition: u64, exact: bool) {
    for id in partition * KEYS_PER_WORKER..(partition + 1) * KEYS_PER_WORKER {
        let (pending, acked) = (acks.get(2 + 2 * id as usize), acks.get(3 + 2 * id as usize));
        let now = found(map, id);
        assert!(
            holds(acked, now) || (!exact && holds(pending, now)),
            "key {id} holds {now:?}: acked {acked:#x}, pending {pending:#x}"
        );
    }
}

/// `capacity` 256: the 64 keys fill at most a quarter; 80: often over half, where removes
/// shift entries back and reclaims move them (`compact.rs`), so kills land in moves too.
fn survives_random_kills<M: MapBackend>(backend: &str, capacity: usize) {
    shmap::set_stall_timeout(BOUND);
    let name = TestName::new("kill");
    let params = MapParams {
        capacity,
        max_key_size: 32,
        max_value_size: 512, // long copies: kills often land mid-write
        max_capacity: capacity,
    };
    let map = M::create(name.as_str(), params).unwrap();
    let ack_path = std::env::temp_dir().join(format!("{}.acks", name.as_str()));
    let acks = AckFile::create(&ack_path, 2 + 2 * (WORKERS * KEYS_PER_WORKER) as usize).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()));
    let mut workers = Workers(
        (0..WORKERS)
            .map(|p| {
                Some(spawn(
                    backend,
                    name.as_str(),
                    &ack_path,
                    p,
                    rng.below(u64::MAX),
                ))
            })
            .collect(),
    );
    let (started, mut slowest_check) = (Instant::now(), Duration::ZERO);
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_micros(500 + rng.below(3000)));
        let p = rng.below(WORKERS);
        let mut child = workers.0[p as usize]
            .take()
            .expect("a worker per partition");
        // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.kill(); // no-op if already signalled
        let (status, text) = output(child);
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "worker {p} ended on its own ({status}): {text}"
        );
        let checking = Instant::now();
        check_partition(&map, &acks, p, false);
        slowest_check = slowest_check.max(checking.elapsed());
        workers.0[p as usize] = Some(spawn(
            backend,
            name.as_str(),
            &ack_path,
            p,
            rng.below(u64::MAX),
        ));
    }
    acks.set(0, 1); // stop
    for (p, child) in workers.0.iter_mut().enumerate() {
        let (status, text) = output(child.take().unwrap());
        assert!(status.success(), "worker {p} failed ({status}): {text}");
    }
    let kind: shmap::BackendKind = backend.parse().unwrap();
    // Quiescent now. A dead worker may leave pass counts high, never low
    // (`raw_table/passes.rs`).
    let moves = shmap_backends::with_backend!(kind, S => {
        let attached = S::attach(name.as_str()).unwrap();
        let t = attached.raw_table().unwrap();
        let exact = t.exact_passes().expect("a readable table");
        for (i, &n) in exact.iter().enumerate() {
            let counted = usize::from(t.passes(i));
            assert!(counted >= n.min(255), "bucket {i}: {counted} passes counted, {n} probes pass it");
        }
        t.moves()
    });
    eprintln!(
        "{backend}: {KILLS} kills in {:?}; slowest check of a dead worker's keys \
         {slowest_check:?}; {moves} entries moved",
        started.elapsed()
    );
    if capacity < 128 {
        assert!(
            moves > 0,
            "a dense table where nothing moved: the test tested no moves"
        );
    }
    // Quiescent now: exact state, exact count, no duplicates, nothing torn.
    for p in 0..WORKERS {
        check_partition(&map, &acks, p, true);
    }
    let entries = map.entries().unwrap();
    let mut keys = HashSet::new();
    for (k, v) in &entries {
        let id: u64 = std::str::from_utf8(k).unwrap()[4..].parse().unwrap();
        checked::verify(id, v).expect("no torn value");
        assert!(keys.insert(k.clone()), "key {id} stored twice");
    }
    assert_eq!(
        map.len().unwrap(),
        entries.len(),
        "len is exact after recovery"
    );
    let _ = std::fs::remove_file(ack_path);
}

fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// A holder that died with a stripe lock is taken over at once, even while it is an unreaped
/// zombie and a child it forked still holds every descriptor it inherited (the case a pid
/// check or an inherited lock would get wrong).
fn a_dead_holder_is_taken_over_despite_zombie_and_fork_child<M: MapBackend>(backend: &str) {
    shmap::set_stall_timeout(BOUND);
    let name = TestName::new("dead-holder");
    let map = M::create(name.as_str(), MapParams::with_capacity(64)).unwrap();
    let mut worker = common::spawn_worker(backend, "die-holding", name.as_str(), &["k".into()]);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(worker.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "held");
    let deadline = Instant::now() + BOUND;
    while state_of(worker.id()) != Some('Z') {
        assert!(Instant::now() < deadline, "the holder did not exit");
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    map.insert(b"k", b"v")
        .expect("the dead holder's stripe is taken over");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(200), "takeover took {took:?}");
    eprintln!("{backend}: a dead holder's stripe taken over in {took:?}");
    assert!(worker.wait().unwrap().success());
}

#[test]
fn lockfree_takes_over_a_dead_holder() {
    a_dead_holder_is_taken_over_despite_zombie_and_fork_child::<shmap_backends::LockFreeMap>(
        "lockfree",
    );
}

#[test]
fn spinlock_takes_over_a_dead_holder() {
    a_dead_holder_is_taken_over_despite_zombie_and_fork_child::<shmap_backends::SpinLockMap>(
        "spinlock",
    );
}

#[test]
fn lockfree_survives_random_kills() {
    survives_random_kills::<shmap_backends::LockFreeMap>("lockfree", 256);
}

#[test]
fn lockfree_survives_random_kills_in_a_dense_table() {
    survives_random_kills::<shmap_backends::LockFreeMap>("lockfree", 80);
}

#[test]
fn spinlock_survives_random_kills_in_a_dense_table() {
    survives_random_kills::<shmap_backends::SpinLockMap>("spinlock", 80);
}

#[test]
fn spinlock_survives_random_kills() {
    survives_random_kills::<shmap_backends::SpinLockMap>("spinlock", 256);
}
