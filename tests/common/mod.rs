//! Shared by the heap's test files: heaps under names of their own, and records that name
//! their block and owner so that a block handed out twice shows.
#![allow(dead_code)] // each test file uses a different part

use std::sync::atomic::{AtomicUsize, Ordering};

use shmap::heap::Heap;
use shmap::Location;

/// A heap under a name no other test uses, unlinked when dropped.
pub struct Named(pub Location);

impl Named {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self(Location::Shm(format!(
            "shmap-heaptest-{}-{n}-{tag}",
            std::process::id()
        )))
    }

    /// The heap file's path in `/dev/shm`.
    pub fn shm_path(&self) -> String {
        match &self.0 {
            Location::Shm(name) => format!("/dev/shm/{name}"),
            Location::File(_) => unreachable!("test heaps live in shared memory"),
        }
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.0.unlink_one();
    }
}

/// Fills the block at `at` (of `bytes`) with words that name it and its owner `who`, so
/// overlaps are seen.
pub fn stamp(heap: &Heap, at: u64, bytes: usize, who: u64) {
    for w in 0..bytes.div_ceil(8) as u64 {
        heap.word(at + w * 8)
            .unwrap()
            .store(at ^ who << 48 ^ w, Ordering::Relaxed);
    }
}

/// Checks a block [`stamp`] filled.
pub fn check(heap: &Heap, at: u64, bytes: usize, who: u64) {
    for w in 0..bytes.div_ceil(8) as u64 {
        let v = heap.word(at + w * 8).unwrap().load(Ordering::Relaxed);
        assert_eq!(v, at ^ who << 48 ^ w, "block {at:#x} word {w} overwritten");
    }
}
