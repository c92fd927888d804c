//! Criterion benchmarks live in the bench targets of this package; fixtures they share with
//! its examples live here.

pub mod shm_bytes;
pub mod typed_cost;
