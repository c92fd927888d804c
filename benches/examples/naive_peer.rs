//! What the naive design costs: the `shared_hashmap` crate (0.1.2 on crates.io, built on
//! `shared_memory` and `raw_sync`) against our lock-free map, side by side in one run.
//!
//! That crate keeps its entries in a list it scans linearly, behind one non-robust mutex, and
//! a second process cannot attach by name (only fork-inherited handles share it), so it does
//! not fit the harness as a row. Here: 10,000 entries (16-byte keys, 64-byte values), the crate
//! sized at 2.5x its data; gets of random present keys for `--seconds` per cell, in 1 process
//! and in 2 (forked, sharing the inherited handle), the two maps interleaved, 3 rounds.
//!
//! `cargo run --release -p shmap-benches --example naive_peer`

use std::time::{Duration, Instant};

use shared_hashmap::SharedMemoryHashMap;
use shmap::{MapBackend, MapOps, MapParams};
use shmap_backends::LockFreeMap;

const ENTRIES: u64 = 10_000;

fn key(i: u64) -> String {
    format!("key-{i:012}")
}

fn value(i: u64) -> String {
    format!("{i:064}")
}

/// Gets per second over `seconds` in this process, from `get(i)` on random present keys.
fn rate(seconds: f64, mut get: impl FnMut(u64) -> bool) -> f64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        for _ in 0..16 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            assert!(get(x % ENTRIES), "a present key was not found");
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Runs `work` in `procs` processes (this one and forked children, which inherit every
/// handle), and returns the summed rate. The children report through a pipe.
fn in_processes(procs: usize, work: &mut dyn FnMut() -> f64) -> f64 {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints for pipe to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let mut children = Vec::new();
    for _ in 1..procs {
        // SAFETY: this example is single-threaded, so the child may run Rust code freely.
        match unsafe { libc::fork() } {
            0 => {
                let r = work().to_le_bytes();
                // SAFETY: writing 8 bytes from a valid buffer to our pipe; _exit skips the
                // parent's destructors (the crate's owner handle would unlink its segment).
                unsafe {
                    libc::write(fds[1], r.as_ptr().cast(), 8);
                    libc::_exit(0);
                }
            }
            pid => children.push(pid),
        }
    }
    let mut total = work();
    for pid in children {
        let mut r = [0u8; 8];
        // SAFETY: reading 8 bytes into a valid buffer; waiting for our own child.
        unsafe {
            libc::read(fds[0], r.as_mut_ptr().cast(), 8);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        total += f64::from_le_bytes(r);
    }
    // SAFETY: closing the pipe we opened.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    total
}

fn main() {
    let seconds: f64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let data = ENTRIES as usize * (key(0).len() + value(0).len());
    let mut theirs = SharedMemoryHashMap::<String, String>::new(data * 5 / 2).expect("create");
    for i in 0..ENTRIES {
        theirs
            .try_insert(key(i), value(i))
            .expect("sized at 2.5x its data");
    }
    let name = format!("naive-peer-{}", std::process::id());
    let ours = LockFreeMap::create(
        &name,
        MapParams {
            capacity: 2 * ENTRIES as usize,
            max_key_size: 16,
            max_value_size: 64,
            max_capacity: 2 * ENTRIES as usize,
        },
    )
    .expect("create");
    let _ = shmap::unlink(&name); // the mapping stays; nothing is left behind
    for i in 0..ENTRIES {
        ours.insert(key(i).as_bytes(), value(i).as_bytes()).unwrap();
    }
    println!("gets/s of random present keys, {ENTRIES} entries, {seconds} s per cell, 3 interleaved rounds");
    for procs in [1, 2] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let mut buf = Vec::new();
            a.push(in_processes(procs, &mut || {
                rate(seconds, |i| {
                    ours.get_into(key(i).as_bytes(), &mut buf).unwrap()
                })
            }));
            b.push(in_processes(procs, &mut || {
                rate(seconds, |i| theirs.get(&key(i)).is_some())
            }));
        }
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        println!(
            "{procs} process(es): shmap lockfree {:>12.0} (range {:.0}-{:.0}); shared_hashmap 0.1.2 {:>8.0} (range {:.0}-{:.0}); ratio {:.0}x",
            a[1], a[0], a[2], b[1], b[0], b[2], a[1] / b[1]
        );
    }
}
