//! A get's value built straight from the slot's words: a `str` (ASCII), `bytes`, `int` (i64)
//! or `float` is made by CPython's constructors from shared memory while the seqlock read is
//! in flight, and kept only if the read turns out whole (`shmap::ValueSink`). Other values
//! are copied into the handle's buffer and decoded after the read.
//!
//! Copying the value into a buffer and then decoding it read every byte twice and, for a
//! `str`, validated UTF-8 on the way (perf, a get of a 64-character str at 1,000 keys: the
//! copy, `ascii_decode` and `unicode_decode_utf8` were 10% of the samples). Here a `str` is
//! allocated as ASCII and filled in one pass that also looks for high bits; one that is not
//! ASCII is dropped and the bytes go the old way, decoded after the read is validated.
//!
//! A torn read makes a wrong object, which is dropped unseen: only constructors that cannot
//! fail on any bytes (they fail only on memory) run inside the read. Everything that can run
//! code or reject bytes (pickle, UTF-8 validation, tuples, big ints) waits for a whole read,
//! from the buffer.

use pyo3::ffi;
use pyo3::prelude::*;
use shmap::{Origin, ValueSink, ValueWords};

use crate::codec::Tag;
use crate::value_cache::ValueCache;

/// What the last read attempt made.
pub(crate) enum Made<'py> {
    /// Nothing yet, or the value is in the buffer (decode it after the read).
    Buffered,
    /// An object built from the slot's words, and the publication it was read from, for the
    /// cache (`None` where it is unknown).
    Object {
        obj: Bound<'py, PyAny>,
        from: Option<Origin>,
    },
    /// The object the cache kept for the read's origin, and that origin if the slot was read
    /// (the cache did not know the key object: `adopt_key` it).
    Recalled {
        obj: Bound<'py, PyAny>,
        read: Option<Origin>,
    },
    /// A constructor failed (out of memory).
    Failed(PyErr),
}

/// The sink: recalls from `cache`, builds into `made`, or copies into `buf`.
pub(crate) struct Direct<'a, 'py> {
    pub(crate) py: Python<'py>,
    pub(crate) buf: &'a mut Vec<u8>,
    pub(crate) made: &'a mut Made<'py>,
    pub(crate) cache: &'a ValueCache,
    /// The origin `recall` was last asked about, taken by the `take` that follows it.
    pub(crate) origin: Option<Origin>,
    /// The key object, if the cache may know it by identity (an exact `str`, `bytes`, `int`
    /// or `float`: see `value_cache`), else null.
    pub(crate) key: *mut ffi::PyObject,
}

impl ValueSink for Direct<'_, '_> {
    #[inline(always)]
    fn prefetch(&self, slot: usize) {
        self.cache.prefetch(slot);
    }

    #[inline(always)]
    fn recall_keyed(&mut self, origin: Origin) -> bool {
        match self.cache.recall_keyed(self.py, origin, self.key) {
            Some(obj) => {
                // Drops what a torn attempt made.
                *self.made = Made::Recalled { obj, read: None };
                true
            }
            None => false,
        }
    }

    #[inline(always)]
    fn recall(&mut self, origin: Origin) -> bool {
        match self.cache.recall(self.py, origin) {
            Some(obj) => {
                // Drops what a torn attempt made.
                *self.made = Made::Recalled {
                    obj,
                    read: Some(origin),
                };
                true
            }
            None => {
                self.origin = Some(origin);
                false
            }
        }
    }

