//! Shared by every test file: unique segment names that are unlinked afterwards, the generic
//! conformance cases, helpers to run worker processes, and a small seeded random source.
#![allow(dead_code)] // each test file uses a different part

pub mod conformance;
pub mod ops;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A segment name no other test (or test run) uses; unlinked when dropped.
#[derive(Debug)]
pub struct TestName(pub String);

impl TestName {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Self(format!(
            "shmap-test-{}-{n}-{nanos}-{tag}",
            std::process::id()
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Drop for TestName {
    fn drop(&mut self) {
        let _ = shmap::unlink(&self.0); // NotFound is fine: the test may have unlinked it
    }
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

/// Instantiates every conformance case for one backend, in a module named after it, so each
/// test's name carries the backend (`lockfree::full_table_is_an_error_and_changes_nothing`):
/// the operations (`ops.rs`) through a [`conformance::ShmMaker`], then the segment cases.
#[macro_export]
macro_rules! conformance_suite {
    ($backend:ident, $M:ty) => {
        mod $backend {
            use super::common::conformance as c;
            $crate::ops_suite!(c::ShmMaker::<$M>::default());
            $crate::conformance_suite!(@cases $M;
                invalid_names_are_errors, invalid_params_are_errors,
                attach_foreign_segment_is_refused, abandoned_segment_is_reported_and_removable,
                attach_refuses_untrusted_segments_unless_trusted, attach_truncated_segment_is_refused,
                attach_other_version_is_refused, attach_lying_header_is_refused,
                attach_with_another_backend_is_refused, corrupt_slot_is_an_error,
                unlink_keeps_open_handles_working, update_keeps_removes_and_refuses);
        }
    };
    (@cases $M:ty; $($case:ident),* $(,)?) => {
        $( #[test] fn $case() { c::$case::<$M>(); } )*
    };
}

/// Instantiates every case of `ops.rs`, each with a fresh maker from `$maker`.
#[macro_export]
macro_rules! ops_suite {
    ($maker:expr) => {
        $crate::ops_suite!(@cases $maker;
            insert_get_replace_remove, len_tracks_inserts_and_removes, empty_key_and_value,
            keys_and_values_at_the_limits, oversize_key_or_value_is_an_error_and_changes_nothing,
            full_table_is_an_error_and_changes_nothing, churn_of_fifty_times_capacity_keeps_working,
            attach_sees_data_and_reads_params_back, create_existing_name_is_an_error,
            attach_missing_name_is_an_error, entries_snapshot_matches,
            handles_are_shared_by_threads_with_exact_counts, atomic_operations_do_what_they_say);
    };
    (@cases $maker:expr; $($case:ident),* $(,)?) => {
        $( #[test] fn $case() { super::common::ops::$case(&$maker); } )*
    };
}

/// xorshift64: a seeded source for choosing keys, operations and pauses (not `rand`: tests
/// replay exactly from their seed, whatever crate versions resolve).
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n` (> 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
