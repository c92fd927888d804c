//! A slot's value as the words it is stored in, for a reader that builds its result straight
//! from shared memory instead of copying the bytes into a buffer first.
//!
//! A lock-free reader reads a value while a writer may be rewriting it: every read here is a
//! Relaxed atomic load, so a torn value is wrong bytes, never undefined behaviour. Whatever a
//! [`ValueSink`] makes of the words is provisional until the reader's protocol validates the
//! read (the seqlock's second control-word load); a torn read is thrown away and the sink is
//! called again. So a sink may only build plain data from the words (a string object, an int):
//! nothing that runs code of the value's choosing, nothing that reports an error about the
//! bytes, and nothing it cannot drop unused.

use std::sync::atomic::{AtomicU64, Ordering};

/// The `len` bytes of a value, stored little-endian in `words` from byte `start` on (a record
/// packs the value right after the key, so it may start inside a word).
#[derive(Debug, Clone, Copy)]
pub struct ValueWords<'a> {
    words: &'a [AtomicU64],
    start: usize,
    len: usize,
}

/// Which publication of which slot a value was read from. Two reads with equal origins read
/// the same bytes: a slot's words change only while its control word is busy, and every
/// publication after a change stores a word with the next version (`Meta`'s state table;
/// a holder that gives a slot back unchanged restores the word it took). Generations are
/// never reused within a map. The one exception is a wrap of the 45-bit version: 2^45
/// publications of one slot between the two reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The table generation (see `Tables` in the backends crate).
    pub generation: u64,
    /// The slot's index in that table.
    pub slot: usize,
    /// The table's capacity in slots (for a cache that wants one entry per slot).
    pub slots: usize,
    /// The stable control word the read is validated against (state, tag, version).
    pub word: u64,
}

/// What a lookup does with the value it finds. For each read attempt of the key's slot it
/// calls [`ValueSink::recall`] and then, unless that returned `true`, [`ValueSink::take`];
/// only the last attempt before the lookup reports "found" read a whole value. Each attempt
/// replaces what the previous one made.
pub trait ValueSink {
    /// Whether the sink still holds what it made of the value at `origin` (from an earlier,
    /// validated read): then the attempt skips the value's words, and `take` is not called.
    /// Like `take`, it runs inside the read: what it answers counts only if the read is
    /// validated, so it must be ready to be asked again.
    #[inline(always)]
    fn recall(&mut self, _origin: Origin) -> bool {
        false
    }

    /// Whether the sink holds what it made of the value at `origin` for the very key being
    /// looked up (it knows the key by other means than its bytes, e.g. the identity of an
    /// immutable object it compared before): then the lookup reports the key found at
    /// `origin` without reading the slot at all, as a `dict` that finds its key by identity
    /// never compares it. Asked, before any read, of a slot whose stable FULL word `origin`
    /// carries the key's tag; the answer is final, as the word was loaded with Acquire and
    /// nothing else is read. A sink must answer `true` only for an origin at which an
    /// earlier, validated read found this key: equal origins hold equal bytes (see
    /// [`Origin`]), so the slot still holds the key, and keys are unique in a table.
    #[inline(always)]
    fn recall_keyed(&mut self, _origin: Origin) -> bool {
        false
    }

    /// A hint, before the probe: the value will most likely be read from slot `slot` (the
    /// key's home), so a sink may start loading what it keeps for that slot.
    #[inline(always)]
    fn prefetch(&self, _slot: usize) {}

    fn take(&mut self, value: ValueWords<'_>);
}

/// The classic sink: the bytes copied into a buffer.
impl ValueSink for Vec<u8> {
    #[inline]
    fn take(&mut self, value: ValueWords<'_>) {
        value.copy_to_vec(self);
    }
}

/// A sink that keeps nothing, for lookups that only ask whether the key is there. Its own
/// type keeps the copy out of their code: sharing the buffer sink's instantiation made the
/// read's body too large to inline (perf: `k in m` 7% slower, a call per probed slot).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoValue;

impl ValueSink for NoValue {
    #[inline(always)]
    fn take(&mut self, _: ValueWords<'_>) {}
}

impl<'a> ValueWords<'a> {
    /// `words` must hold at least `len.div_ceil(8)` words (checked).
    #[inline]
    pub fn new(words: &'a [AtomicU64], len: usize) -> Self {
        Self::at(words, 0, len)
    }

