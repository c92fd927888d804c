//! What a file-backed map costs to open: the first opener (no other process has the file open)
//! validates every slot against its checksum; later openers only map it. Also what the
//! checksum costs a write: inserts into a file map against a shared-memory map of the same
//! size, interleaved.
//!
//! Per size: a file map of `n` entries (16-byte keys, 64-byte values, load 0.75) in
//! `$TMPDIR`; then 5 rounds of (first open, second open while the first is held), medians.
//!
//! `cargo run --release -p shmap-benches --example open_validation [-- ENTRIES...]`

use std::time::{Duration, Instant};

use shmap::{AttachOptions, Location, MapBackend, MapOps, MapParams};
use shmap_backends::LockFreeMap;

const ROUNDS: usize = 5;

fn key(i: u64) -> [u8; 16] {
    let mut k = *b"key-............";
    k[8..].copy_from_slice(&i.to_le_bytes());
    k
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn params(n: u64) -> MapParams {
    MapParams {
        capacity: (n * 4 / 3) as usize + 1,
        max_key_size: 16,
        max_value_size: 64,
        max_capacity: (n * 4 / 3) as usize + 1,
    }
}

/// Inserts `n` entries into `map`; the time per insert.
fn fill(map: &LockFreeMap, n: u64) -> Duration {
    let value = [7u8; 64];
    let started = Instant::now();
    for i in 0..n {
        map.insert(&key(i), &value).expect("sized for n");
    }
    started.elapsed() / n as u32
}

fn main() {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("entry counts"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    println!("| entries | file size | first open (validates) | per slot | second open | insert, file | insert, shm | file/shm |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let loc = Location::File(dir.path().join(format!("v{n}.map")));
        let shm = Location::Shm(format!("shmap-open-validation-{}", std::process::id()));
        let (mut first, mut second, mut ins_file, mut ins_shm) = (vec![], vec![], vec![], vec![]);
        for round in 0..ROUNDS {
            // Writes: file and shm interleaved, each into a fresh map.
            for (loc, out) in [(&loc, &mut ins_file), (&shm, &mut ins_shm)] {
                let _ = loc.unlink();
                let map = LockFreeMap::create_in(loc, params(n)).expect("create");
                out.push(fill(&map, n));
                if round + 1 < ROUNDS || matches!(loc, Location::Shm(_)) {
                    map.unlink().expect("unlink");
                }
            }
        }
        let bytes = std::fs::metadata(loc.path()).expect("the file").len();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let a = LockFreeMap::attach_in(&loc, AttachOptions::default()).expect("attach");
            first.push(started.elapsed());
            assert!(a
                .validation()
                .is_some_and(|v| v.is_clean() && v.entries == n as usize));
            let started = Instant::now();
            let b = LockFreeMap::attach_in(&loc, AttachOptions::default()).expect("attach");
            second.push(started.elapsed());
            assert!(b.validation().is_none());
        }
        let capacity = params(n).capacity as u32;
        let (f, s) = (median(first), median(second));
        let (wf, ws) = (median(ins_file), median(ins_shm));
        println!(
            "| {n} | {:.1} MiB | {:.1} ms | {:.0} ns | {:.2} ms | {} ns | {} ns | {:.2} |",
            bytes as f64 / (1 << 20) as f64,
            f.as_secs_f64() * 1e3,
            f.as_nanos() as f64 / f64::from(capacity),
            s.as_secs_f64() * 1e3,
            wf.as_nanos(),
            ws.as_nanos(),
            wf.as_secs_f64() / ws.as_secs_f64()
        );
        loc.unlink().expect("unlink");
    }
}
