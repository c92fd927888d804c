//! Crash recovery of the striped protocols: who holds a lock or slot and whether it is alive
//! (`registry.rs`, one record per operation in flight), this handle's records lent out one per
//! operation (`leases.rs`), and the repair that finishes or undoes what a killed process was
//! doing (`repair.rs`).
//!
//! Depends only on the bottom of the crate (`journal`, `slot`, `generations`); used only by
//! `protocols/striped.rs`. The leases call the repair, and the repair reaches back to them
//! only through the [`repair::Recoverer`] trait they implement, so there is no circle.

mod leases;
mod registry;
mod repair;

pub use leases::{Lease, Leases};
pub use registry::{registry_len, Registry, RECORDS};
