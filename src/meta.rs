//! The control word in front of every slot: its state, a hash tag, and a version or an owner.
//!
//! | bits  | stable word (`B` = 0)        | busy word (`B` = 1)                     |
//! |-------|------------------------------|-----------------------------------------|
//! | 0     | `B` = 0                      | `B` = 1: a writer (or a spinlock reader) holds the slot |
//! | 1-2   | state                        | state the slot had when it was taken    |
//! | 3-18  | 16-bit hash tag (FULL only)  | same tag                                |
//! | 19-63 | version, +1 per publication  | owner: registry record + generation     |
//!
//! States and transitions (all by CAS or by the holder's store):
//!
//! | from              | to                       | by                                         |
//! |-------------------|--------------------------|--------------------------------------------|
//! | EMPTY / TOMBSTONE | busy (claim)             | an inserter of a new key                   |
//! | busy (claim)      | FULL, version + 1        | the claimer, after writing key and value   |
//! | FULL              | busy FULL                | the updater of that key                    |
//! | busy FULL         | FULL, version + 1        | the updater, after writing the value       |
//! | FULL              | TOMBSTONE, version + 1   | the remover of that key (one CAS)          |
//! | TOMBSTONE         | EMPTY, version + 1       | a reclaim, with every writer excluded, only where no present key's probe passes (one CAS) |
//!
//! Nothing else returns to EMPTY, and a reclaim only frees slots no present key lies beyond
//! while nobody can place one there: so an EMPTY slot proves that no key whose probe sequence
//! passes it lies beyond it, and a reader may stop there. A reader may also stop at any slot
//! whose pass count is 0 (`raw_table/passes.rs`), whatever its state: that is what keeps
//! tombstones from lengthening misses. A zeroed word is a stable EMPTY slot
//! of version 0, so a fresh segment needs no initialisation.

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Never used.
    Empty = 0,
    /// Holds a published entry.
    Full = 1,
    /// Held an entry that was removed; may be reused by an inserter.
    Tombstone = 2,
}

const BUSY: u64 = 1;
const STATE_SHIFT: u32 = 1;
const TAG_SHIFT: u32 = 3;
const HIGH_SHIFT: u32 = 19;
const VERSION_MASK: u64 = (1 << 45) - 1;
/// Width of the owner identity a busy word carries.
pub const OWNER_BITS: u32 = 64 - HIGH_SHIFT;
const OWNER_MASK: u64 = (1 << OWNER_BITS) - 1;

/// A decoded-on-demand control word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta(pub u64);

impl Meta {
    /// A stable word.
    pub const fn stable(state: SlotState, tag: u16, version: u64) -> Self {
        Self(
            ((version & VERSION_MASK) << HIGH_SHIFT)
                | (tag as u64) << TAG_SHIFT
                | (state as u64) << STATE_SHIFT,
        )
    }

    /// The busy word `owner` stores to take this (stable) slot, keeping its state and tag.
    /// Owners are [`OWNER_BITS`] wide; higher bits are dropped.
    pub const fn busy(self, owner: u64) -> Self {
        Self((self.0 & ((1 << HIGH_SHIFT) - 1)) | (owner & OWNER_MASK) << HIGH_SHIFT | BUSY)
    }

    /// The stable word that publishes `state` after this one, with the next version.
    pub const fn next(self, state: SlotState, tag: u16) -> Self {
        Self::stable(state, tag, self.version().wrapping_add(1))
    }

    /// Whether a writer or lock holder owns the slot.
    pub const fn is_busy(self) -> bool {
        self.0 & BUSY != 0
    }

    /// The state, or `None` for the one bit pattern no writer produces (a corrupt word).
    pub const fn state(self) -> Option<SlotState> {
        match (self.0 >> STATE_SHIFT) & 3 {
            0 => Some(SlotState::Empty),
            1 => Some(SlotState::Full),
            2 => Some(SlotState::Tombstone),
            _ => None,
        }
    }

