//! The heap: where a map's records live out of line, by size class, so that memory follows the
//! data rather than the largest entry allowed (`docs/variable-size-entries.md`).
//!
//! Built so far (step 2 of the design's plan, in parts):
//! - [`classes`]: the size classes, eight per doubling, and the shape of a run of one class;
//! - [`free_list`]: the lock-free free list of one class, over the loom shim, with the reuse
//!   rule that lets a block be reused at once, without epochs, under seqlock readers;
//! - [`store`]: the heap file ([`Heap`]): its reservation, header and growth, runs with their
//!   allocation bitmaps, large runs punched out when freed, and the bounds checks every
//!   offset read from shared memory goes through; large records in `large.rs`;
//! - `rebuild.rs`: the bookkeeping rebuilt from the records still referenced, which gives
//!   back what killed processes left allocated ([`Heap::rebuild`]);
//! - [`record`]: a record's bytes and the bucket word that names it ([`Ref`]): writing,
//!   reading and comparing keys, every length checked against what the heap backs;
//! - `trim.rs`: runs nothing lives in given back to the kernel, their space to any class
//!   ([`Heap::trim`]);
//! - `areas.rs`, `magazine.rs`: each handle's magazines, in an area of the heap that whoever
//!   outlives a killed handle drains;
//! - `sweep.rs`: blocks killed processes left allocated, found and freed with other handles
//!   open ([`Heap::sweep`]);
//! - `compact.rs`: the runs churn left sparse chosen and emptied, their records moved by the
//!   table ([`Heap::plan_compaction`]);
//! - `census.rs`: where the resident pages are, by kind of run ([`Heap::census`]).

mod areas;
mod census;
pub mod classes;
mod compact;
pub mod free_list;
#[cfg(all(test, not(loom)))]
mod hostile;
mod large;
mod magazine;
mod rebuild;
pub mod record;
mod space;
pub mod store;
mod sweep;
mod trim;

pub use census::{Census, Share};
pub use compact::Evacuation;
pub use rebuild::Rebuilt;
pub use record::{record_len, Ref};
pub use store::{Heap, DEFAULT_RESERVE, HEAP_MAGIC, HEAP_VERSION, LARGE_HEAD};
pub use trim::{Trimmed, TRIM_MIN};
