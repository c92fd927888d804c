//! A worker for kill tests: it writes until it is SIGKILLed, keeping in an ack file what it
//! intended and what was acknowledged, and checks everything it sees on the way.
//!
//! Usage: `kill_worker <backend> <map> <ack-file> <partition> <keys-per-partition>
//! <shared-keys> <bound-ms> <seed>`
//!
//! - Keys of its partition only it writes: inserts (`New` exactly when the key was absent),
//!   removes (`true` exactly when present) and gets (exactly the last state) are checked
//!   against its own bookkeeping, which it first rebuilds from the map, after checking that
//!   the map holds what the previous (killed) worker acknowledged or had in flight. Some of
//!   those writes go through the atomic operations instead (`update`, `compare_exchange`,
//!   `get_or_insert`, `remove_entry`), whose answers are checked the same way, so kills land
//!   inside them too.
//! - Shared keys all workers insert, remove and read: every value must verify.
//! - Every operation must return within the bound (the stall timeout is set to it).
//!
//! Exits 0 when the ack file's stop word is set; prints `VIOLATION ...` and exits 3 on a
//! broken invariant.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmap_backends::shmap::{set_stall_timeout, BackendKind, Inserted, MapBackend, Update};
use shmap_backends::with_backend;
use shmap_testkit::acks::{holds, state, AckFile};
use shmap_testkit::checked;

/// Ack file word that tells workers to stop.
pub const STOP: usize = 0;
/// Shared keys' ids start here, above every partition key.
const SHARED_BASE: u64 = 1 << 32;

fn key(id: u64) -> Vec<u8> {
    format!("key-{id}").into_bytes()
}

fn pending_word(id: u64) -> usize {
    2 + 2 * id as usize
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*: enough to scatter operations; not for anything secret.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) % n
    }
}

struct Args {
    partition: u64,
    keys: u64,
    shared: u64,
    bound: Duration,
    seed: u64,
}

fn found<M: MapBackend>(map: &M, id: u64, buf: &mut Vec<u8>) -> Result<Option<u64>, String> {
    if !map
        .get_into(&key(id), buf)
        .map_err(|e| format!("get: {e}"))?
    {
        return Ok(None);
    }
    checked::verify(id, buf)
        .map(Some)
        .map_err(|e| format!("VIOLATION {e}"))
}

