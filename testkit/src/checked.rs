//! Self-checking values for concurrency tests and the harness: every byte of a value is derived
//! from a header inside it, so a value torn between two writes (or stored under the wrong key)
//! fails [`verify`].

/// Smallest checked value: the 16-byte header.
pub const MIN_LEN: usize = 16;

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser: cheap, and every input bit reaches every output bit.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A value of `len` bytes (at least [`MIN_LEN`]) for key number `key_id`, unique to `stamp`.
pub fn make(key_id: u64, stamp: u64, len: usize) -> Vec<u8> {
    assert!(len >= MIN_LEN);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&key_id.to_le_bytes());
    v.extend_from_slice(&stamp.to_le_bytes());
    let mut state = mix(key_id ^ mix(stamp) ^ len as u64);
    while v.len() < len {
        state = mix(state);
        let take = (len - v.len()).min(8);
        v.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    v
}

/// A reproducible stream of random numbers for tests and benchmarks (splitmix64: the same
/// finaliser as [`make`]'s bytes).
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        (mix(self.0) % n as u64) as usize
    }
}

/// Checks that `value` is exactly what [`make`] wrote for `key_id`; returns its stamp.
pub fn verify(key_id: u64, value: &[u8]) -> Result<u64, String> {
    if value.len() < MIN_LEN {
        return Err(format!(
            "value of {} bytes is shorter than a header",
            value.len()
        ));
    }
    let stored_key = u64::from_le_bytes(value[..8].try_into().expect("8 bytes"));
    let stamp = u64::from_le_bytes(value[8..16].try_into().expect("8 bytes"));
    if stored_key != key_id {
        return Err(format!(
            "value of key {stored_key} returned for key {key_id}"
        ));
    }
    if make(key_id, stamp, value.len()) != value {
        return Err(format!(
            "torn value for key {key_id} (stamp {stamp:#x}, {} bytes)",
            value.len()
        ));
    }
    Ok(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_verifies_and_any_mix_of_two_does_not() {
        let a = make(7, 1, 64);
        let b = make(7, 2, 64);
        assert_eq!(verify(7, &a), Ok(1));
        assert!(verify(8, &a).is_err(), "wrong key");
        // Any splice after the key id (which both share) mixes two stamps.
        for cut in [9, 16, 24, 56, 63] {
            for (x, y) in [(&a, &b), (&b, &a)] {
                let mut torn = x[..cut].to_vec();
                torn.extend_from_slice(&y[cut..]);
                assert!(verify(7, &torn).is_err(), "torn at {cut}");
            }
        }
        assert!(verify(7, &a[..40]).is_err(), "truncated");
    }
}
