//! Shared by the process tests: starting the worker binaries of this package and reading what
//! they report, and (from `shmap-testkit`) unique segment names and a seeded random source.
#![allow(dead_code)] // each test file uses a different part

use std::process::{Child, Command, Stdio};

#[allow(unused_imports)] // each test file uses a different part
pub use shmap_testkit::{Rng, TestName};

/// SIGKILLs `child` (whose stdout the caller may have taken) and waits for it; panics with
/// its stderr if it had stopped by itself before the kill.
pub fn kill_and_reap(child: &mut Child, what: &str) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let _ = child.kill();
    let status = child.wait().expect("wait for a killed worker");
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{what} stopped by itself: {err}"
    );
}

/// Starts the worker binary as a separate process.
pub fn spawn_worker(backend: &str, role: &str, name: &str, args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stress_worker"))
        .args([backend, role, name])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stress_worker")
}

/// Waits for a worker; panics with its stderr unless it succeeded. Returns its stdout.
pub fn finish(child: Child) -> String {
    let out = child.wait_with_output().expect("wait for worker");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "worker failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        stdout
    );
    stdout
}

/// The number after `field=` in a worker's summary line.
pub fn field(summary: &str, field: &str) -> u64 {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(field)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no {field}= in {summary:?}"))
}

/// The records the table names (offset, and the record's bytes as allocated): what a rebuild
/// of the heap keeps, so that whatever else it finds allocated was leaked. The caller
/// excludes writers (every other handle gone).
pub fn live_records(table: &shmap::RawTable) -> Vec<(u64, usize)> {
    use std::sync::atomic::Ordering;
    (0..table.capacity())
        .filter(|&i| {
            shmap::Meta(table.meta(i).load(Ordering::Relaxed)).state()
                == Some(shmap::SlotState::Full)
        })
        .map(|i| table.record_extent(table.ref_of(i)).expect("a live record"))
        .collect()
}
