//! A worker process for the multi-process tests: each role attaches to a map by name, hammers
//! it, checks every value it reads, and exits non-zero with a `VIOLATION` line on the first
//! broken invariant. Tests spawn it as a real OS process (not a thread, not a fork of the
//! multi-threaded test runner).
//!
//! Usage: `stress_worker <backend> <role> <map-name> [role args]`; a map name starting with
//! `/` is the path of a file-backed map.
//! - `update <keys> <writer-id> <rounds>`: rewrites keys `0..keys` with self-checking values.
//! - `read <keys> <millis>`: reads keys `0..keys`; every one must be present and whole.
//! - `insert-same <keys>`: inserts keys `0..keys`; prints how many were new.
//! - `churn <prefix> <keys> <rounds>`: inserts its own keys (reading each back), then removes
//!   them, round after round.
//! - `incr <key> <times>`: adds 1 to the little-endian u64 at `key` (absent: 0), `times`
//!   times, each an atomic `update`.
//! - `flip <prefix> <keys> <millis>`: removes and re-inserts each of its own (present) keys,
//!   over and over, so keys move between slots while others scan.
//! - `fill <prefix> <keys>`: inserts its own keys `prefix-0 ..`, in order (each must be new),
//!   then reads every one back; killed half way, what it inserted is a prefix of its keys.
//! - `big <key> <mib>`: prints `writing`, then writes a value of `mib` MiB to `key` over and
//!   over, 1,000 times, printing `wrote N` after each (tests kill it in the middle of one:
//!   reserving, copying, publishing).
//! - `churn-sized <keys> <seed> <ops>`: `ops` random writes to the shared keys `0..keys`:
//!   a quarter removes, the rest inserts of values log-uniform from 16 B to 16 KiB (so an
//!   update changes an entry's size and class), each key read back and checked.
//! - `churn-exit <keys> <seed> <ops>`: `churn-sized`, then exits without dropping the map
//!   (as a forked Python worker's `os._exit` does): its magazines hold blocks, no lock held.
//! - `compact` (lockfree, spinlock): prints `compacting`, then reclaims tombstones (moving
//!   entries back first: `compact.rs`) and prints `compacted`.
//! - `compact-heap <first> <keys> <seed>` (lockfree): round after round, inserts its keys
//!   `first..first + keys` (values of 100-300 B), removes nine in ten, and compacts the heap
//!   (`SharedMap::compact_heap`), printing `compacted <records moved>`, until killed.
//! - `clear-loop` (lockfree, spinlock): clears the map over and over, printing `clearing`
//!   before each and `cleared <n>` after, until killed.
//! - `grow` (lockfree, spinlock): prints `growing`, then doubles the table (for tests that
//!   kill it at a chosen point of the resize).
//! - `die-holding <key>` (lockfree, spinlock): takes the stripe lock of `key`, forks a child
//!   that sleeps 10 s with every inherited descriptor, prints `held`, and exits without
//!   releasing the lock: a dead holder whose fork child lives on.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmap_backends::shmap::{BackendKind, Inserted, Location, MapBackend, MapOps, Update};
use shmap_backends::{with_backend, Protocol, Seqlock, SharedMap, SlotLocks, Striped};
use shmap_testkit::checked;

/// The key bytes of key number `id` in the shared key space.
fn key(id: u64) -> Vec<u8> {
    format!("key-{id:08}").into_bytes()
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    args.get(i)
        .ok_or_else(|| format!("missing argument {what}"))?
        .parse()
        .map_err(|_| format!("bad argument {what}: {:?}", args[i]))
}