    #[inline]
    fn take(&mut self, v: ValueWords<'_>) {
        *self.made = Made::Buffered; // drops what a torn attempt made
        let origin = self.origin.take();
        let payload = v.len().wrapping_sub(1);
        let made = match v.byte(0) {
            Some(t) if t == Tag::Str as u8 => self.str(v),
            Some(t) if t == Tag::Bytes as u8 => self.bytes(v),
            Some(t) if t == Tag::Int as u8 && payload == 8 => {
                let i = v.window(1).expect("9 bytes") as i64;
                // SAFETY: the GIL is held (we have `py`); no argument requirements.
                self.own(unsafe { ffi::PyLong_FromLongLong(i) })
            }
            Some(t) if t == Tag::Float as u8 && payload == 8 => {
                let f = f64::from_bits(v.window(1).expect("9 bytes"));
                // SAFETY: as above.
                self.own(unsafe { ffi::PyFloat_FromDouble(f) })
            }
            _ => None,
        };
        match made {
            Some(Made::Object { obj, .. }) => *self.made = Made::Object { obj, from: origin },
            Some(made) => *self.made = made,
            None => v.copy_to_vec(self.buf),
        }
    }
}

impl<'py> Direct<'_, 'py> {
    /// A new reference (or null with an exception set) as what we made.
    #[inline]
    fn own(&self, obj: *mut ffi::PyObject) -> Option<Made<'py>> {
        // SAFETY: `obj` is a new reference or null with the error indicator set, the GIL held.
        Some(
            match unsafe { Bound::from_owned_ptr_or_err(self.py, obj) } {
                Ok(obj) => Made::Object { obj, from: None },
                Err(e) => Made::Failed(e),
            },
        )
    }

    /// A `str` filled from the payload if it is ASCII; `None` (the buffer) otherwise.
    #[inline]
    fn str(&self, v: ValueWords<'_>) -> Option<Made<'py>> {
        let n = v.len() - 1;
        // SAFETY: the GIL is held; n fits (values are at most MAX_VALUE_SIZE_LIMIT bytes).
        let obj = unsafe { ffi::PyUnicode_New(n as ffi::Py_ssize_t, 127) };
        let made = self.own(obj)?;
        let Made::Object { obj: s, .. } = &made else {
            return Some(made);
        };
        // SAFETY: a new compact ASCII str of length n: its data holds n one-byte characters
        // (and the NUL CPython wrote after them, which we leave). Nobody else has it yet.
        let high = unsafe { v.copy_to(1, ffi::PyUnicode_DATA(s.as_ptr()).cast()) };
        // Not ASCII: an ASCII str must not hold these bytes; drop it unseen.
        (!high).then_some(made)
    }

    #[inline]
    fn bytes(&self, v: ValueWords<'_>) -> Option<Made<'py>> {
        let n = v.len() - 1;
        // SAFETY: the GIL is held; a null pointer asks for uninitialised contents of n bytes.
        let obj = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), n as ffi::Py_ssize_t) };
        let made = self.own(obj)?;
        if let Made::Object { obj: b, .. } = &made {
            // SAFETY: a new bytes object of n bytes, not yet shared: we fill its contents, as
            // its creator may.
            unsafe { v.copy_to(1, ffi::PyBytes_AS_STRING(b.as_ptr()).cast_mut().cast()) };
        }
        Some(made)
    }
}

/// The sink of `k in m`: it needs nothing of the value, and a publication at which a get
/// found this very key object (`ValueCache::knows`) ends the probe without reading the slot.
pub(crate) struct Presence<'a> {
    pub(crate) cache: &'a ValueCache,
    /// As `Direct::key`.
    pub(crate) key: *mut ffi::PyObject,
    /// The publication the last read attempt compared the key at (for `adopt_key`).
    pub(crate) read: Option<Origin>,
}

impl ValueSink for Presence<'_> {
    #[inline(always)]
    fn prefetch(&self, slot: usize) {
        self.cache.prefetch(slot);
    }

    #[inline(always)]
    fn recall_keyed(&mut self, origin: Origin) -> bool {
        let known = self.cache.knows(origin, self.key);
        if known {
            self.read = None; // found without a compare: nothing to adopt
        }
        known
    }

    /// Always `true`: the value's words are never wanted.
    #[inline(always)]
    fn recall(&mut self, origin: Origin) -> bool {
        self.read = Some(origin);
        true
    }

    #[inline(always)]
    fn take(&mut self, _: ValueWords<'_>) {}
}
