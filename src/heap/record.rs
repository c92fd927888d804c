//! A record in the heap and the bucket word that names it (`docs/variable-size-entries.md`,
//! 2.1): what the table of step 3 stores, copies and compares.
//!
//! Reference word ([`Ref`]):
//!
//! | bits  | meaning                                                             |
//! |-------|---------------------------------------------------------------------|
//! | 0-39  | the record's heap offset in 8-byte units (8 TiB)                    |
//! | 40-51 | the key's length, or 4095: the record starts with a length header   |
//! | 52-63 | the value's length, or 4095: likewise                               |
//!
//! Record: the key's bytes and the value's bytes packed together (a 4-byte key and a 4-byte
//! value are one word), zero-padded to whole words, every word read and written as an atomic;
//! when either length needs the escape, a header word `key_len | value_len << 32` comes first.
//! A reader takes every length from shared memory as a claim to check, never as a fact: a
//! record's lengths must fit its words (`Heap::words` bounds them by the file), and the caller
//! bounds them by the map's limits.

use std::sync::atomic::{AtomicU64, Ordering};

use super::free_list::MAX_OFFSET;
use super::store::Heap;

const OFFSET_BITS: u32 = 40;
const LEN_BITS: u32 = 12;
/// A length field that says "see the record's header word".
const ESCAPE: u64 = (1 << LEN_BITS) - 1;

/// The bucket word that names a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ref(pub u64);

impl Ref {
    /// The reference to a record at `offset` (a multiple of 8, at most `MAX_OFFSET`) of a key
    /// and a value of these lengths.
    pub fn new(offset: u64, key_len: usize, value_len: usize) -> Self {
        debug_assert!(offset % 8 == 0 && offset <= MAX_OFFSET);
        let field = |len: usize| (len as u64).min(ESCAPE);
        let lens = field(key_len) | field(value_len) << LEN_BITS;
        Self(offset >> 3 | lens << OFFSET_BITS)
    }

    /// The record's heap offset.
    pub fn offset(self) -> u64 {
        (self.0 & ((1 << OFFSET_BITS) - 1)) << 3
    }

    /// Whether the lengths are in a header word at the record's start.
    pub fn escaped(self) -> bool {
        let lens = self.0 >> OFFSET_BITS;
        lens & ESCAPE == ESCAPE || lens >> LEN_BITS == ESCAPE
    }

    /// The key's and the value's lengths, when the word holds them.
    pub fn lens(self) -> Option<(usize, usize)> {
        let lens = self.0 >> OFFSET_BITS;
        (!self.escaped()).then_some(((lens & ESCAPE) as usize, (lens >> LEN_BITS) as usize))
    }
}

/// Bytes of the record of a `key_len`-byte key and a `value_len`-byte value: what to ask the
/// heap for (and to free with).
pub fn record_len(key_len: usize, value_len: usize) -> usize {
    let header = if key_len as u64 >= ESCAPE || value_len as u64 >= ESCAPE {
        8
    } else {
        0
    };
    header + (key_len + value_len).div_ceil(8) * 8
}

/// Word `i` of the bytes `key ++ value`, zero-padded: every word but the one that straddles
/// the two is an 8-byte slice of one of them.
fn packed_word(key: &[u8], value: &[u8], i: usize) -> u64 {
    let mut bytes = [0u8; 8];
    for (j, b) in bytes.iter_mut().enumerate() {
        let at = i * 8 + j;
        *b = match at.checked_sub(key.len()) {
            None => key[at],
            Some(v) => value.get(v).copied().unwrap_or(0),
        };
    }
    u64::from_le_bytes(bytes)
}

/// Writes the record of `key` and `value` into the block at `at` (allocated by `heap` for
/// [`record_len`] bytes, and not yet published) and returns its reference; `None` if the
/// block lies outside the heap (then nothing was written and `named` not called). Relaxed
/// stores: the reference's Release store publishes them.
///
/// `named(r)` is called once the record's lengths and key are written and before the rest of
/// its value: the writer journals the reference there, so that a writer killed while it
/// copies a large value leaves a journal naming the block (its repair frees it), not a leak.
/// It returns whether to go on: `false` (the rest of the block could not be reserved) leaves
/// the value unwritten. A small record (up to `SMALL_RECORD` bytes) is written whole first.
pub fn write_record(
    heap: &Heap,
    at: u64,
    key: &[u8],
    value: &[u8],
    named: impl FnOnce(Ref) -> bool,
) -> Option<Ref> {
    let words = heap.words(at, record_len(key.len(), value.len()) / 8)?;
    let r = Ref::new(at, key.len(), value.len());
    let body = match r.escaped() {
        true => {
            let header = key.len() as u64 | (value.len() as u64) << 32;
            words[0].store(header, Ordering::Relaxed);
            &words[1..]
        }
        false => words,
    };
    if key.len() + value.len() <= SMALL_RECORD {
        // Small records (nearly all) whole, before `named`: nothing to reserve for them.
        store_packed(body, key, value, || true);
        named(r);
    } else {
        store_packed(body, key, value, || named(r));
    }
    Some(r)
}

