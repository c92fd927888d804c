//! A seeded random source for tests.

/// xorshift64: a seeded source for choosing keys, operations and pauses (not `rand`: tests
/// replay exactly from their seed, whatever crate versions resolve).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n` (> 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
