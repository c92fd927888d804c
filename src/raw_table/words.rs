//! Bytes as the 8-byte words records are made of, and the checksum of an entry's bytes.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// An odd constant (2^64 / golden ratio) that spreads the offset over the checksum's seed.
pub(super) const SUM_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// [`RawTable::entry_sum`](super::RawTable::entry_sum) of a key with hash `key_hash` and
/// length `klen`, in the record at `offset`.
#[inline]
pub(super) fn sum_of(key_hash: u64, klen: usize, value: &[u8], offset: u64) -> u64 {
    let lens = klen as u64 | (value.len() as u64) << 32;
    let seed = key_hash ^ lens.rotate_left(29) ^ offset.wrapping_mul(SUM_MIX);
    xxh3_64_with_seed(value, seed)
}

/// The word a key or value chunk of at most 8 bytes is stored as (zero-padded).
#[inline]
#[cfg(test)]
fn chunk_word(chunk: &[u8]) -> u64 {
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
pub(crate) fn partial_word(c: &[u8]) -> u64 {
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
}