/// Records up to this many bytes of key and value are written whole before `named` is
/// called.
const SMALL_RECORD: usize = 256;

/// Stores the words of `key ++ value`, zero-padded, into `body` (at least that many words):
/// whole 8-byte loads of the key, then of the value from where the word they share ends, and
/// the two partial words built in a register. `keyed` runs once every word holding a byte of
/// the key is stored (the one it shares with the value included); `false` leaves the rest of
/// the value unwritten. Neither packed on the stack first (a store of
/// each slice and a load of each word: the loads waited for the stores, 21% of a harness
/// `write`'s samples in the insert, perf) nor byte by byte (which cost a Python set as much
/// again as the rest of it).
fn store_packed(body: &[AtomicU64], key: &[u8], value: &[u8], keyed: impl FnOnce() -> bool) {
    let store = |i: usize, word: u64| body[i].store(word, Ordering::Relaxed);
    let keys = key.chunks_exact(8);
    let (key_tail, key_words) = (keys.remainder(), keys.len());
    for (i, c) in keys.enumerate() {
        store(i, chunk(c));
    }
    // The word the key's tail shares with the value's head (none if the key fills its last).
    let head = value.len().min((8 - key_tail.len()) % 8);
    let mut i = key_words;
    if !key_tail.is_empty() {
        let shared = partial_word(key_tail) | partial_word(&value[..head]) << (8 * key_tail.len());
        store(i, shared);
        i += 1;
    }
    if !keyed() {
        return;
    }
    let values = value[head..].chunks_exact(8);
    let value_tail = values.remainder();
    for c in values {
        store(i, chunk(c));
        i += 1;
    }
    if !value_tail.is_empty() {
        store(i, partial_word(value_tail));
    }
}

/// The little-endian word of up to 8 bytes, zero-padded.
#[inline]
fn partial_word(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .enumerate()
        .fold(0, |w, (j, &b)| w | u64::from(b) << (8 * j))
}

fn chunk(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("an 8-byte slice"))
}

/// The record `r` names: its lengths and the words of its bytes (past any header), if its
/// lengths fit the words the heap backs; `None` otherwise (a torn or hostile reference, which
/// a seqlock reader discards after its version check anyway).
pub fn record_words(heap: &Heap, r: Ref) -> Option<(usize, usize, &[AtomicU64])> {
    let (klen, vlen, body) = match r.lens() {
        Some((k, v)) => (k, v, r.offset()),
        None => {
            // Relaxed: a seqlock read; the caller validates it against the bucket's version.
            let header = heap.words(r.offset(), 1)?[0].load(Ordering::Relaxed);
            (
                (header & 0xFFFF_FFFF) as usize,
                (header >> 32) as usize,
                r.offset() + 8,
            )
        }
    };
    let words = heap.words(body, (klen + vlen).div_ceil(8))?;
    Some((klen, vlen, words))
}

/// Appends the record's key to `key` and its value to `value` (both cleared first); `false`
/// if the reference names no record the heap backs.
pub fn read_record(heap: &Heap, r: Ref, key: &mut Vec<u8>, value: &mut Vec<u8>) -> bool {
    let Some((klen, vlen, words)) = record_words(heap, r) else {
        return false;
    };
    key.clear();
    value.clear();
    key.reserve(klen);
    value.reserve(vlen);
    for (i, w) in words.iter().enumerate() {
        // Relaxed: a seqlock read, validated by the caller.
        let bytes = w.load(Ordering::Relaxed).to_le_bytes();
        for (j, &b) in bytes.iter().enumerate() {
            match (i * 8 + j).checked_sub(klen) {
                None => key.push(b),
                Some(v) if v < vlen => value.push(b),
                Some(_) => break,
            }
        }
    }
    true
}

