//! The key a lookup probes for: contiguous bytes, or a type tag followed by a payload that
//! live apart ([`Tagged`]: the typed map's `&str` and `&[u8]` keys, whose encoding is a tag
//! byte and the user's bytes). A tagged key is hashed and compared where its bytes are, never
//! copied together: copying the key to a buffer just before hashing it cost a typed get 1.2x
//! the bytes get (measured with `cargo run --release -p shmap-benches --example typed_cost`;
//! 1.0x with keys encoded long before).
//!
//! Both hash to what [`xxh3_64_with_seed`] gives for their bytes: a map does not know which
//! kind of key wrote an entry. [`Tagged`] reimplements XXH3's 64-bit hash for inputs of up to
//! 240 bytes from the specification, over the virtual concatenation; longer keys are joined in
//! a buffer and hashed by the library. The test checks every length to 300 against it.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::raw_table::partial_word;

/// A key as lookups read it.
pub trait ProbeKey {
    /// Its length in bytes.
    fn len(&self) -> usize;

    /// Whether it has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// XXH3-64 of its bytes with `seed`, as `xxh3_64_with_seed` computes it.
    fn hash(&self, seed: u64) -> u64;

    /// Whether its bytes equal `len()` bytes stored in little-endian words, `word(q)` being
    /// bytes `8q..8q + 8` (the word the key ends in may go on with other bytes, ignored).
    fn matches(&self, word: impl Fn(usize) -> u64) -> bool;
}

impl ProbeKey for [u8] {
    #[inline(always)]
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    #[inline(always)]
    fn hash(&self, seed: u64) -> u64 {
        xxh3_64_with_seed(self, seed)
    }

    #[inline(always)]
    fn matches(&self, word: impl Fn(usize) -> u64) -> bool {
        let whole = self.chunks_exact(8);
        let rest = whole.remainder();
        let n = whole.len();
        if !whole
            .enumerate()
            .all(|(q, c)| word(q) == u64::from_le_bytes(c.try_into().expect("8 bytes")))
        {
            return false;
        }
        if rest.is_empty() {
            return true;
        }
        // The word the key ends in may go on with the value's first bytes.
        let mask = u64::MAX >> (64 - 8 * rest.len());
        (word(n) ^ partial_word(rest)) & mask == 0
    }
}

/// A key whose bytes are `tag` then `payload`.
#[derive(Debug, Clone, Copy)]
pub struct Tagged<'a> {
    /// The first byte.
    pub tag: u8,
    /// The rest.
    pub payload: &'a [u8],
}

impl Tagged<'_> {
    /// The 8 bytes at `at..at + 8` of the key, little-endian; `at + 8 <= len`.
    #[inline(always)]
    fn read64(&self, at: usize) -> u64 {
        let p = self.payload;
        if at == 0 {
            // The tag, then the payload's first 7 bytes (the key has at least 8), composed in
            // a register: a word read back from narrower stores would wait for them.
            let head = match p.get(..8) {
                Some(w) => u64::from_le_bytes(w.try_into().expect("8 bytes")),
                None => partial_word(&p[..7]),
            };
            (head << 8) | u64::from(self.tag)
        } else {
            u64::from_le_bytes(p[at - 1..at + 7].try_into().expect("8 bytes"))
        }
    }

    /// The 4 bytes at `at..at + 4`, little-endian; `at + 4 <= len`.
    #[inline(always)]
    fn read32(&self, at: usize) -> u32 {
        let p = self.payload;
        if at == 0 {
            u32::from_le_bytes([self.tag, p[0], p[1], p[2]])
        } else {
            u32::from_le_bytes(p[at - 1..at + 3].try_into().expect("4 bytes"))
        }
    }

    /// Byte `at`; `at < len`.
    #[inline(always)]
    fn byte(&self, at: usize) -> u8 {
        if at == 0 {
            self.tag
        } else {
            self.payload[at - 1]
        }
    }

    /// Word `q` (bytes `8q..8q + 8`), zero-filled past the end: built in a register (a
    /// word read back from narrower stores would wait for them: see `partial_word`).
    #[inline(always)]
    fn word(&self, q: usize) -> u64 {
        let len = ProbeKey::len(self);
        if 8 * q + 8 <= len {
            return self.read64(8 * q);
        }
        let rest = len - 8 * q;
        if len >= 8 {
            // The key's last 8 bytes, shifted down to its last `rest`.
            return self.read64(len - 8) >> (8 * (8 - rest));
        }
        (0..rest).fold(0, |w, k| w | u64::from(self.byte(k)) << (8 * k))
    }
}

