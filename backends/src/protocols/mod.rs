//! The synchronisation protocols, each an implementation of [`crate::Protocol`] that never
//! imports the table, as parking_lot's `raw_*` types implement lock_api's traits:
//!
//! - `striped.rs`: writers of one key serialise on its stripe (`stripes.rs`) and journal what
//!   they do in a registry record (`crate::recovery`); readers follow a [`ReadDiscipline`]:
//!   - `lockfree.rs`: [`Seqlock`], copy then validate, never a write to shared memory;
//!   - `spinlock.rs`: [`SlotLocks`], each bucket read under a CAS-taken lock;
//! - `mutex.rs`: [`GlobalMutex`], one process-shared pthread mutex for everything.
//!
//! The maps themselves (`SharedMap<P>` for each) are named in `lib.rs`.

mod lockfree;
mod mutex;
mod spinlock;
mod striped;
mod stripes;

pub use lockfree::Seqlock;
pub use mutex::GlobalMutex;
pub use spinlock::SlotLocks;
pub use striped::{ReadDiscipline, Striped};
