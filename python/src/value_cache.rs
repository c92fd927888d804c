//! The objects this handle's gets made, kept by the slot publication they were read from, so
//! that a get of an entry nobody rewrote since returns the same object instead of building
//! an equal one.
//!
//! Building a get's result was most of what a get cost beyond `k in m` (perf, a get of a
//! 64-character str at 1,000 keys: allocating, filling and freeing the str, 19 of 75 ns,
//! and the miss on the value's cache lines). A `dict` returns the object it holds; so do we
//! now, while the entry is unchanged.
//!
//! Why a recalled object is the value: a lookup still probes shared memory and compares the
//! key on every get, and recalls only inside the seqlock read of the key's slot, for the
//! exact control word it validates against: the [`Origin`] (generation, slot, stable word
//! with its version) of a read that built the object and was validated. Equal origins hold
//! equal bytes (see `shmap::Origin`), so the object is what decoding the slot would give.
//!
//! Only immutable objects are kept: the `str`, `bytes`, `int` and `float` that `direct`
//! builds (exact types, which run no code of the user's when freed). A pickled value (a list,
//! a dict) is decoded afresh by every get, as the caller may change it.
//!
//! An object is kept from the second get of a publication on (see [`ValueCache::put`]), so
//! a get that follows every change builds its object and lets it go, as before.
//!
//! The key object too, as `dict` compares keys by identity first: a kept entry also holds a
//! reference to the key object of the last get that found it (an exact `str`, `bytes`, `int`
//! or `float`: immutable, so the same object always encodes to the same bytes). A get of the
//! same key object then stops at the slot's control word: when the word is still the
//! entry's, the slot still holds that key and that value ([`ValueCache::recall_keyed`]), and
//! the slot's lines are not read at all (perf, a get at 10,000 int keys: the key compare's
//! load of the slot's first line was the get's hottest instruction).
//!
//! Bounds: one entry per slot of the current table (direct-mapped on the slot's index, at
//! most [`MAX_ENTRIES`]), values up to [`MAX_VALUE`] bytes, at most [`MAX_BYTES`] of values
//! in all. A resize starts the cache over; `close()` empties it.
//!
//! Only touched with the GIL held: the handle's `Scratch` lends it to one call at a time.

use pyo3::ffi;
use pyo3::prelude::*;
use shmap::Origin;

/// Most entries (16 bytes each): 1 MiB for a table of 65,536 slots or more.
const MAX_ENTRIES: usize = 1 << 16;
/// The largest value (payload bytes) kept.
const MAX_VALUE: usize = 1024;
/// Most payload bytes kept in all (objects add their headers, ~50 bytes each).
const MAX_BYTES: usize = 8 << 20;
/// Object addresses are below 2^48 (user space on x86-64 and aarch64 without a hint asking
/// for more; `put` checks): the bits above hold the slot's index beyond the entry's.
const ADDRESS_BITS: u32 = 48;

/// What a get made of one publication of one slot, or that the publication was read once.
#[derive(Clone, Copy)]
struct Entry {
    /// `Origin::word` of the last publication a get read here: never 0 once used (a FULL word
    /// has a state bit set).
    word: u64,
    /// An owned reference's address (0 while the publication was read only once), and above
    /// [`ADDRESS_BITS`] the slot's index shifted right by the entries' bits (slot indices are
    /// below 2^32: `compact::move_slots`; there are 2^16 entries where that matters).
    packed: u64,
}

const ADDRESS: u64 = (1 << ADDRESS_BITS) - 1;

impl Entry {
    /// The kept object, or null.
    fn obj(self) -> *mut ffi::PyObject {
        (self.packed & ADDRESS) as *mut ffi::PyObject
    }

    /// Whether this entry is of publication `word` of the slot whose high index bits are
    /// `high`.
    #[inline(always)]
    fn is_of(self, word: u64, high: u64) -> bool {
        self.word == word && self.packed & !ADDRESS == high
    }
}

const EMPTY: Entry = Entry { word: 0, packed: 0 };

/// See the module comment.
pub(crate) struct ValueCache {
    /// Whether `put` keeps anything (a call that could not borrow the handle's cache gets an
    /// off one).
    on: bool,
    /// The table generation the entries are of.
    generation: u64,
    /// Empty until the first `put`; then a power of two, 2^`bits`. 16 bytes each: a 24-byte
    /// entry with the key made the first get after a change 2-3% slower at 1,000 keys (the
    /// entries of 2,048 slots no longer fit the L1 cache).
    entries: Box<[Entry]>,
    /// Entry `i`'s key object (see the module comment): an owned reference, or null; only
    /// set while entry `i` holds an object. Apart, so that a get that misses never loads it.
    keys: Box<[*mut ffi::PyObject]>,
    bits: u32,
    bytes: usize,
}