impl ProbeKey for Tagged<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        1 + self.payload.len()
    }

    #[inline(always)]
    fn hash(&self, seed: u64) -> u64 {
        let len = ProbeKey::len(self);
        match len {
            1..=3 => xxh3_1to3(self, seed),
            4..=8 => xxh3_4to8(self, seed),
            9..=16 => xxh3_9to16(self, seed),
            17..=128 => xxh3_17to128(self, seed),
            129..=240 => xxh3_129to240(self, seed),
            _ => {
                let mut joined = Vec::with_capacity(len);
                joined.push(self.tag);
                joined.extend_from_slice(self.payload);
                xxh3_64_with_seed(&joined, seed)
            }
        }
    }

    #[inline(always)]
    fn matches(&self, word: impl Fn(usize) -> u64) -> bool {
        let p = self.payload;
        let len = ProbeKey::len(self);
        let n = len / 8;
        if p.len() >= 8 {
            // The common case (a `str` key of 8 bytes or more), without a branch per word:
            // word 0 is the tag and 7 payload bytes, word `q` the payload's `8q - 1..8q + 7`,
            // and the last partial word the payload's last 8 bytes shifted down (1.65x the
            // bytes compare in a standalone loop when every word went through `read64`).
            let head = u64::from_le_bytes(p[..8].try_into().expect("8 bytes")) << 8;
            if word(0) != head | u64::from(self.tag) {
                return false;
            }
            let mid = p[7..].chunks_exact(8);
            if !mid
                .enumerate()
                .all(|(q, c)| word(q + 1) == u64::from_le_bytes(c.try_into().expect("8 bytes")))
            {
                return false;
            }
            let rest = len % 8;
            if rest == 0 {
                return true;
            }
            let last = u64::from_le_bytes(p[p.len() - 8..].try_into().expect("8 bytes"));
            return (word(n) ^ (last >> (8 * (8 - rest)))) & (u64::MAX >> (64 - 8 * rest)) == 0;
        }
        if !(0..n).all(|q| word(q) == self.read64(8 * q)) {
            return false;
        }
        let rest = len % 8;
        if rest == 0 {
            return true;
        }
        let mask = u64::MAX >> (64 - 8 * rest);
        (word(n) ^ self.word(n)) & mask == 0
    }
}

// XXH3-64 for inputs of 1 to 240 bytes with a seed and the default secret, as the XXH3
// specification defines it (xxhash.h), over `Tagged`'s bytes.

/// XXH3's default secret ("kSecret" in the specification).
const SECRET: [u8; 192] = [
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
];

const PRIME64_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME64_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME64_3: u64 = 0x1656_67B1_9E37_79F9;
const PRIME_MX1: u64 = 0x1656_6791_9E37_79F9;
const PRIME_MX2: u64 = 0x9FB2_1C65_1E98_DF25;

#[inline(always)]
fn secret64(at: usize) -> u64 {
    u64::from_le_bytes(SECRET[at..at + 8].try_into().expect("8 bytes"))
}

#[inline(always)]
fn secret32(at: usize) -> u32 {
    u32::from_le_bytes(SECRET[at..at + 4].try_into().expect("4 bytes"))
}

