//! Bytes to and from the 8-byte words every slot and image is made of, and the checksum of an
//! entry's bytes.

use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Stores `bytes` into the leading words of `dst`, zero-padding the last one.
#[inline]
pub(super) fn store_words(dst: &[AtomicU64], bytes: &[u8]) {
    // Whole words, then the last chunk: `chunks(8)` tested every chunk for a short one (perf,
    // a set of a 64-byte str: the loop's compares and moves, 6% of the set in the journal's
    // copy and 5% in the slot's).
    let whole = bytes.chunks_exact(8);
    let rest = whole.remainder();
    let mut n = 0;
    for (word, chunk) in dst.iter().zip(whole) {
        let chunk: [u8; 8] = chunk.try_into().expect("chunks_exact(8)");
        // Relaxed: the writer's protocol publishes these with a Release store afterwards.
        word.store(u64::from_le_bytes(chunk), Ordering::Relaxed);
        n += 1;
    }
    if let (false, Some(word)) = (rest.is_empty(), dst.get(n)) {
        // Relaxed: as above.
        word.store(partial_word(rest), Ordering::Relaxed);
    }
}

/// An odd constant (2^64 / golden ratio) that spreads the version over the checksum's seed.
pub(super) const SUM_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// [`RawTable::entry_sum`] of a key with hash `key_hash` and length `klen`.
#[inline]
pub(super) fn sum_of(key_hash: u64, klen: usize, value: &[u8], version: u64) -> u64 {
    let lens = lens_word(klen, value.len());
    let seed = key_hash ^ lens.rotate_left(29) ^ version.wrapping_mul(SUM_MIX);
    xxh3_64_with_seed(value, seed)
}

/// The length word of a slot: key length in the low half, value length in the high half.
#[inline]
pub(super) fn lens_word(klen: usize, vlen: usize) -> u64 {
    klen as u64 | (vlen as u64) << 32
}

/// The word a key or value chunk of at most 8 bytes is stored as (zero-padded).
#[inline]
pub(super) fn chunk_word(chunk: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(chunk) {
        Ok(full) => u64::from_le_bytes(full),
        Err(_) => partial_word(chunk),
    }
}

/// A chunk of fewer than 8 bytes as a zero-padded little-endian word, from two overlapping
/// loads (as xxh3 reads short inputs). Copying it into a zeroed `[u8; 8]` instead calls
/// `memcpy` and then reads the 8 bytes back as one word, which the CPU cannot forward from
/// the narrower stores: perf put two thirds of a journal write on those loads, since nearly
/// every key and value ends in such a chunk.
#[inline]
pub(super) fn partial_word(c: &[u8]) -> u64 {
    let n = c.len();
    let le4 = |at: usize| u64::from(u32::from_le_bytes([c[at], c[at + 1], c[at + 2], c[at + 3]]));
    let le2 = |at: usize| u64::from(u16::from_le_bytes([c[at], c[at + 1]]));
    match n {
        // The two halves overlap on equal bytes, so OR-ing them is exact.
        4..=7 => le4(0) | le4(n - 4) << ((n - 4) * 8),
        2..=3 => le2(0) | le2(n - 2) << ((n - 2) * 8),
        1 => u64::from(c[0]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_words_are_the_zero_padded_bytes() {
        let bytes: Vec<u8> = (1..=8).collect();
        for n in 0..8 {
            let mut padded = [0u8; 8];
            padded[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(
                chunk_word(&bytes[..n]),
                u64::from_le_bytes(padded),
                "{n} bytes"
            );
        }
        assert_eq!(
            chunk_word(&bytes),
            u64::from_le_bytes(bytes.try_into().unwrap())
        );
    }

    #[test]
    fn stored_words_are_the_bytes_zero_padded_and_never_pass_dst() {
        let bytes: Vec<u8> = (1..=40).collect();
        for n in 0..=40usize {
            for words in [0, 1, 2, n / 8, n.div_ceil(8), 6] {
                let dst: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(u64::MAX)).collect();
                store_words(&dst, &bytes[..n]);
                let mut padded = bytes[..n].to_vec();
                padded.resize(n.div_ceil(8) * 8, 0);
                for (q, word) in dst.iter().enumerate() {
                    let want = padded
                        .get(q * 8..q * 8 + 8)
                        .map_or(u64::MAX, |c| u64::from_le_bytes(c.try_into().unwrap()));
                    assert_eq!(word.load(Ordering::Relaxed), want, "{n} bytes, word {q}");
                }
            }
        }
    }
}