// SAFETY: the raw pointers are owned references to immutable objects, only dereferenced,
// increfed or decrefed with the GIL held (every method takes a `Python` token, and `Drop`
// attaches first), so the cache may move between threads with its handle.
unsafe impl Send for ValueCache {}

impl Default for ValueCache {
    fn default() -> Self {
        Self::new(true)
    }
}

impl ValueCache {
    fn new(on: bool) -> Self {
        Self {
            on,
            generation: 0,
            entries: Box::new([]),
            keys: Box::new([]),
            bits: 0,
            bytes: 0,
        }
    }

    /// A cache that keeps nothing.
    pub(crate) fn off() -> Self {
        Self::new(false)
    }

    /// Entry `slot`'s index, and what its packed word holds above the address.
    #[inline(always)]
    fn place(&self, slot: usize) -> (usize, u64) {
        // A power of two (or zero: then `recall` finds nothing).
        let index = slot & self.entries.len().wrapping_sub(1);
        (index, ((slot as u64) >> self.bits) << ADDRESS_BITS)
    }

    /// Starts loading slot `slot`'s entry, which a get will likely look at.
    #[inline(always)]
    pub(crate) fn prefetch(&self, slot: usize) {
        #[cfg(target_arch = "x86_64")]
        if let Some(e) = self.entries.get(self.place(slot).0) {
            // SAFETY: a prefetch only hints the cache; the address is an element's.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>((e as *const Entry).cast());
            }
        }
    }

    /// The index and entry of publication `o`, if the entry is of it (and of the current
    /// table) and holds an object.
    #[inline(always)]
    fn kept(&self, o: Origin) -> Option<(usize, Entry)> {
        let (i, high) = self.place(o.slot);
        let e = *self.entries.get(i)?;
        // `o.word` is FULL, never 0: an unused entry never matches. The word first: a get
        // after a change stops there.
        let kept = e.is_of(o.word, high) && !e.obj().is_null() && o.generation == self.generation;
        kept.then_some((i, e))
    }

    /// The object made of the value at `origin`, if kept (a new reference).
    #[inline(always)]
    pub(crate) fn recall<'py>(&self, py: Python<'py>, o: Origin) -> Option<Bound<'py, PyAny>> {
        let (_, e) = self.kept(o)?;
        // SAFETY: a non-null address is an owned reference we hold (so a live object), the
        // GIL is held.
        Some(unsafe { Bound::from_borrowed_ptr(py, e.obj()) })
    }

    /// The object kept for `origin` if its entry also holds the key object `key` (a new
    /// reference): the get of a key object found at this publication before. `key` null: none.
    #[inline(always)]
    pub(crate) fn recall_keyed<'py>(
        &self,
        py: Python<'py>,
        o: Origin,
        key: *mut ffi::PyObject,
    ) -> Option<Bound<'py, PyAny>> {
        let e = self.keyed(o, key)?;
        // SAFETY: a kept entry's address is an owned reference we hold (so a live object), the
        // GIL is held.
        Some(unsafe { Bound::from_borrowed_ptr(py, e.obj()) })
    }

    /// Whether a get found the key object `key` at publication `o` (see `recall_keyed`).
    #[inline(always)]
    pub(crate) fn knows(&self, o: Origin, key: *mut ffi::PyObject) -> bool {
        self.keyed(o, key).is_some()
    }

    #[inline(always)]
    fn keyed(&self, o: Origin, key: *mut ffi::PyObject) -> Option<Entry> {
        let (i, e) = self.kept(o)?;
        (!key.is_null() && self.keys[i] == key).then_some(e)
    }

    /// Notes that `obj` was made of the value read (and validated) at `o`, and keeps it if
    /// this is the second get of that publication: a value read once since it changed may be
    /// rewritten before it is read again (holding every object a churning map's gets made cost
    /// the first get after a change 13-30%: the freed objects' memory went cold). `obj` must
    /// be an exact `str`, `bytes`, `int` or `float` (see the module comment), and so must
    /// `key`, the key object of the get, if not null: it is kept along.
    pub(crate) fn put(
        &mut self,
        py: Python<'_>,
        o: Origin,
        obj: &Bound<'_, PyAny>,
        key: *mut ffi::PyObject,
    ) {
        let addr = obj.as_ptr() as u64;
        if !self.on || o.slot > u32::MAX as usize || addr & !ADDRESS != 0 {
            return;
        }
        if o.generation != self.generation || self.entries.is_empty() {
            // A resize made a new table: nothing kept is of it, and it has other slots.
            self.clear(py);
            self.generation = o.generation;
            let n = o.slots.clamp(1, MAX_ENTRIES).next_power_of_two();
            self.entries = vec![EMPTY; n].into_boxed_slice();
            self.keys = vec![std::ptr::null_mut(); n].into_boxed_slice();
            self.bits = n.trailing_zeros();
        }
        let (i, high) = self.place(o.slot);
        let old = self.entries[i];
        let mut new = Entry {
            word: o.word,
            packed: high,
        };
        let size = payload(obj.as_ptr());
        // Only an entry with an object has a key object (`keys`): the first get after a
        // change, whose entry has none, leaves the key array alone.
        let old_key = match old.obj().is_null() {
            true => std::ptr::null_mut(),
            false => std::mem::replace(&mut self.keys[i], std::ptr::null_mut()),
        };
        if old.is_of(o.word, high) && size <= MAX_VALUE && self.bytes + size <= MAX_BYTES {
            new.packed |= obj.clone().into_ptr() as u64;
            self.bytes += size;
            self.keys[i] = self.own_key(key);
        }
        self.entries[i] = new;
        self.release(old, old_key);
    }

    /// Makes `key` the key object of the entry kept for `o`, if there is one: a get found the
    /// publication by its bytes with another object than the entry's (or with none kept yet).
    pub(crate) fn adopt_key(&mut self, _py: Python<'_>, o: Origin, key: *mut ffi::PyObject) {
        let Some((i, _)) = self.kept(o) else {
            return;
        };
        let old_key = self.keys[i];
        if key.is_null() || old_key == key {
            return;
        }
        self.keys[i] = self.own_key(key);
        self.release_key(old_key);
    }

    /// A new reference to `key` for an entry, counted in the budget; null if it does not fit
    /// (or `key` is null).
    fn own_key(&mut self, key: *mut ffi::PyObject) -> *mut ffi::PyObject {
        if key.is_null() {
            return key;
        }
        let size = payload(key);
        if size > MAX_VALUE || self.bytes + size > MAX_BYTES {
            return std::ptr::null_mut();
        }
        self.bytes += size;
        // SAFETY: a live object the caller lends (the key of the get in progress), the GIL held.
        unsafe { ffi::Py_INCREF(key) };
        key
    }

    /// Lets go of `old`'s object and its key object `key`, if it has them.
    fn release(&mut self, old: Entry, key: *mut ffi::PyObject) {
        let obj = old.obj();
        if !obj.is_null() {
            self.bytes -= payload(obj);
            // SAFETY: an owned reference we held, the GIL is held (every caller has a `Python`
            // token); an exact str, bytes, int or float runs no Python code when freed, so
            // nothing re-enters the cache.
            unsafe { ffi::Py_DECREF(obj) };
        }
        self.release_key(key);
    }

    /// Lets go of an entry's key object, if not null.
    fn release_key(&mut self, key: *mut ffi::PyObject) {
        if !key.is_null() {
            self.bytes -= payload(key);
            // SAFETY: as in `release`: an owned reference to an exact str, bytes, int or float.
            unsafe { ffi::Py_DECREF(key) };
        }
    }

    /// Lets go of every object.
    pub(crate) fn clear(&mut self, _py: Python<'_>) {
        for i in 0..self.entries.len() {
            let old = std::mem::replace(&mut self.entries[i], EMPTY);
            let key = std::mem::replace(&mut self.keys[i], std::ptr::null_mut());
            self.release(old, key);
        }
    }

    /// How many objects are kept (for tests).
    pub(crate) fn len(&self) -> usize {
        self.entries.iter().filter(|e| !e.obj().is_null()).count()
    }
}