/// Whether the record `r` names holds `key` (a seqlock read: the caller validates it).
pub fn key_matches(heap: &Heap, r: Ref, key: &[u8]) -> bool {
    let Some((klen, vlen, words)) = record_words(heap, r) else {
        return false;
    };
    if klen != key.len() {
        return false;
    }
    let empty: &[u8] = &[];
    (0..klen.div_ceil(8)).all(|i| {
        let stored = words[i].load(Ordering::Relaxed);
        let ours = packed_word(key, empty, i);
        // The word that straddles key and value: compare only the key's bytes of it.
        let mask = match (i + 1) * 8 > klen && vlen > 0 {
            true => u64::MAX >> (64 - 8 * (klen - i * 8)),
            false => u64::MAX,
        };
        (stored ^ ours) & mask == 0
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::heap::DEFAULT_RESERVE;
    use crate::Location;

    fn heap(tag: &str) -> (Heap, Location) {
        let at = Location::Shm(format!("shmap-record-{}-{tag}", std::process::id()));
        let _ = at.unlink_one();
        (Heap::create(&at, DEFAULT_RESERVE).unwrap(), at)
    }

    /// Every word of every small key and value, against the byte-by-byte reference; every
    /// word is written (a word left out keeps its 0xAA... filler).
    #[test]
    fn packed_words_are_the_bytes_of_key_then_value() {
        for k in 0..=41 {
            for v in 0..=41 {
                let (key, value) = (bytes(k, 1), bytes(v, 97));
                let body: Vec<AtomicU64> = (0..(k + v).div_ceil(8))
                    .map(|_| AtomicU64::new(0xAAAA_AAAA_AAAA_AAAA))
                    .collect();
                store_packed(&body, &key, &value, || true);
                for (i, w) in body.iter().enumerate() {
                    let want = packed_word(&key, &value, i);
                    assert_eq!(
                        w.load(Ordering::Relaxed),
                        want,
                        "key {k}, value {v}, word {i}"
                    );
                }
            }
        }
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn references_carry_offsets_and_short_lengths() {
        let r = Ref::new(8 << 20, 15, 65);
        assert_eq!(
            (r.offset(), r.lens(), r.escaped()),
            (8 << 20, Some((15, 65)), false)
        );
        assert_eq!(Ref::new(MAX_OFFSET, 0, 4094).lens(), Some((0, 4094)));
        assert_eq!(Ref::new(MAX_OFFSET, 0, 4094).offset(), MAX_OFFSET);
        assert!(Ref::new(64, 4095, 1).escaped() && Ref::new(64, 1, 1 << 30).escaped());
        assert_eq!(record_len(4, 4), 8);
        assert_eq!(record_len(16, 65), 88);
        assert_eq!(record_len(1, 4095), 8 + 4096);
    }

    #[test]
    fn records_of_every_shape_round_trip_and_compare_by_key() {
        let (heap, at) = heap("shapes");
        let lens = [
            0usize, 1, 3, 4, 7, 8, 9, 15, 16, 17, 64, 65, 4094, 4095, 5000, 100_000,
        ];
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for &kl in &lens[..14] {
            for &vl in &lens {
                let (key, value) = (bytes(kl, 1), bytes(vl, 2));
                let block = heap.alloc(record_len(kl, vl)).unwrap();
                // Garbage where the value goes: `named` must come after the key, before the
                // rest of a large value.
                for w in heap.words(block, record_len(kl, vl) / 8).unwrap() {
                    w.store(u64::MAX, Ordering::Relaxed);
                }
                let mut calls = 0;
                let r = write_record(&heap, block, &key, &value, |r| {
                    calls += 1;
                    assert_eq!(
                        record_words(&heap, r).map(|(k, v, _)| (k, v)),
                        Some((kl, vl))
                    );
                    assert!(
                        key_matches(&heap, r, &key),
                        "{kl}/{vl}: the key before the name"
                    );
                    if kl + vl > SMALL_RECORD && vl > 8 {
                        let last = record_words(&heap, r).unwrap().2.last().unwrap();
                        assert_eq!(last.load(Ordering::Relaxed), u64::MAX, "{kl}/{vl}");
                    }
                    true
                })
                .unwrap();
                assert_eq!(calls, 1, "{kl}/{vl}");
                assert_eq!(r.offset(), block);
                assert!(read_record(&heap, r, &mut k, &mut v), "{kl}/{vl}");
                assert_eq!((&k, &v), (&key, &value), "{kl}/{vl}");
                assert!(key_matches(&heap, r, &key), "{kl}/{vl}");
                let mut other = key.clone();
                if let Some(last) = other.last_mut() {
                    *last ^= 1;
                    assert!(!key_matches(&heap, r, &other), "{kl}/{vl}");
                }
                other.push(0);
                assert!(!key_matches(&heap, r, &other), "{kl}/{vl}: a longer key");
                heap.free(block, record_len(kl, vl)).unwrap();
            }
        }
        let _ = at.unlink_one();
    }

    #[test]
    fn references_past_the_heap_name_no_record() {
        let (heap, at) = heap("hostile");
        let (mut k, mut v) = (Vec::new(), Vec::new());
        // An offset outside, and a header that claims more bytes than the heap has.
        assert!(!read_record(&heap, Ref::new(1 << 39, 4, 4), &mut k, &mut v));
        let block = heap.alloc(16).unwrap();
        heap.words(block, 1).unwrap()[0].store(u64::MAX, Ordering::Relaxed);
        let escaped = Ref::new(block, 4095, 4095);
        assert!(!read_record(&heap, escaped, &mut k, &mut v));
        assert!(!key_matches(&heap, escaped, b"k"));
        let _ = at.unlink_one();
    }
}