    /// The `len` bytes from byte `start` of `words`, which must hold them (checked).
    #[inline]
    pub fn at(words: &'a [AtomicU64], start: usize, len: usize) -> Self {
        assert!(words.len() * 8 >= start + len);
        Self { words, start, len }
    }

    /// The value's length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn word(&self, q: usize) -> u64 {
        // Relaxed: the reader's protocol orders the whole read (seqlock fence or slot lock).
        self.words[q].load(Ordering::Relaxed)
    }

    /// Byte `at` of the value, `None` past its end.
    #[inline]
    pub fn byte(&self, at: usize) -> Option<u8> {
        (at < self.len).then(|| self.byte_unchecked(at))
    }

    /// [`ValueWords::byte`] for `at < len`.
    #[inline]
    fn byte_unchecked(&self, at: usize) -> u8 {
        let at = self.start + at;
        (self.word(at / 8) >> (8 * (at % 8))) as u8
    }

    /// The 8 bytes at `at..at + 8` as a little-endian word, `None` if they pass the end.
    #[inline]
    pub fn window(&self, at: usize) -> Option<u64> {
        (at + 8 <= self.len).then(|| self.window_unchecked(at))
    }

    /// [`ValueWords::window`] for `at + 8 <= len`: one or two word loads.
    #[inline]
    fn window_unchecked(&self, at: usize) -> u64 {
        let at = self.start + at;
        let (q, r) = (at / 8, at % 8);
        let lo = self.word(q);
        if r == 0 {
            lo
        } else {
            // at + 8 <= len, so the bytes past word q are in word q + 1.
            (lo >> (8 * r)) | (self.word(q + 1) << (64 - 8 * r))
        }
    }

    /// Copies bytes `from..len` to `dst`, writing exactly `len - from` bytes (never past them),
    /// and says whether any of them has its high bit set (a string that is not ASCII).
    ///
    /// # Safety
    /// `from <= len`, and `dst` is valid for writes of `len - from` bytes.
    #[inline]
    pub unsafe fn copy_to(&self, from: usize, dst: *mut u8) -> bool {
        debug_assert!(from <= self.len);
        let n = self.len - from;
        let mut seen = 0u64;
        if n >= 8 {
            // Whole windows, each word loaded once (a window not on a word boundary is the
            // top of one word and the bottom of the next), then one window that overlaps
            // the last so that no byte past `n` is written.
            let (mut q, r) = ((self.start + from) / 8, (self.start + from) % 8);
            let mut k = 0;
            let mut lo = self.word(q);
            while k + 8 <= n {
                let w = if r == 0 {
                    let w = lo;
                    if k + 16 <= n {
                        lo = self.word(q + 1);
                    }
                    w
                } else {
                    // from + k + 8 <= len, so the window's top bytes are in word q + 1.
                    let hi = self.word(q + 1);
                    let w = (lo >> (8 * r)) | (hi << (64 - 8 * r));
                    lo = hi;
                    w
                };
                seen |= w;
                // SAFETY: k + 8 <= n: inside the caller's `n` bytes.
                unsafe {
                    dst.add(k)
                        .cast::<[u8; 8]>()
                        .write_unaligned(w.to_le_bytes())
                };
                q += 1;
                k += 8;
            }
            if k < n {
                let w = self.window_unchecked(from + n - 8);
                seen |= w;
                // SAFETY: n >= 8, so n - 8 .. n is inside the caller's bytes.
                unsafe {
                    dst.add(n - 8)
                        .cast::<[u8; 8]>()
                        .write_unaligned(w.to_le_bytes())
                };
            }
        } else {
            for k in 0..n {
                let b = self.byte_unchecked(from + k);
                seen |= u64::from(b);
                // SAFETY: k < n.
                unsafe { *dst.add(k) = b };
            }
        }
        seen & 0x8080_8080_8080_8080 != 0
    }

