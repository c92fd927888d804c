//! The loom shim: an atomic 64-bit word and its fence, implemented by `std`'s `AtomicU64` and,
//! under `--cfg loom`, by loom's, so the lock-free steps written over it (the slot protocol in
//! `shmap-backends`' `slot.rs`, the heap's free lists) run unchanged on shared memory and under
//! the model checker, as crossbeam keeps its algorithms behind one `primitive` shim.

use std::sync::atomic::Ordering;

/// An atomic 64-bit word and its fence: `std`'s, or loom's under `--cfg loom`.
pub trait Word {
    fn load(&self, order: Ordering) -> u64;
    fn store(&self, value: u64, order: Ordering);
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64>;
    /// The fence of this word's memory model.
    fn fence(order: Ordering);
}

/// Implements [`Word`] for an `AtomicU64` type by delegation, with its module's fence.
macro_rules! impl_word {
    ($atomic:ty, $fence:path) => {
        impl Word for $atomic {
            #[inline]
            fn load(&self, order: Ordering) -> u64 {
                self.load(order)
            }
            #[inline]
            fn store(&self, value: u64, order: Ordering) {
                self.store(value, order)
            }
            #[inline]
            fn compare_exchange(
                &self,
                c: u64,
                n: u64,
                s: Ordering,
                f: Ordering,
            ) -> Result<u64, u64> {
                self.compare_exchange(c, n, s, f)
            }
            #[inline]
            fn fence(order: Ordering) {
                $fence(order)
            }
        }
    };
}

impl_word!(std::sync::atomic::AtomicU64, std::sync::atomic::fence);
#[cfg(loom)]
impl_word!(loom::sync::atomic::AtomicU64, loom::sync::atomic::fence);