/// `key` as the cache may keep it (see the module comment): its address if it is an exact
/// `str`, `bytes`, `int` or `float`, else null.
#[inline(always)]
pub(crate) fn identity_key(key: &Bound<'_, PyAny>) -> *mut ffi::PyObject {
    let k = key.as_ptr();
    // SAFETY: a live object (borrowed for the call), the GIL held (`key` is bound).
    let immutable = unsafe {
        ffi::PyUnicode_CheckExact(k) != 0
            || ffi::PyLong_CheckExact(k) != 0
            || ffi::PyBytes_CheckExact(k) != 0
            || ffi::PyFloat_CheckExact(k) != 0
    };
    if immutable {
        k
    } else {
        std::ptr::null_mut()
    }
}

/// The bytes of a kept object's value, as the budget counts them: a str's characters (kept
/// ones are ASCII), a bytes object's length, 8 for an int or a float.
fn payload(obj: *mut ffi::PyObject) -> usize {
    // SAFETY: a live object (the caller holds a reference), the GIL held by the caller.
    unsafe {
        if ffi::PyUnicode_Check(obj) != 0 {
            ffi::PyUnicode_GET_LENGTH(obj) as usize
        } else if ffi::PyBytes_Check(obj) != 0 {
            ffi::PyBytes_Size(obj) as usize
        } else {
            8
        }
    }
}

impl Drop for ValueCache {
    fn drop(&mut self) {
        if self.entries.iter().any(|e| !e.obj().is_null()) {
            Python::attach(|py| self.clear(py));
        }
    }
}
