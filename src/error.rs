//! The one error type of every backend: each failure a caller can act on has its own variant.

use std::io;

/// Everything that can go wrong with a shared map. A call that returns an error changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The segment name cannot be a POSIX shared-memory name.
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    /// A creation parameter is zero, too large, or makes the segment too large.
    #[error("invalid parameter {what}: {reason}")]
    InvalidParameter { what: &'static str, reason: String },

    /// `create` found a map of that name already (the label says where: a shared-memory
    /// name, a file, or `NAME at redis://...`).
    #[error("map {0:?} already exists")]
    AlreadyExists(String),

    /// `attach` (or `unlink`) found no map of that name.
    #[error("map {0:?} does not exist")]
    NotFound(String),

    /// The segment exists but was not made by this library (or never finished initialising).
    #[error("segment {name:?} is not a shared map: {reason}")]
    NotOurs { name: String, reason: String },

    /// The segment's creator died before it finished initialising it: nothing can attach.
    /// `remove_abandoned` (or a create that may replace it) removes it.
    #[error("segment {name:?} was abandoned by a creator that died before initialising it; remove it (shmap::remove_abandoned, shared_hashmap.unlink) or create it again allowing replacement")]
    Abandoned { name: String },

    /// The segment belongs to another user, or others may write it: attaching would let them
    /// feed this process whatever they like. Refused unless the caller trusts it explicitly.
    #[error("segment {name:?} is not trusted: {reason}; attach with trust_foreign to accept it")]
    Untrusted { name: String, reason: String },

    /// `/dev/shm` (or the file system holding the map) cannot back the segment.
    #[error("not enough room in {fs} for segment {name:?}: it needs {needed} bytes, {available} are free")]
    NoSpace {
        /// The directory whose file system is full (`/dev/shm` for shared memory).
        fs: String,
        name: String,
        needed: u64,
        available: u64,
    },

    /// The segment was made by an incompatible layout version of this library.
    #[error("segment {name:?} has layout version {found}, this library reads version {expected}")]
    IncompatibleVersion {
        name: String,
        found: u64,
        expected: u64,
    },

    /// The segment was made by another backend than the one attaching.
    #[error("segment {name:?} was created by the {found} backend, not {expected}")]
    WrongBackend {
        name: String,
        found: String,
        expected: &'static str,
    },

    /// A header field or slot word contradicts the layout: the segment was damaged or tampered with.
    #[error("segment {name:?} is corrupt: {reason}")]
    Corrupt { name: String, reason: String },

    /// The key is longer than the map's `max_key_size`.
    #[error("key of {size} bytes exceeds the maximum of {max}")]
    KeyTooLarge { size: usize, max: usize },

    /// The value is longer than the map's `max_value_size`.
    #[error("value of {size} bytes exceeds the maximum of {max}")]
    ValueTooLarge { size: usize, max: usize },

    /// The table takes no more new keys and cannot grow: every bucket holds an entry, or (in a
    /// table of 1,024 buckets or more) 7/8 of them do, past which misses would grow long
    /// (`RawTable::empty_claims_allowed`). The new key was not inserted.
    #[error("the table is full: its {capacity} buckets take no more new keys")]
    TableFull { capacity: usize },

    /// A lock or slot stayed busy past the bounded wait: a live holder that does not progress
    /// (a stopped process), or, for the mutex backend only, a holder that died.
    #[error("gave up after {waited_ms} ms waiting for {what} held by owner {owner:#x}")]
    Stalled {
        what: &'static str,
        owner: u64,
        waited_ms: u64,
    },

    /// Every record of the segment's process registry belongs to a live handle.
    #[error("segment {name:?} has no free registry record: {records} handles are writing to it")]
    TooManyHandles { name: String, records: usize },

    /// The server holding the map (a Redis map) could not be reached, dropped the connection,
    /// or did not answer within the timeout. A write that met this error may or may not have
    /// been applied, in whole (each write is one atomic command or script on the server).
    #[error("redis server {url}: {reason}")]
    Connection { url: String, reason: String },

    /// The server (a Redis map's) refused this client: a wrong user name or password, or a
    /// user whose rights (Redis ACLs) do not cover a command or key the call needs. The
    /// reason names what was missing. Nothing was changed.
    #[error("redis server {url} refused access: {reason}")]
    PermissionDenied { url: String, reason: String },

    /// An operating-system call failed.
    #[error("{op} failed for segment {name:?}: {source}")]
    Io {
        op: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
}

/// The result type of every map operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
