//! The harness's floor: the same workload loop over a map that does nothing. Its cost per
//! operation is what the harness itself spends choosing keys, rolling the mix and sampling
//! latency; every sweep prints it beside the real maps so a harness that measures itself
//! (as it once did, formatting an error string on every get) shows up at once.

use super::Target;

/// Answers every call at once: gets find the key (so the loop takes its "found" path, the
/// one real maps take) but copy nothing; writes store nothing.
#[derive(Debug, Default)]
pub struct NullTarget;

impl Target for NullTarget {
    #[inline(never)] // a call, as a real map's get is: the floor must not be optimised away
    fn get(&self, _key: &[u8], _buf: &mut Vec<u8>) -> Result<bool, String> {
        Ok(true)
    }

    #[inline(never)]
    fn insert(&self, _key: &[u8], _value: &[u8]) -> Result<(), String> {
        Ok(())
    }

    #[inline(never)]
    fn remove(&self, _key: &[u8]) -> Result<bool, String> {
        Ok(true)
    }
}
