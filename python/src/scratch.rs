//! A handle's reusable buffer for values, and its cache of the values its gets made
//! (`value_cache`), guarded by the GIL instead of a thread-local.
//!
//! Thread-locals in an extension module cost a `__tls_get_addr` call on every access (perf, a
//! get at 1,000 keys: `LocalKey::with` and `__tls_get_addr`, 7% of the samples). Every call
//! that takes the buffer holds the GIL when it takes and returns it, so a flag read and
//! written only under the GIL says whether it is free; a call that waits without the GIL keeps
//! it taken meanwhile, and whoever comes then (another thread, or pickle running user code
//! that uses the map again) gets a fresh buffer.

use std::cell::{Cell, UnsafeCell};

use pyo3::Python;

use crate::value_cache::ValueCache;

/// One value buffer and one value cache, lent to one call at a time.
#[derive(Default)]
pub struct Scratch {
    /// Read and written only with the GIL held (see the module comment).
    taken: Cell<bool>,
    buf: UnsafeCell<Vec<u8>>,
    cache: UnsafeCell<ValueCache>,
}

// SAFETY: `taken` is only accessed with the GIL held (`lend` takes a `Python` token, and the
// GIL's acquire and release order those accesses between threads); `buf` and `cache` are only
// reached through `lend_all`, by the one call that set `taken`, until it clears it. The
// extension does not declare itself free of the GIL, so a free-threaded interpreter keeps the
// GIL on for it.
unsafe impl Sync for Scratch {}

/// Clears `taken` when the borrowing call ends, even by a panic (pyo3 turns those into
/// exceptions): a buffer never stays taken for ever.
struct Return<'a>(&'a Cell<bool>);

impl Drop for Return<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl Scratch {
    /// Runs `f` with the buffer, or with a fresh one if it is lent out already.
    #[inline]
    pub fn lend<R>(&self, gil: Python<'_>, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        self.lend_all(gil, |buf, _| f(buf))
    }

    /// Runs `f` with the buffer and the cache, or with a fresh buffer and a cache that keeps
    /// nothing if they are lent out already.
    #[inline]
    pub fn lend_all<R>(
        &self,
        _gil: Python<'_>,
        f: impl FnOnce(&mut Vec<u8>, &mut ValueCache) -> R,
    ) -> R {
        if self.taken.replace(true) {
            return f(&mut Vec::new(), &mut ValueCache::off());
        }
        let _return = Return(&self.taken);
        // SAFETY: `taken` was false and is now true: no other call holds `buf` or `cache`
        // until `_return` clears it after `f`.
        unsafe { f(&mut *self.buf.get(), &mut *self.cache.get()) }
    }
}
