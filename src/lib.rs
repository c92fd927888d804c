//! `shmap`: the contract and the shared-memory substrate of a hash map that many processes
//! read and write at once.
//!
//! - [`MapOps`]: the operations every map honours, wherever it lives; [`MapBackend`]: how a
//!   shared-memory map is opened, and what shared memory adds (see `shmap-backends`).
//! - [`Segment`]: a named POSIX shared-memory segment with a validated header.
//! - [`RawTable`]: the open-addressing table inside it, with word-wise atomic slot copies.
//! - [`Meta`]: the per-slot control word and its state table.
//! - [`ProbeKey`]: a key as lookups read it, contiguous or [`Tagged`] (never copied together).

mod backoff;
mod byte_lock;
mod closable;
mod contract;
mod error;
pub mod heap;
mod layout;
mod liveness;
mod meta;
mod owner;
mod params;
mod probe_key;
mod raw_table;
mod segment;
mod shm_file;
mod value_words;
mod word;

pub use backoff::{set_stall_timeout, stall_timeout, Backoff, OWNER_CHECK_EVERY, STALL_TIMEOUT};
pub use byte_lock::{lock_byte, ByteLock};
pub use closable::Closable;
pub use contract::{
    compare_exchange_by_update, get_or_insert_by_update, remove_entry_by_update, Inserted,
    MapBackend, MapOps, Update,
};
pub use error::{Error, Result};
pub use layout::{Layout, BUCKET_BYTES, HEADER_LEN, REGION_ALIGN};
pub use liveness::LockFile;
pub use meta::{Meta, SlotState, OWNER_BITS};
pub use owner::current_owner;
pub use params::{
    table_number, AttachOptions, BackendKind, MapParams, EMPTIED, MAX_CAPACITY, MAX_GENERATIONS,
    MAX_KEY_SIZE_LIMIT, MAX_SEGMENT_BYTES, MAX_VALUE_SIZE_LIMIT, TABLE_NUMBER_BITS,
};
pub use probe_key::{ProbeKey, Tagged};
pub use raw_table::{
    Entry, KeyHash, Probe, RawTable, EMPTYING_SAMPLE, FILL_LIMIT_MIN_CAPACITY,
    GIVE_BACK_MIN_CAPACITY, JOURNAL_WORDS,
};
pub use segment::{Header, Segment, LAYOUT_VERSION, MAGIC};
pub use shm_file::{
    remove_abandoned, remove_abandoned_at, Location, ATTACH_WAIT, CREATE_WAIT, CREATING_BYTE,
    HANDLES_BYTE, RESIZE_BYTE, SESSION_BYTE,
};
pub use value_words::{NoValue, Origin, ValueSink, ValueWords};
pub use word::Word;

/// Removes the segment `name` without attaching to it.
pub fn unlink(name: &str) -> Result<()> {
    Segment::unlink_name(name)
}