    /// Replaces `out`'s contents with the value's bytes.
    #[inline]
    pub fn copy_to_vec(&self, out: &mut Vec<u8>) {
        if self.start % 8 != 0 {
            out.clear();
            out.reserve(self.len);
            // SAFETY: `out` has room for `len` bytes, which `copy_to` writes exactly.
            unsafe {
                self.copy_to(0, out.as_mut_ptr());
                out.set_len(self.len);
            }
            return;
        }
        let first = self.start / 8;
        let words = &self.words[first..first + self.len.div_ceil(8)];
        out.clear();
        out.reserve(self.len.next_multiple_of(8));
        let dst = out.as_mut_ptr();
        for (k, word) in words.iter().enumerate() {
            // Relaxed: see `word`.
            let bytes = word.load(Ordering::Relaxed).to_le_bytes();
            // SAFETY: `out` has room for `words.len() * 8 >= len` bytes (reserved above), and
            // `k < words.len()`. One unaligned 8-byte store per word: `copy_from_slice` of
            // 8 bytes compiled to a `memmove` call per word in the Python extension (perf:
            // 8% of a get there), and zero-filling first (`resize`) wrote every byte twice.
            unsafe { dst.add(k * 8).cast::<[u8; 8]>().write_unaligned(bytes) };
        }
        // SAFETY: the first `len` bytes were written above (the last word's padding bytes
        // beyond `len` are initialised too, but outside the length).
        unsafe { out.set_len(self.len) };
    }

    /// Replaces `out`'s contents with bytes `from..len` of the value (a payload after its tag),
    /// and says whether any of them has its high bit set (a string that is not ASCII). Each
    /// word is loaded once, aligned, and stored whole at its shifted place: a typed get's
    /// copy of a `str` costs what [`ValueWords::copy_to_vec`] does, where [`ValueWords::copy_to`]
    /// from an odd offset combines two words per store.
    ///
    /// # Panics
    /// If `from > len`.
    #[inline]
    pub fn copy_tail_to_vec(&self, from: usize, out: &mut Vec<u8>) -> bool {
        assert!(from <= self.len);
        let n = self.len - from;
        let (begin, end) = (self.start + from, self.start + self.len);
        let (first, r) = (begin / 8, begin % 8);
        let last = end.div_ceil(8); // one past the last word holding a byte of the range
        out.clear();
        // Each store writes 8 bytes; the last may pass `n` by up to 7.
        out.reserve(n + 8);
        let dst = out.as_mut_ptr();
        let mut seen = 0u64;
        for q in first..last {
            let mut w = self.word(q);
            if q + 1 == last && end % 8 != 0 {
                w &= (1u64 << (8 * (end % 8))) - 1; // bytes past the value: not ours to judge
            }
            let (w, at) = if q == first {
                (w >> (8 * r), 0) // the range starts r bytes into its first word
            } else {
                (w, 8 * (q - first) - r)
            };
            seen |= w;
            // SAFETY: `at + 8 <= 8 * (last - first) - r <= n + 7 < n + 8`, the capacity
            // reserved above.
            unsafe {
                dst.add(at)
                    .cast::<[u8; 8]>()
                    .write_unaligned(w.to_le_bytes())
            };
        }
        // SAFETY: the stores above wrote every byte of `0..n` (each word's bytes of the range
        // land at their offset from `begin`; the first store's zero-filled top is overwritten
        // by the second).
        unsafe { out.set_len(n) };
        seen & 0x8080_8080_8080_8080 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(bytes: &[u8]) -> Vec<AtomicU64> {
        bytes
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                AtomicU64::new(u64::from_le_bytes(w))
            })
            .collect()
    }

