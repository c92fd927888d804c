//! Whole-table work, each one `impl` block of [`crate::SharedMap`] on top of `table/`:
//!
//! - `grow.rs`: replacing a full table by one twice its size (`docs/growth.md`);
//! - `reclaim.rs`: returning tombstones to EMPTY and recounting pass counts;
//! - `compact.rs`: moving entries back to the earliest tombstone of their probe;
//! - `validate.rs`: the first open of a file-backed map, undoing what a crash tore;
//! - `sweep.rs`: freeing the heap blocks killed writers left allocated;
//! - `clear.rs`: emptying the map in place, its memory given back.
//!
//! Everything here imports from `table/` and the bottom of the crate; nothing in `table/`
//! imports from here (it calls these methods on `self`).

mod clear;
mod compact;
mod grow;
mod reclaim;
mod sweep;
mod validate;

pub use grow::Grown;
pub use reclaim::Reclaimed;
pub use sweep::Compacted;
