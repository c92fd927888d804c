//! A handle's magazine of one class: a few blocks it freed, kept for its own next allocations
//! of the class (see [`super::Heap`] for why, and what it costs after a crash).
//!
//! Process-local memory, never shared. Taken with a try-lock: a thread that finds it held
//! (another thread of the handle in the middle of a take or a give) goes to the shared free
//! list instead of waiting, so the lock never spins. Taking it is one swap; giving it back
//! is a plain Release store (a `Mutex`'s unlock is a second read-modify-write, which perf put
//! at a sixth of the heap's share of a Python set).
//!
//! A forked child inherits its parent's magazines as a copy, blocks the parent goes on
//! handing out: the child forgets them (the first `with` in a process other than the one
//! that filled it empties it; they are leaked, as a killed process's are). A magazine whose
//! lock another thread of the parent held at the fork stays held in the child, which then
//! bypasses it, and gives up on draining it.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Blocks a magazine holds at most.
pub(super) const MAGAZINE: usize = 32;
/// Bytes of blocks a magazine holds at most: 32 blocks of 16 KiB kept per class and handle
/// were megabytes no other process could use (the harness measured 2x the payload under
/// churn of values up to 16 KiB, and more when killed processes leaked theirs). An update
/// needs one block in hand to skip the shared list.
pub(super) const MAGAZINE_BYTES: usize = 16 * 1024;

/// How many blocks of `block` bytes a magazine holds: [`MAGAZINE`], fewer for blocks over
/// 512 bytes, at least one.
#[inline]
pub(super) fn capacity(block: usize) -> usize {
    // No division on the path of small records (every free asks).
    if block <= MAGAZINE_BYTES / MAGAZINE {
        return MAGAZINE;
    }
    (MAGAZINE_BYTES / block).max(1)
}

/// The blocks of one class a handle keeps.
#[derive(Debug, Default)]
pub(super) struct Magazine {
    /// Lock word: `false` free, `true` held by the one thread inside `with`.
    ///
    /// | from  | to    | by                                                    |
    /// |-------|-------|-------------------------------------------------------|
    /// | false | true  | `with`: swap (Acquire), only if it read `false`        |
    /// | true  | false | the same `with`, when its closure returns (Release)    |
    held: AtomicBool,
    /// The process whose blocks these are (its pid; 0 before the first use).
    pid: AtomicU32,
    blocks: UnsafeCell<Vec<u64>>,
}

// SAFETY: `blocks` is only reached inside `with`, by the one thread that swapped `held` from
// false to true; the Release store that ends `with` and the Acquire swap that starts the next
// order every access.
unsafe impl Sync for Magazine {}

impl Magazine {
    /// Runs `f` on the blocks, unless another thread is in the middle of it (`None`).
    #[inline]
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut Vec<u64>) -> R) -> Option<R> {
        // Acquire: the previous holder's changes to `blocks` happen-before ours.
        if self.held.swap(true, Ordering::Acquire) {
            return None;
        }
        // Gives the lock back even if `f` panics (a push that cannot allocate).
        struct Release<'a>(&'a AtomicBool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                // Release: our changes to `blocks` happen-before the next holder's.
                self.0.store(false, Ordering::Release);
            }
        }
        let _release = Release(&self.held);
        // SAFETY: we hold the lock (see the Sync impl): no other reference to `blocks` exists.
        let blocks = unsafe { &mut *self.blocks.get() };
        let me = crate::current_owner();
        // Relaxed: read and written only under the lock.
        if self.pid.load(Ordering::Relaxed) != me {
            blocks.clear(); // a fork's copy of the parent's: not ours to hand out
            self.pid.store(me, Ordering::Relaxed);
        }
        Some(f(blocks))
    }

    /// Takes every block out (for a handle that drops, or a rebuild), waiting out a holder
    /// for a moment; nothing if the lock stays held (a fork's copy of a held lock).
    pub(super) fn drain(&self) -> Vec<u64> {
        for _ in 0..10_000 {
            if let Some(blocks) = self.with(std::mem::take) {
                return blocks;
            }
            std::hint::spin_loop();
        }
        Vec::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_magazine_holds_at_most_sixteen_kib() {
        assert_eq!(capacity(8), MAGAZINE);
        assert_eq!(capacity(512), MAGAZINE);
        assert_eq!(capacity(1024), 16);
        assert_eq!(capacity(32 * 1024), 1);
        for block in (8..=32 * 1024).step_by(8) {
            assert!(capacity(block) * block <= MAGAZINE_BYTES.max(block));
        }
    }

    #[test]
    fn one_thread_at_a_time_and_never_a_block_twice() {
        let m = Magazine::default();
        let taken = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (m, taken) = (&m, &taken);
                s.spawn(move || {
                    for i in 0..10_000u64 {
                        m.with(|b| b.push(t << 32 | i));
                        if let Some(Some(b)) = m.with(Vec::pop) {
                            taken.lock().unwrap().push(b);
                        }
                    }
                });
            }
        });
        let mut all = taken.into_inner().unwrap();
        all.extend(m.drain());
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a block handed out twice");
        assert!(m.with(|b| b.is_empty()).unwrap());
    }
}