    #[test]
    fn copies_every_range_exactly_and_sees_high_bits() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(7) & 0x7F).collect();
            let words = stored(&bytes);
            let v = ValueWords::new(&words, len);
            for from in 0..=len {
                // Guard bytes after the destination catch a write past its end.
                let mut dst = vec![0xEEu8; len - from + 8];
                // SAFETY: dst holds len - from bytes and more.
                let high = unsafe { v.copy_to(from, dst.as_mut_ptr()) };
                assert_eq!(&dst[..len - from], &bytes[from..], "len {len} from {from}");
                assert!(
                    dst[len - from..].iter().all(|&b| b == 0xEE),
                    "wrote past the end"
                );
                assert!(!high);
            }
            for at in 0..len {
                let mut b = bytes.clone();
                b[at] |= 0x80;
                let words = stored(&b);
                let mut dst = vec![0u8; len];
                // SAFETY: dst holds len bytes.
                assert!(unsafe { ValueWords::new(&words, len).copy_to(0, dst.as_mut_ptr()) });
            }
            let mut out = vec![1, 2, 3];
            v.copy_to_vec(&mut out);
            assert_eq!(out, bytes);
            for from in 0..=len {
                // Values that start anywhere in a word, as records do.
                for start in 0..8 {
                    let mut shifted = vec![0xFFu8; start];
                    shifted.extend_from_slice(&bytes);
                    shifted.extend_from_slice(&[0xFF; 8]); // padding with high bits: ignored
                    let words = stored(&shifted);
                    let v = ValueWords::at(&words, start, len);
                    let mut out = vec![9; 3];
                    assert!(!v.copy_tail_to_vec(from, &mut out), "len {len} from {from}");
                    assert_eq!(out, &bytes[from..], "len {len} from {from} start {start}");
                    for at in from..len {
                        let mut b = shifted.clone();
                        b[start + at] |= 0x80;
                        let words = stored(&b);
                        assert!(ValueWords::at(&words, start, len).copy_tail_to_vec(from, &mut out));
                    }
                }
            }
        }
    }

    #[test]
    fn values_that_start_inside_a_word_read_as_their_bytes() {
        let bytes: Vec<u8> = (0..48u8).map(|b| b.wrapping_mul(13) & 0x7F).collect();
        let words = stored(&bytes);
        for start in 0..17 {
            for len in 0..(48 - start) {
                let v = ValueWords::at(&words, start, len);
                let want = &bytes[start..start + len];
                let mut out = vec![9];
                v.copy_to_vec(&mut out);
                assert_eq!(out, want, "start {start} len {len}");
                for from in 0..=len {
                    let mut dst = vec![0xEEu8; len - from + 8];
                    // SAFETY: dst holds len - from bytes and more.
                    unsafe { v.copy_to(from, dst.as_mut_ptr()) };
                    assert_eq!(&dst[..len - from], &want[from..]);
                    assert!(dst[len - from..].iter().all(|&b| b == 0xEE));
                }
                for (at, &b) in want.iter().enumerate() {
                    assert_eq!(v.byte(at), Some(b));
                }
                if len >= 8 {
                    let w = u64::from_le_bytes(want[len - 8..].try_into().unwrap());
                    assert_eq!(v.window(len - 8), Some(w));
                }
            }
        }
    }

    #[test]
    fn windows_and_bytes_stop_at_the_end() {
        let bytes: Vec<u8> = (1..=20).collect();
        let words = stored(&bytes);
        let v = ValueWords::new(&words, 20);
        for at in 0..=12 {
            let want = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            assert_eq!(v.window(at), Some(want));
        }
        assert_eq!(v.window(13), None);
        assert_eq!(v.byte(19), Some(20));
        assert_eq!(v.byte(20), None);
    }
}
