//! Criterion benchmarks live in the bench targets of this package; fixtures they share with
//! its examples live here.

pub mod typed_cost;
