//! Where everything lives in a segment, computed from the parameters alone.
//!
//! ```text
//! 0                HEADER_LEN      meta_offset          passes_offset         slots_offset          total_len
//! | header (256 B) | backend area  | meta: 8 B per bucket | passes: 1 B per bucket | slots: slot_stride each |
//! ```
//! The pass counts (`raw_table/passes.rs`) say how many entries' probes pass each bucket; a
//! lookup of an absent key stops at the first bucket no probe passes. They are bytes apart
//! from the control words so that they cost a lookup one small array (1/8 of the control
//! words'), and a lookup that ends at its home bucket never touches them.
//! A slot is one length word (`key_len | value_len << 32`), then the key padded to whole 8-byte
//! words, then the value padded to whole words, then one checksum word (file-backed maps only,
//! see [`crate::RawTable::entry_sum`]; 0 and unused in shared memory): every byte is read and
//! written as an `AtomicU64`, so no access of one size ever overlaps one of another.
//!
//! The checksum word comes last so that a small entry's length word, key and value share the
//! slot's first cache line: with the checksum second (layout 4), a 9-byte value after a 32-byte
//! key area ended one byte into the next line, and every get and set of such an entry touched
//! two slot lines.

use crate::error::{Error, Result};
use crate::params::{MapParams, MAX_SEGMENT_BYTES};

/// Bytes reserved for the header at the start of every segment.
pub const HEADER_LEN: usize = 256;
/// Alignment of every region: a cache line, so regions never share one.
pub const REGION_ALIGN: usize = 64;

/// Byte offsets and sizes of a segment's regions; equal for every process attached to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub params: MapParams,
    pub backend_offset: usize,
    pub backend_len: usize,
    pub meta_offset: usize,
    /// The pass counts: one byte per bucket, accessed only as `AtomicU8`.
    pub passes_offset: usize,
    pub slots_offset: usize,
    /// Bytes from one slot to the next: a multiple of 8.
    pub slot_stride: usize,
    /// Key area of a slot in 8-byte words.
    pub key_words: usize,
    /// Value area of a slot in 8-byte words.
    pub value_words: usize,
    pub total_len: usize,
}

fn too_large(what: &'static str) -> Error {
    Error::InvalidParameter {
        what,
        reason: format!("the segment would exceed {MAX_SEGMENT_BYTES} bytes"),
    }
}

fn align_up(n: usize, to: usize) -> Option<usize> {
    n.checked_add(to - 1).map(|v| v / to * to)
}

/// Words of a slot besides key and value: the length word in front, the checksum word after.
pub const SLOT_EXTRA_WORDS: usize = 2;

/// Bytes of one slot for `params`: the length and checksum words, then key and value in whole
/// words (saturating, so absurd parameters yield a size the layout then refuses).
pub fn slot_stride_for(params: &MapParams) -> usize {
    let words = params.max_key_size.div_ceil(8) + params.max_value_size.div_ceil(8);
    words.saturating_add(SLOT_EXTRA_WORDS).saturating_mul(8)
}

impl Layout {
    /// The layout for `params` with a backend area of `backend_len` bytes.
    pub fn new(params: MapParams, backend_len: usize) -> Result<Self> {
        params.validate()?;
        let key_words = params.max_key_size.div_ceil(8);
        let value_words = params.max_value_size.div_ceil(8);
        let slot_stride = slot_stride_for(&params);
        let backend_offset = HEADER_LEN;
        let meta_offset = backend_offset
            .checked_add(backend_len)
            .and_then(|end| align_up(end, REGION_ALIGN))
            .ok_or_else(|| too_large("backend area"))?;
        let passes_offset = params
            .capacity
            .checked_mul(8)
            .and_then(|m| meta_offset.checked_add(m))
            .and_then(|end| align_up(end, REGION_ALIGN))
            .ok_or_else(|| too_large("capacity"))?;
        let slots_offset = passes_offset
            .checked_add(params.capacity)
            .and_then(|end| align_up(end, REGION_ALIGN))
            .ok_or_else(|| too_large("capacity"))?;
        let total_len = params
            .capacity
            .checked_mul(slot_stride)
            .and_then(|s| slots_offset.checked_add(s))
            .filter(|&t| t <= MAX_SEGMENT_BYTES)
            .ok_or_else(|| too_large("capacity"))?;
        Ok(Self {
            params,
            backend_offset,
            backend_len,
            meta_offset,
            passes_offset,
            slots_offset,
            slot_stride,
            key_words,
            value_words,
            total_len,
        })
    }

    /// Memory one bucket costs: its meta word, its pass count and its slot.
    pub fn bytes_per_bucket(&self) -> usize {
        8 + 1 + self.slot_stride
    }
}