#[inline(always)]
fn fold64(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// XXH64's avalanche.
#[inline(always)]
fn xxh64_avalanche(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(PRIME64_2);
    h ^= h >> 29;
    h = h.wrapping_mul(PRIME64_3);
    h ^ (h >> 32)
}

/// XXH3's avalanche.
#[inline(always)]
fn avalanche(mut h: u64) -> u64 {
    h ^= h >> 37;
    h = h.wrapping_mul(PRIME_MX1);
    h ^ (h >> 32)
}

#[inline(always)]
fn mix16(key: &Tagged<'_>, at: usize, secret: usize, seed: u64) -> u64 {
    let lo = key.read64(at) ^ secret64(secret).wrapping_add(seed);
    let hi = key.read64(at + 8) ^ secret64(secret + 8).wrapping_sub(seed);
    fold64(lo, hi)
}

#[inline(always)]
fn xxh3_1to3(key: &Tagged<'_>, seed: u64) -> u64 {
    let len = ProbeKey::len(key);
    let (c1, c2, c3) = (key.byte(0), key.byte(len >> 1), key.byte(len - 1));
    let combined =
        (u32::from(c1) << 16) | (u32::from(c2) << 24) | u32::from(c3) | ((len as u32) << 8);
    let flip = u64::from(secret32(0) ^ secret32(4)).wrapping_add(seed);
    xxh64_avalanche(u64::from(combined) ^ flip)
}

#[inline(always)]
fn xxh3_4to8(key: &Tagged<'_>, seed: u64) -> u64 {
    let len = ProbeKey::len(key);
    let seed = seed ^ (u64::from((seed as u32).swap_bytes()) << 32);
    let (in1, in2) = (key.read32(0), key.read32(len - 4));
    let flip = (secret64(8) ^ secret64(16)).wrapping_sub(seed);
    let input = u64::from(in2).wrapping_add(u64::from(in1) << 32);
    // rrmxmx
    let mut h = input ^ flip;
    h ^= h.rotate_left(49) ^ h.rotate_left(24);
    h = h.wrapping_mul(PRIME_MX2);
    h ^= (h >> 35).wrapping_add(len as u64);
    h = h.wrapping_mul(PRIME_MX2);
    h ^ (h >> 28)
}

#[inline(always)]
fn xxh3_9to16(key: &Tagged<'_>, seed: u64) -> u64 {
    let len = ProbeKey::len(key);
    let flip1 = (secret64(24) ^ secret64(32)).wrapping_add(seed);
    let flip2 = (secret64(40) ^ secret64(48)).wrapping_sub(seed);
    let lo = key.read64(0) ^ flip1;
    let hi = key.read64(len - 8) ^ flip2;
    let acc = (len as u64)
        .wrapping_add(lo.swap_bytes())
        .wrapping_add(hi)
        .wrapping_add(fold64(lo, hi));
    avalanche(acc)
}

#[inline(always)]
fn xxh3_17to128(key: &Tagged<'_>, seed: u64) -> u64 {
    let len = ProbeKey::len(key);
    let mut acc = (len as u64).wrapping_mul(PRIME64_1);
    if len > 32 {
        if len > 64 {
            if len > 96 {
                acc = acc.wrapping_add(mix16(key, 48, 96, seed));
                acc = acc.wrapping_add(mix16(key, len - 64, 112, seed));
            }
            acc = acc.wrapping_add(mix16(key, 32, 64, seed));
            acc = acc.wrapping_add(mix16(key, len - 48, 80, seed));
        }
        acc = acc.wrapping_add(mix16(key, 16, 32, seed));
        acc = acc.wrapping_add(mix16(key, len - 32, 48, seed));
    }
    acc = acc.wrapping_add(mix16(key, 0, 0, seed));
    acc = acc.wrapping_add(mix16(key, len - 16, 16, seed));
    avalanche(acc)
}

#[inline(never)] // rare: out of the way of the short paths
fn xxh3_129to240(key: &Tagged<'_>, seed: u64) -> u64 {
    const START_OFFSET: usize = 3;
    const LAST_OFFSET: usize = 17;
    const SECRET_SIZE_MIN: usize = 136;
    let len = ProbeKey::len(key);
    let mut acc = (len as u64).wrapping_mul(PRIME64_1);
    let rounds = len / 16;
    for i in 0..8 {
        acc = acc.wrapping_add(mix16(key, 16 * i, 16 * i, seed));
    }
    acc = avalanche(acc);
    for i in 8..rounds {
        acc = acc.wrapping_add(mix16(key, 16 * i, 16 * (i - 8) + START_OFFSET, seed));
    }
    acc = acc.wrapping_add(mix16(key, len - 16, SECRET_SIZE_MIN - LAST_OFFSET, seed));
    avalanche(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        (0..n as u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed).to_le_bytes()[3])
            .collect()
    }

    #[test]
    fn tagged_keys_hash_and_compare_as_their_bytes() {
        for len in 0..300 {
            for seed in [0, 1, 0xDEAD_BEEF, u64::MAX, 0x1234_5678_9ABC_DEF0] {
                let payload = bytes(len, seed);
                let key = Tagged {
                    tag: (len % 11) as u8,
                    payload: &payload,
                };
                let joined: Vec<u8> = [&[key.tag][..], &payload].concat();
                assert_eq!(
                    key.hash(seed),
                    xxh3_64_with_seed(&joined, seed),
                    "len {} seed {seed:#x}",
                    joined.len()
                );
                assert_eq!(joined.hash(seed), xxh3_64_with_seed(&joined, seed));
                // Stored words: the key, then other bytes (a value) in the last word.
                let mut stored = joined.clone();
                stored.extend_from_slice(&[0xAB; 8]);
                let word =
                    |q: usize| u64::from_le_bytes(stored[8 * q..8 * q + 8].try_into().unwrap());
                assert!(key.matches(word), "len {}", joined.len());
                assert!(joined.as_slice().matches(word));
                for at in 0..joined.len() {
                    let mut other = stored.clone();
                    other[at] ^= 1;
                    let word =
                        |q: usize| u64::from_le_bytes(other[8 * q..8 * q + 8].try_into().unwrap());
                    assert!(!key.matches(word) && !joined.as_slice().matches(word));
                }
            }
        }
    }
}
