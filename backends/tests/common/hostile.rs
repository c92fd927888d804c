//! What every hostile-segment test needs: short stall waits, a time bound on each operation,
//! and a watchdog for the operation that never returns (`corruption.rs`,
//! `heap_corruption.rs`).

use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use proptest::prelude::*;

/// Waits for busy words end this fast here, so a corrupted busy bit costs 20 ms, not 5 s.
pub const STALL: Duration = Duration::from_millis(20);
/// No operation may take longer than this (a few stall timeouts plus slack for a busy machine).
pub const BOUND: Duration = Duration::from_secs(2);

/// Runs `f`, failing the case if it took longer than [`BOUND`].
pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let start = Instant::now();
    let out = f();
    prop_assert!(start.elapsed() < BOUND, "{what} took {:?}", start.elapsed());
    Ok(out)
}

/// An operation that never returns cannot be caught by `timed`: abort the whole test binary
/// (a loud failure) if any one case runs for two minutes.
pub fn watchdog() -> std::sync::mpsc::Sender<()> {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            wait.recv_timeout(Duration::from_secs(120))
        {
            eprintln!("corruption test hung for 120 s: aborting");
            std::process::abort();
        }
    });
    done
}

/// Overwrites the bytes at each `(offset, bytes)` of the file at `path` (through the file,
/// not a mapping: what another process with write access can do).
pub fn write_at(path: &std::path::Path, edits: &[(u64, Vec<u8>)]) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    for (at, bytes) in edits {
        file.seek(SeekFrom::Start(*at)).unwrap();
        file.write_all(bytes).unwrap();
    }
}