fn run<M: MapBackend>(role: &str, name: &str, args: &[String]) -> Result<String, String> {
    // A name starting with '/' is a file-backed map's path.
    let location = if name.starts_with('/') {
        Location::File(name.into())
    } else {
        Location::Shm(name.to_owned())
    };
    let map = M::attach_in(&location, Default::default()).map_err(|e| format!("attach: {e}"))?;
    let max_value = map.params().max_value_size;
    match role {
        "update" => {
            let (keys, writer, rounds): (u64, u64, u64) = (
                arg(args, 0, "keys")?,
                arg(args, 1, "writer-id")?,
                arg(args, 2, "rounds")?,
            );
            for round in 0..rounds {
                for id in 0..keys {
                    let stamp = writer << 48 | round << 16 | id;
                    // Vary the length so length words are exercised as well as contents.
                    let len = checked::MIN_LEN
                        + (stamp as usize * 7) % (max_value - checked::MIN_LEN + 1);
                    map.insert(&key(id), &checked::make(id, stamp, len))
                        .map_err(|e| format!("insert: {e}"))?;
                }
            }
            Ok(format!("updates={}", keys * rounds))
        }
        "read" => {
            let (keys, millis): (u64, u64) = (arg(args, 0, "keys")?, arg(args, 1, "millis")?);
            let deadline = Instant::now() + Duration::from_millis(millis);
            let (mut reads, mut buf) = (0u64, Vec::new());
            while Instant::now() < deadline {
                for id in 0..keys {
                    if !map
                        .get_into(&key(id), &mut buf)
                        .map_err(|e| format!("get: {e}"))?
                    {
                        return Err(format!("VIOLATION key {id} reported missing"));
                    }
                    checked::verify(id, &buf).map_err(|e| format!("VIOLATION {e}"))?;
                    reads += 1;
                }
            }
            Ok(format!("reads={reads}"))
        }
        "insert-same" => {
            let keys: u64 = arg(args, 0, "keys")?;
            let mut new = 0;
            for id in 0..keys {
                let value = checked::make(id, std::process::id() as u64, checked::MIN_LEN);
                if map
                    .insert(&key(id), &value)
                    .map_err(|e| format!("insert: {e}"))?
                    == Inserted::New
                {
                    new += 1;
                }
            }
            Ok(format!("new={new}"))
        }
        "fill" => {
            let (prefix, keys): (String, u64) = (arg(args, 0, "prefix")?, arg(args, 1, "keys")?);
            let k = |id: u64| format!("{prefix}-{id}").into_bytes();
            for id in 0..keys {
                let value = checked::make(id, id, checked::MIN_LEN + id as usize % 8);
                match map.insert(&k(id), &value) {
                    Ok(Inserted::New) => {}
                    Ok(Inserted::Replaced) => {
                        return Err(format!("VIOLATION {prefix}-{id} was already there"))
                    }
                    Err(e) => return Err(format!("insert {prefix}-{id}: {e}")),
                }
            }
            let mut buf = Vec::new();
            for id in 0..keys {
                if !map
                    .get_into(&k(id), &mut buf)
                    .map_err(|e| format!("get: {e}"))?
                {
                    return Err(format!("VIOLATION own key {prefix}-{id} missing"));
                }
                checked::verify(id, &buf).map_err(|e| format!("VIOLATION {e}"))?;
            }
            Ok(format!("filled={keys}"))
        }
        "remove-stride" => {
            // Removes `prefix-id` for every id below `keys` that is `offset` modulo `stride`.
            let (prefix, keys, stride, offset): (String, u64, u64, u64) = (
                arg(args, 0, "prefix")?,
                arg(args, 1, "keys")?,
                arg(args, 2, "stride")?,
                arg(args, 3, "offset")?,
            );
            let mut removed = 0;
            for id in (offset..keys).step_by(stride.max(1) as usize) {
                let k = format!("{prefix}-{id}").into_bytes();
                if !map.remove(&k).map_err(|e| format!("remove: {e}"))? {
                    return Err(format!("VIOLATION {prefix}-{id} missing before its remove"));
                }
                removed += 1;
            }
            Ok(format!("removed={removed}"))
        }
        "churn" => {
            let (prefix, keys, rounds): (String, u64, u64) = (
                arg(args, 0, "prefix")?,
                arg(args, 1, "keys")?,
                arg(args, 2, "rounds")?,
            );
            for round in 0..rounds {
                let k = |id: u64| format!("{prefix}-{round}-{id}").into_bytes();
                for id in 0..keys {
                    map.insert(&k(id), &checked::make(id, round, checked::MIN_LEN))
                        .map_err(|e| format!("insert: {e}"))?;
                    // Read back at once: a key placed behind a slot another process freed
                    // meanwhile would be missed by its own writer's lookup.
                    if map.get(&k(id)).map_err(|e| format!("get: {e}"))?.is_none() {
                        return Err(format!("VIOLATION own key {prefix}-{round}-{id} missing"));
                    }
                }
                for id in 0..keys {
                    if !map.remove(&k(id)).map_err(|e| format!("remove: {e}"))? {
                        return Err(format!("VIOLATION own key {prefix}-{round}-{id} vanished"));
                    }
                }
            }
            Ok(format!("churned={}", keys * rounds))
        }
        "incr" => {
            let (k, times): (String, u64) = (arg(args, 0, "key")?, arg(args, 1, "times")?);
            for _ in 0..times {
                map.update(k.as_bytes(), |cur| {
                    let n = cur.map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8])));
                    (Update::Set((n + 1).to_le_bytes().to_vec()), ())
                })
                .map_err(|e| format!("update: {e}"))?;
            }
            Ok(format!("incrs={times}"))
        }
        "flip" => {
            let (prefix, keys, millis): (String, u64, u64) = (
                arg(args, 0, "prefix")?,
                arg(args, 1, "keys")?,
                arg(args, 2, "millis")?,
            );
            let k = |id: u64| format!("{prefix}-{id}").into_bytes();
            let deadline = Instant::now() + Duration::from_millis(millis);
            let mut flips = 0u64;
            while Instant::now() < deadline {
                for id in 0..keys {
                    if !map.remove(&k(id)).map_err(|e| format!("remove: {e}"))? {
                        return Err(format!("VIOLATION own key {prefix}-{id} vanished"));
                    }
                    map.insert(&k(id), b"flip")
                        .map_err(|e| format!("insert: {e}"))?;
                }
                flips += keys;
            }
            Ok(format!("flips={flips}"))
        }
        "churn-sized" | "churn-exit" => {
            let (keys, seed, ops): (u64, u64, u64) = (
                arg(args, 0, "keys")?,
                arg(args, 1, "seed")?,
                arg(args, 2, "ops")?,
            );
            let mut rng = checked::SplitMix(seed);
            for op in 0..ops {
                let id = rng.below(keys as usize) as u64;
                if rng.below(4) == 0 {
                    map.remove(&key(id)).map_err(|e| format!("remove: {e}"))?;
                } else {
                    let u = rng.below(1 << 20) as f64 / (1 << 20) as f64;
                    let len = (16.0 * 1024f64.powf(u)) as usize;
                    map.insert(&key(id), &checked::make(id, seed << 32 | op, len))
                        .map_err(|e| format!("insert: {e}"))?;
                }
                if let Some(v) = map.get(&key(id)).map_err(|e| format!("get: {e}"))? {
                    checked::verify(id, &v).map_err(|e| format!("VIOLATION {e}"))?;
                }
            }
            if role == "churn-exit" {
                println!("ops={ops}");
                use std::io::Write;
                std::io::stdout().flush().map_err(|e| e.to_string())?;
                std::process::exit(0); // no destructor runs: the map is never dropped
            }
            Ok(format!("ops={ops}"))
        }
        "big" => {
            use std::io::Write;
            let key: String = arg(args, 0, "key")?;
            let mib: usize = arg(args, 1, "mib")?;
            let mut value = vec![0u8; mib << 20];
            println!("writing"); // the test kills us at a chosen delay from here
            std::io::stdout().flush().map_err(|e| e.to_string())?;
            for round in 0..1000u32 {
                value[..4].copy_from_slice(&round.to_le_bytes());
                map.insert(key.as_bytes(), &value)
                    .map_err(|e| format!("insert: {e}"))?;
                println!("wrote {round}"); // a test may wait for a whole write
                std::io::stdout().flush().map_err(|e| e.to_string())?;
            }
            Ok("wrote".into())
        }
        other => Err(format!("unknown role {other:?}")),
    }
}