    /// Whether this is a stable EMPTY word (a probe ends here). One compare: a probe tests it
    /// on every slot, and a `match` on the state compiled to a jump table whose indirect
    /// branch mispredicted on probes through mixed states (perf, `read-heavy`).
    #[inline(always)]
    pub const fn is_stable_empty(self) -> bool {
        self.0 & (BUSY | 3 << STATE_SHIFT) == 0
    }

    /// Whether this is a stable TOMBSTONE word (a slot an inserter may take).
    #[inline(always)]
    pub const fn is_stable_tombstone(self) -> bool {
        self.0 & (BUSY | 3 << STATE_SHIFT) == (SlotState::Tombstone as u64) << STATE_SHIFT
    }

    /// Whether this is a FULL word (busy or not) carrying `tag`: the only slots a probe for a
    /// key with that tag needs to look into. One compare, as [`Meta::is_stable_empty`].
    #[inline(always)]
    pub const fn is_full_with_tag(self, tag: u16) -> bool {
        const MASK: u64 = (3 << STATE_SHIFT) | (0xFFFF << TAG_SHIFT);
        self.0 & MASK == (SlotState::Full as u64) << STATE_SHIFT | (tag as u64) << TAG_SHIFT
    }

    /// Whether the state bits hold the pattern no writer produces.
    #[inline(always)]
    pub const fn is_corrupt(self) -> bool {
        (self.0 >> STATE_SHIFT) & 3 == 3
    }

    /// The hash tag of the entry (0 unless FULL).
    pub const fn tag(self) -> u16 {
        (self.0 >> TAG_SHIFT) as u16
    }

    /// The version of a stable word.
    pub const fn version(self) -> u64 {
        (self.0 >> HIGH_SHIFT) & VERSION_MASK
    }

    /// The owner of a busy word.
    pub const fn owner(self) -> u64 {
        self.0 >> HIGH_SHIFT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_do_not_overlap() {
        let m = Meta::stable(SlotState::Full, 0xBEEF, VERSION_MASK);
        assert_eq!(m.state(), Some(SlotState::Full));
        assert_eq!(
            (m.tag(), m.version(), m.is_busy()),
            (0xBEEF, VERSION_MASK, false)
        );
        let b = m.busy(u64::MAX);
        assert_eq!(
            (b.is_busy(), b.owner(), b.tag()),
            (true, OWNER_MASK, 0xBEEF)
        );
        assert_eq!(b.state(), Some(SlotState::Full));
        assert_eq!(
            m.next(SlotState::Tombstone, 0).version(),
            0,
            "the version wraps"
        );
        assert_eq!(Meta(0), Meta::stable(SlotState::Empty, 0, 0));
        assert_eq!(Meta(0b110).state(), None);
    }

    #[test]
    fn the_one_compare_tests_agree_with_the_fields() {
        for state in [SlotState::Empty, SlotState::Full, SlotState::Tombstone] {
            for tag in [0u16, 1, 0xBEEF, 0xFFFF] {
                for busy in [false, true] {
                    let stable = Meta::stable(state, tag, 12345);
                    let m = if busy { stable.busy(77) } else { stable };
                    assert_eq!(m.is_stable_empty(), state == SlotState::Empty && !busy);
                    assert_eq!(
                        m.is_stable_tombstone(),
                        state == SlotState::Tombstone && !busy
                    );
                    for probe in [0u16, 1, 0xBEEF, 0xFFFF] {
                        assert_eq!(
                            m.is_full_with_tag(probe),
                            state == SlotState::Full && tag == probe,
                            "{m:?} {probe}"
                        );
                    }
                    assert!(!m.is_corrupt());
                }
            }
        }
        assert!(Meta(0b110).is_corrupt() && Meta(0b111).is_corrupt());
        assert!(!Meta(0b110).is_stable_empty() && !Meta(0b110).is_full_with_tag(0));
    }
}
