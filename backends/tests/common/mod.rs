//! Shared by every test file: the generic conformance cases, and (from `shmap-testkit`) unique
//! segment names that are unlinked afterwards and a small seeded random source.
#![allow(dead_code)] // each test file uses a different part

pub mod conformance;
pub mod heap_damage;
pub mod hostile;
pub mod ops;

#[allow(unused_imports)] // each test file uses a different part
pub use shmap_testkit::{Rng, TestName};

/// A file-backed map's place in a directory of its own, removed (with the map's files) when
/// dropped: declare it before the map, so the map is closed first.
pub struct TempFileMap {
    dir: std::path::PathBuf,
    pub location: shmap::Location,
}

impl TempFileMap {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("shmap-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let location = shmap::Location::File(dir.join("map"));
        Self { dir, location }
    }
}

impl Drop for TempFileMap {
    fn drop(&mut self) {
        let _ = self.location.unlink();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Opens the file map at `location`, which nobody has open, and checks that the first open's
/// validation found it clean, with `entries` entries and no block leaked.
pub fn reopen_clean<P: shmap_backends::Protocol>(
    location: &shmap::Location,
    entries: usize,
) -> shmap_backends::SharedMap<P> {
    use shmap::MapBackend;
    let map = shmap_backends::SharedMap::<P>::attach_in(location, Default::default()).unwrap();
    let v = map.validation().expect("the first open validates").clone();
    assert!(v.is_clean(), "{v:?}");
    assert_eq!((v.entries, v.heap.leaked), (entries, 0), "{v:?}");
    map
}

/// Sets the flag as it drops, also in a panic: a thread whose assertion fails stops the
/// others, which would otherwise keep the test's scope waiting for ever.
pub struct StopOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
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
                unlink_keeps_open_handles_working, update_keeps_removes_and_refuses,
                size_limits_cost_no_memory);
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

/// Each case on every backend: `lockfree::case`, `spinlock::case`, `mutex::case`.
#[macro_export]
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        $crate::on_every_backend!(@one lockfree, Striped<Seqlock>; $($case),*);
        $crate::on_every_backend!(@one spinlock, Striped<SlotLocks>; $($case),*);
        $crate::on_every_backend!(@one mutex, GlobalMutex; $($case),*);
    };
    (@one $backend:ident, $P:ty; $($case:ident),*) => {
        mod $backend {
            #[allow(unused_imports)]
            use shmap_backends::{GlobalMutex, Seqlock, SlotLocks, Striped};
            $(
                #[test]
                fn $case() {
                    super::$case::<$P>(concat!(stringify!($backend), "-", stringify!($case)));
                }
            )*
        }
    };
}