fn compact<P: Protocol>(name: &str) -> Result<String, String> {
    use std::io::Write;
    let map = SharedMap::<P>::attach(name).map_err(|e| format!("attach: {e}"))?;
    println!("compacting"); // the test kills us at a chosen delay from here
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let done = map
        .reclaim_tombstones()
        .map_err(|e| format!("reclaim: {e}"))?;
    println!("compacted {done:?}");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    Ok(String::new())
}

fn compact_heap<P: Protocol>(name: &str, args: &[String]) -> Result<String, String> {
    use std::io::Write;
    let map = SharedMap::<P>::attach(name).map_err(|e| format!("attach: {e}"))?;
    let (first, keys, seed): (u64, u64, u64) = (
        arg(args, 0, "first")?,
        arg(args, 1, "keys")?,
        arg(args, 2, "seed")?,
    );
    let mut rng = checked::SplitMix(seed);
    for round in 0u64.. {
        let ids = first..first + keys;
        for id in ids.clone() {
            let value = checked::make(id, seed << 32 | round, 100 + rng.below(200));
            map.insert(&key(id), &value)
                .map_err(|e| format!("insert: {e}"))?;
        }
        for id in ids.filter(|_| rng.below(10) != 0) {
            map.remove(&key(id)).map_err(|e| format!("remove: {e}"))?;
        }
        let done = map.compact_heap().map_err(|e| format!("compact: {e}"))?;
        println!("compacted {}", done.map_or(0, |d| d.moved));
        std::io::stdout().flush().map_err(|e| e.to_string())?;
    }
    unreachable!("the test kills us")
}

