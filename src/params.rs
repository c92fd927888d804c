//! Creation parameters and the backend kinds a segment can be made by.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Largest `max_key_size` accepted, and what "no limit" stores: a record's length fields are
/// 32 bits wide (`heap/record.rs`). Limits cost no memory (entries live in the heap, by
/// size), so a map made with this one takes keys of any size the machine can hold.
pub const MAX_KEY_SIZE_LIMIT: usize = u32::MAX as usize;
/// Largest `max_value_size` accepted, and what "no limit" stores (as for keys).
pub const MAX_VALUE_SIZE_LIMIT: usize = u32::MAX as usize;
/// Largest number of buckets accepted (the slot index must fit the probe arithmetic).
pub const MAX_CAPACITY: usize = 1 << 32;
/// Most table generations a map can have: the table doubles each time, so 64 is more than
/// any capacity up to [`MAX_CAPACITY`] needs.
pub const MAX_GENERATIONS: u64 = 64;
/// Low bits of the root's generation word that number the current table; the bits above
/// count the times a table was emptied in place (`Header::generation`).
pub const TABLE_NUMBER_BITS: u32 = 8;
const _: () = assert!(MAX_GENERATIONS <= 1 << TABLE_NUMBER_BITS);
/// What emptying the current table in place adds to the generation word.
pub const EMPTIED: u64 = 1 << TABLE_NUMBER_BITS;

/// The number of the current table (0: the root's; `g > 0`: `name.t<g>`) in a generation
/// word.
#[inline]
pub const fn table_number(word: u64) -> u64 {
    word & (EMPTIED - 1)
}
/// Largest segment accepted: 1 TiB, far beyond any sane map, small enough to catch typos.
pub const MAX_SEGMENT_BYTES: usize = 1 << 40;

/// The shape of a map, fixed at creation and read back from the header on attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapParams {
    /// Number of buckets to start with. The table grows (doubling) when it is 3/4 used and
    /// at least half of it live, up to `max_capacity` (see `docs/growth.md`).
    pub capacity: usize,
    /// Longest key in bytes: a limit that costs no memory; [`MAX_KEY_SIZE_LIMIT`] is none
    /// (see [`MapParams::without_size_limits`]).
    pub max_key_size: usize,
    /// Longest value in bytes: a limit that costs no memory; [`MAX_VALUE_SIZE_LIMIT`] is none.
    pub max_value_size: usize,
    /// The most buckets the table may grow to; only a table of this size is ever full.
    /// [`MAX_CAPACITY`] by default: growth then stops only where a table would exceed
    /// [`MAX_SEGMENT_BYTES`]. Equal to `capacity`: a table that never grows.
    pub max_capacity: usize,
}

impl Default for MapParams {
    /// The defaults of the original Python package: 1024 buckets, 256-byte keys, 1024-byte values.
    fn default() -> Self {
        Self {
            capacity: 1024,
            max_key_size: 256,
            max_value_size: 1024,
            max_capacity: MAX_CAPACITY,
        }
    }
}

impl MapParams {
    /// Parameters with the given capacity and default key and value sizes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Parameters of a table that never grows: `capacity` buckets, default key and value sizes.
    pub fn fixed(capacity: usize) -> Self {
        Self {
            capacity,
            max_capacity: capacity,
            ..Self::default()
        }
    }

    /// The same parameters without a limit on key and value sizes (up to 4 GiB - 1 each,
    /// what a record's length fields hold): what Python's `max_key_size=None,
    /// max_value_size=None` asks for.
    pub fn without_size_limits(self) -> Self {
        Self {
            max_key_size: MAX_KEY_SIZE_LIMIT,
            max_value_size: MAX_VALUE_SIZE_LIMIT,
            ..self
        }
    }

    /// Whether keys are limited to less than [`MAX_KEY_SIZE_LIMIT`] bytes.
    pub fn limits_keys(&self) -> bool {
        self.max_key_size < MAX_KEY_SIZE_LIMIT
    }

    /// Whether values are limited to less than [`MAX_VALUE_SIZE_LIMIT`] bytes.
    pub fn limits_values(&self) -> bool {
        self.max_value_size < MAX_VALUE_SIZE_LIMIT
    }

    /// The same shape with `capacity` buckets (a table of another generation).
    pub fn resized(&self, capacity: usize) -> Self {
        Self { capacity, ..*self }
    }

    /// Checks each field against its limit; the segment size is checked by the layout.
    pub fn validate(&self) -> Result<()> {
        fn check(what: &'static str, value: usize, max: usize) -> Result<()> {
            if value == 0 {
                return Err(Error::InvalidParameter {
                    what,
                    reason: "must be at least 1".into(),
                });
            }
            if value > max {
                return Err(Error::InvalidParameter {
                    what,
                    reason: format!("{value} exceeds the limit of {max}"),
                });
            }
            Ok(())
        }
        check("capacity", self.capacity, MAX_CAPACITY)?;
        check("max_key_size", self.max_key_size, MAX_KEY_SIZE_LIMIT)?;
        check("max_value_size", self.max_value_size, MAX_VALUE_SIZE_LIMIT)?;
        check("max_capacity", self.max_capacity, MAX_CAPACITY)?;
        if self.max_capacity < self.capacity {
            return Err(Error::InvalidParameter {
                what: "max_capacity",
                reason: format!(
                    "{} is less than the capacity {}",
                    self.max_capacity, self.capacity
                ),
            });
        }
        Ok(())
    }
}

/// Which synchronisation protocol a segment was made for; recorded in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum BackendKind {
    /// Seqlocked slots, lock-free gets, stripe-serialised writes.
    LockFree = 1,
    /// A spinlock word per bucket, taken by gets and writes alike.
    SpinLock = 2,
    /// One process-shared `raw_sync` mutex around the whole table.
    Mutex = 3,
}

impl BackendKind {
    /// Every kind, in the order the harness and docs list them.
    pub const ALL: [BackendKind; 3] = [Self::LockFree, Self::SpinLock, Self::Mutex];

    /// The name used on command lines and in errors.
    pub const fn name(self) -> &'static str {
        match self {
            Self::LockFree => "lockfree",
            Self::SpinLock => "spinlock",
            Self::Mutex => "mutex",
        }
    }

    /// The kind recorded in a header word, if it is one.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u64 == code)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
                format!("unknown backend {s:?}; choose one of: {}", names.join(", "))
            })
    }
}

/// How [`crate::MapBackend::attach_with`] treats the segment it finds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttachOptions {
    /// Attach even to a segment another user owns or group or others may write. Whoever can
    /// write a segment chooses every byte this process reads from it (and a Python user
    /// unpickles): only for segments whose writers you trust.
    pub trust_foreign: bool,
}

impl AttachOptions {
    /// Options that trust a foreign segment (see [`AttachOptions::trust_foreign`]).
    pub fn trusting() -> Self {
        Self {
            trust_foreign: true,
        }
    }
}
