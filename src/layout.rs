//! Where everything lives in a segment, computed from the parameters alone.
//!
//! ```text
//! 0                HEADER_LEN      meta_offset                     passes_offset            total_len
//! | header (256 B) | backend area  | buckets: 16 B each             | passes: 1 B per bucket |
//! ```
//! A bucket is two words side by side: the control word (`Meta`), then the reference word
//! that names the entry's record in the map's heap (`crate::heap::Ref`; meaningful only under
//! a FULL control word). Side by side, so that a probe that reads a control word has the
//! reference in the same cache line. The records themselves (key and value bytes, and a
//! checksum word in file-backed maps) live in the heap file beside the segment
//! (`docs/variable-size-entries.md`), so a bucket costs 17 bytes whatever the entry's size,
//! and `max_key_size` / `max_value_size` are limits that cost no memory.
//!
//! The pass counts (`raw_table/passes.rs`) say how many entries' probes pass each bucket; a
//! lookup of an absent key stops at the first bucket no probe passes. They are bytes apart
//! from the buckets so that they cost a lookup one small array (1/16 of the buckets'), and a
//! lookup that ends at its home bucket never touches them.

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
    /// The buckets: [`BUCKET_BYTES`] each, the control word first.
    pub meta_offset: usize,
    /// The pass counts: one byte per bucket, accessed only as `AtomicU8`.
    pub passes_offset: usize,
    /// Bucket 0's reference word (`meta_offset + 8`): kept in the header, with
    /// [`Layout::slot_stride`], so that tools that read a segment find both words.
    pub slots_offset: usize,
    /// Bytes from one bucket to the next: [`BUCKET_BYTES`].
    pub slot_stride: usize,
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

/// Bytes of one bucket: its control word and its reference word.
pub const BUCKET_BYTES: usize = 16;

impl Layout {
    /// The layout for `params` with a backend area of `backend_len` bytes.
    pub fn new(params: MapParams, backend_len: usize) -> Result<Self> {
        params.validate()?;
        let backend_offset = HEADER_LEN;
        let meta_offset = backend_offset
            .checked_add(backend_len)
            .and_then(|end| align_up(end, REGION_ALIGN))
            .ok_or_else(|| too_large("backend area"))?;
        let passes_offset = params
            .capacity
            .checked_mul(BUCKET_BYTES)
            .and_then(|m| meta_offset.checked_add(m))
            .and_then(|end| align_up(end, REGION_ALIGN))
            .ok_or_else(|| too_large("capacity"))?;
        let total_len = passes_offset
            .checked_add(params.capacity)
            .and_then(|end| align_up(end, REGION_ALIGN))
            .filter(|&t| t <= MAX_SEGMENT_BYTES)
            .ok_or_else(|| too_large("capacity"))?;
        Ok(Self {
            params,
            backend_offset,
            backend_len,
            meta_offset,
            passes_offset,
            slots_offset: meta_offset + 8,
            slot_stride: BUCKET_BYTES,
            total_len,
        })
    }

    /// Memory one bucket costs in the segment: its two words and its pass count (the
    /// entry's record is in the heap).
    pub fn bytes_per_bucket(&self) -> usize {
        BUCKET_BYTES + 1
    }
}