fn clear_loop<P: Protocol>(name: &str) -> Result<String, String> {
    use std::io::Write;
    let map = SharedMap::<P>::attach(name).map_err(|e| format!("attach: {e}"))?;
    loop {
        println!("clearing"); // the test kills us at a chosen delay from here
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        let removed = map.clear().map_err(|e| format!("clear: {e}"))?;
        println!("cleared {removed} in {} us", started.elapsed().as_micros());
        std::io::stdout().flush().map_err(|e| e.to_string())?;
    }
}

fn grow<P: Protocol>(name: &str) -> Result<String, String> {
    let map = SharedMap::<P>::attach(name).map_err(|e| format!("attach: {e}"))?;
    println!("growing"); // the test kills us at a chosen delay from here
    use std::io::Write;
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let grown = map.grow().map_err(|e| format!("grow: {e}"))?;
    Ok(format!("{grown:?}"))
}

fn die_holding<P: Protocol>(name: &str, args: &[String]) -> Result<String, String> {
    let map = SharedMap::<P>::attach(name).map_err(|e| format!("attach: {e}"))?;
    let key: String = arg(args, 0, "key")?;
    let tables = map.tables();
    let guard = map
        .protocol()
        .lock_key(tables, &tables.root().hash(key.as_bytes()))
        .map_err(|e| format!("lock: {e}"))?;
    std::mem::forget(guard); // never released: we die holding it
                             // SAFETY: the child only sleeps and exits; it touches no lock another thread could hold.
    match unsafe { libc::fork() } {
        0 => {
            std::thread::sleep(Duration::from_secs(10));
            // SAFETY: _exit skips destructors and atexit handlers, which the child must not run.
            unsafe { libc::_exit(0) }
        }
        -1 => Err("fork failed".into()),
        _ => {
            println!("held");
            // Exit without unwinding or dropping anything (the map included).
            std::process::exit(0)
        }
    }
}

fn main() -> ExitCode {
    // Die with the test that started us, even if it fails before waiting for us.
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backend, role, name, rest @ ..] = args.as_slice() else {
        eprintln!("usage: stress_worker <backend> <role> <map-name> [args]");
        return ExitCode::from(2);
    };
    let kind: BackendKind = match backend.parse() {
        Ok(kind) => kind,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match (role.as_str(), kind) {
        ("die-holding", BackendKind::LockFree) => die_holding::<Striped<Seqlock>>(name, rest),
        ("die-holding", BackendKind::SpinLock) => die_holding::<Striped<SlotLocks>>(name, rest),
        ("compact", BackendKind::LockFree) => compact::<Striped<Seqlock>>(name),
        ("compact", BackendKind::SpinLock) => compact::<Striped<SlotLocks>>(name),
        ("compact-heap", BackendKind::LockFree) => compact_heap::<Striped<Seqlock>>(name, rest),
        ("clear-loop", BackendKind::LockFree) => clear_loop::<Striped<Seqlock>>(name),
        ("clear-loop", BackendKind::SpinLock) => clear_loop::<Striped<SlotLocks>>(name),
        ("grow", BackendKind::LockFree) => grow::<Striped<Seqlock>>(name),
        ("grow", BackendKind::SpinLock) => grow::<Striped<SlotLocks>>(name),
        _ => with_backend!(kind, M => run::<M>(role, name, rest)),
    };
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
