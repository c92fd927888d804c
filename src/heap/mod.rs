//! The heap: where a map's records live out of line, by size class, so that memory follows the
//! data rather than the largest entry allowed (`docs/variable-size-entries.md`).
//!
//! Built so far (step 2 of the design's plan, in parts):
//! - [`classes`]: the size classes, eight per doubling, and the shape of a run of one class;
//! - [`free_list`]: the lock-free free list of one class, over the loom shim, with the reuse
//!   rule that lets a block be reused at once, without epochs, under seqlock readers.
//!
//! To come in the same step: the heap file (its reservation, header and growth), runs with
//! their allocation bitmaps, large runs, and the bounds checks every read goes through.

pub mod classes;
pub mod free_list;