fn run<M: MapBackend>(name: &str, acks: &AckFile, a: &Args) -> Result<String, String> {
    set_stall_timeout(a.bound);
    let map = M::attach(name).map_err(|e| format!("attach: {e}"))?;
    let max_value = map.params().max_value_size;
    let mut rng = Rng(a.seed | 1);
    let mut buf = Vec::new();
    let ids: Vec<u64> = (a.partition * a.keys..(a.partition + 1) * a.keys).collect();
    // The truth after the previous worker: the map, which must agree with its acks.
    let mut current = Vec::with_capacity(ids.len());
    // Highest version each key ever had in flight: a new write must be newer than all.
    let mut high = Vec::with_capacity(ids.len());
    for &id in &ids {
        let (pending, acked) = (acks.get(pending_word(id)), acks.get(pending_word(id) + 1));
        let now = found(&map, id, &mut buf)?;
        if !holds(acked, now) && !holds(pending, now) {
            return Err(format!(
                "VIOLATION key {id} holds {now:?}, neither acked {acked:#x} nor pending {pending:#x}"
            ));
        }
        let version = (acked >> 1).max(pending >> 1);
        let s = now.map_or(state(version, false), |stamp| state(stamp, true));
        acks.set(pending_word(id), s);
        acks.set(pending_word(id) + 1, s);
        current.push(s);
        high.push(version);
    }
    let mut ops = 0u64;
    while acks.get(STOP) == 0 {
        let started = Instant::now();
        let len = checked::MIN_LEN + rng.below((max_value - checked::MIN_LEN + 1) as u64) as usize;
        if rng.below(4) < 3 {
            let j = rng.below(a.keys) as usize;
            let (id, cur) = (ids[j], current[j]);
            let present = cur & 1 == 1;
            let next = high[j] + 1;
            match rng.below(10) {
                op @ 0..=5 => {
                    let s = state(next, true);
                    high[j] = next;
                    acks.set(pending_word(id), s);
                    let value = checked::make(id, next, len);
                    let fail = |e| format!("VIOLATION insert blocked or failed: {e}");
                    // Plain inserts, and the same write through the atomic operations, whose
                    // answers must agree with what this worker alone wrote.
                    let was_present = match op {
                        0..=3 => map.insert(&key(id), &value).map_err(fail)? == Inserted::Replaced,
                        4 => map
                            .update(&key(id), |cur| (Update::Set(value.clone()), cur.is_some()))
                            .map_err(fail)?,
                        _ if present => {
                            // Insert-if-absent must fail and name the value this worker wrote;
                            // a compare-exchange from exactly that value must then succeed.
                            let now = match map
                                .compare_exchange(&key(id), None, Some(&value))
                                .map_err(fail)?
                            {
                                Ok(()) => {
                                    return Err(format!(
                                        "VIOLATION insert-if-absent of present key {id} succeeded"
                                    ))
                                }
                                Err(now) => now.ok_or_else(|| {
                                    format!("VIOLATION present key {id} reported absent")
                                })?,
                            };
                            let stamp =
                                checked::verify(id, &now).map_err(|e| format!("VIOLATION {e}"))?;
                            if !holds(cur, Some(stamp)) {
                                return Err(format!(
                                    "VIOLATION key {id} holds {stamp:#x}, wrote {cur:#x}"
                                ));
                            }
                            if map
                                .compare_exchange(&key(id), Some(&now), Some(&value))
                                .map_err(fail)?
                                .is_err()
                            {
                                return Err(format!(
                                    "VIOLATION CAS of key {id} from its own value failed"
                                ));
                            }
                            true
                        }
                        _ => !map.get_or_insert(&key(id), &value).map_err(fail)?.1,
                    };
                    if was_present != present {
                        return Err(format!(
                            "VIOLATION a write of key {id} found it present: {was_present}"
                        ));
                    }
                    acks.set(pending_word(id) + 1, s);
                    current[j] = s;
                }
                op @ 6..=7 => {
                    let s = state(next, false);
                    high[j] = next;
                    acks.set(pending_word(id), s);
                    let fail = |e| format!("VIOLATION remove blocked or failed: {e}");
                    let r = if op == 6 {
                        map.remove(&key(id)).map_err(fail)?
                    } else {
                        // The value removed must be the one this worker last wrote.
                        let old = map.remove_entry(&key(id)).map_err(fail)?;
                        let stamp = old
                            .as_deref()
                            .map(|v| checked::verify(id, v).map_err(|e| format!("VIOLATION {e}")))
                            .transpose()?;
                        if !holds(cur, stamp) {
                            return Err(format!(
                                "VIOLATION removed {stamp:?} from key {id}, wrote {cur:#x}"
                            ));
                        }
                        old.is_some()
                    };
                    if r != present {
                        return Err(format!("VIOLATION remove of key {id} said {r}"));
                    }
                    acks.set(pending_word(id) + 1, s);
                    current[j] = s;
                }
                _ => {
                    let now = found(&map, id, &mut buf)?;
                    if !holds(cur, now) {
                        return Err(format!("VIOLATION key {id} holds {now:?}, wrote {cur:#x}"));
                    }
                }
            }
        } else {
            let id = SHARED_BASE + rng.below(a.shared);
            let fail = |e| format!("VIOLATION shared key blocked or failed: {e}");
            match rng.below(3) {
                0 => drop(
                    map.insert(&key(id), &checked::make(id, a.seed ^ ops, len))
                        .map_err(fail)?,
                ),
                1 => drop(map.remove(&key(id)).map_err(fail)?),
                _ => drop(found(&map, id, &mut buf)?),
            }
        }
        if started.elapsed() > a.bound {
            return Err(format!(
                "VIOLATION an operation took {:?}",
                started.elapsed()
            ));
        }
        ops += 1;
    }
    Ok(format!("ops={ops}"))
}

fn parse(rest: &[String]) -> Result<Args, String> {
    let n = |i: usize| -> Result<u64, String> {
        rest.get(i)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad or missing argument {}", i + 4))
    };
    Ok(Args {
        partition: n(0)?,
        keys: n(1)?.max(1),
        shared: n(2)?.max(1),
        bound: Duration::from_millis(n(3)?),
        seed: n(4)?,
    })
}

fn main() -> ExitCode {
    // Die with the test that started us, even if it panics before stopping us.
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backend, name, ack_path, rest @ ..] = args.as_slice() else {
        eprintln!("usage: kill_worker <backend> <map> <ack-file> <partition> <keys> <shared> <bound-ms> <seed>");
        return ExitCode::from(2);
    };
    let setup = backend
        .parse::<BackendKind>()
        .map_err(|e| e.to_string())
        .and_then(|kind| Ok((kind, parse(rest)?)))
        .and_then(|(kind, a)| {
            let acks = AckFile::open(Path::new(ack_path)).map_err(|e| e.to_string())?;
            Ok((kind, a, acks))
        });
    let (kind, a, acks) = match setup {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match with_backend!(kind, M => run::<M>(name, &acks, &a)) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(3)
        }
    }
}
