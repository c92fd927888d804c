//! A handle's magazine of one class: a few blocks it freed, kept for its own next allocations
//! of the class (see [`super::Heap`] for why, and what it costs after a crash).
//!
//! Process-local memory, never shared. Taken with a try-lock: a thread that finds it held
//! (another thread of the handle in the middle of a take or a give) goes to the shared free
//! list instead of waiting, so the lock never spins. Taking it is one swap; giving it back
//! is a plain Release store (a `Mutex`'s unlock is a second read-modify-write, which perf put
//! at a sixth of the heap's share of a Python set).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Blocks a magazine holds at most.
pub(super) const MAGAZINE: usize = 32;

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
        Some(f(unsafe { &mut *self.blocks.get() }))
    }

    /// Takes every block out (for a handle that drops, or a rebuild), waiting out a holder.
    pub(super) fn drain(&self) -> Vec<u64> {
        loop {
            if let Some(blocks) = self.with(std::mem::take) {
                return blocks;
            }
            std::hint::spin_loop();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

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
