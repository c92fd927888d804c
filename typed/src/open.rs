//! Where a map lives ([`Place`]), how to open it ([`Options`]), and the create-or-attach loop
//! both languages use.

use std::path::PathBuf;

use shmap::{
    AttachOptions, Error, Location, MapBackend, MapParams, MAX_CAPACITY, MAX_KEY_SIZE_LIMIT,
    MAX_VALUE_SIZE_LIMIT,
};
use shmap_backends::LockFreeMap;

/// Bytes of every stored key and value taken by the type tag: a map's limits are the user's
/// plus this, so that they apply to the payload, as in Python.
pub const TAG: usize = 1;

/// Where a map's entries live.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Place {
    /// A named POSIX shared-memory segment (`/dev/shm/NAME`), as Python's
    /// `SharedHashMap("NAME")`.
    Shm(String),
    /// A file, as `SharedHashMap(path=...)`: it outlives the processes.
    File(PathBuf),
    /// The map `name` on a Redis server (`redis://`, `rediss://`, `redis+sentinel://`, any
    /// node of a cluster), as `SharedHashMap(name, url=...)`.
    #[cfg(feature = "redis")]
    Redis {
        /// The server's URL.
        url: String,
        /// The map's name on the server.
        name: String,
    },
}

impl Place {
    /// A shared-memory segment.
    pub fn shm(name: impl Into<String>) -> Self {
        Place::Shm(name.into())
    }

    /// A file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Place::File(path.into())
    }

    /// A map on a Redis server.
    #[cfg(feature = "redis")]
    pub fn redis(url: impl Into<String>, name: impl Into<String>) -> Self {
        Place::Redis {
            url: url.into(),
            name: name.into(),
        }
    }
}

/// How to open a map: Python's constructor arguments. The defaults are Python's: create a new
/// map of 1,024 buckets that grows, keys up to 256 bytes and values up to 1,024 (limits that
/// cost no memory), failing if the map exists.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub(crate) capacity: Option<usize>,
    pub(crate) max_capacity: Option<usize>,
    pub(crate) max_key_size: Option<Option<usize>>,
    pub(crate) max_value_size: Option<Option<usize>>,
    pub(crate) attach_only: bool,
    pub(crate) exist_ok: bool,
    pub(crate) trust_foreign: bool,
    #[cfg(feature = "redis")]
    pub(crate) redis: shmap_backends::RedisOptions,
}

impl Options {
    /// Python's defaults (see [`Options`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Buckets to start with (at least 1).
    pub fn capacity(mut self, buckets: usize) -> Self {
        self.capacity = Some(buckets);
        self
    }

    /// The most buckets the table may grow to (on Redis: the most entries).
    pub fn max_capacity(mut self, buckets: usize) -> Self {
        self.max_capacity = Some(buckets);
        self
    }

    /// The largest key, encoded, in bytes (type tag excluded, as in Python); `None`: no limit.
    pub fn max_key_size(mut self, bytes: Option<usize>) -> Self {
        self.max_key_size = Some(bytes);
        self
    }

    /// The largest value, encoded, in bytes (type tag excluded); `None`: no limit.
    pub fn max_value_size(mut self, bytes: Option<usize>) -> Self {
        self.max_value_size = Some(bytes);
        self
    }

    /// Attach to an existing map instead of creating one (Python's `create=False`).
    pub fn attach_only(mut self) -> Self {
        self.attach_only = true;
        self
    }

    /// Attach if the map exists (an error if a size given here differs from the map's).
    pub fn exist_ok(mut self, yes: bool) -> Self {
        self.exist_ok = yes;
        self
    }

    /// Attach even to a segment another user owns or others may write.
    pub fn trust_foreign(mut self, yes: bool) -> Self {
        self.trust_foreign = yes;
        self
    }

    /// For a Redis map: timeout, credentials, TLS files, replicas to wait for.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, opts: shmap_backends::RedisOptions) -> Self {
        self.redis = opts;
        self
    }

    /// The parameters to create with, as stored (limits one tag byte larger than the user's).
    pub(crate) fn stored(&self) -> MapParams {
        let d = MapParams::default();
        let limit = |given: Option<Option<usize>>, default: usize, none: usize| match given {
            None => default + TAG,
            Some(None) => none,
            Some(Some(n)) => n.saturating_add(TAG).min(none),
        };
        MapParams {
            capacity: self.capacity.unwrap_or(d.capacity),
            max_capacity: self.max_capacity.unwrap_or(MAX_CAPACITY),
            max_key_size: limit(self.max_key_size, d.max_key_size, MAX_KEY_SIZE_LIMIT),
            max_value_size: limit(self.max_value_size, d.max_value_size, MAX_VALUE_SIZE_LIMIT),
        }
    }

    /// An error if a parameter given here differs from what the map found has.
    pub(crate) fn check_found(
        &self,
        label: &str,
        found: MapParams,
        redis: bool,
    ) -> shmap::Result<()> {
        let want = self.stored();
        let given = [
            (
                "capacity",
                self.capacity.is_some() && !redis,
                found.capacity,
                want.capacity,
            ),
            (
                "max_key_size",
                self.max_key_size.is_some(),
                found.max_key_size,
                want.max_key_size,
            ),
            (
                "max_value_size",
                self.max_value_size.is_some(),
                found.max_value_size,
                want.max_value_size,
            ),
            (
                "max_capacity",
                self.max_capacity.is_some(),
                found.max_capacity,
                want.max_capacity,
            ),
        ];
        match given.into_iter().find(|&(_, asked, f, w)| asked && f != w) {
            None => Ok(()),
            Some((what, _, f, w)) => Err(Error::InvalidParameter {
                what,
                reason: format!("map {label:?} exists with {f} (stored), asked for {w}"),
            }),
        }
    }
}

/// Creates the map at `location`, or with `exist_ok` attaches to it if it exists, replacing a
/// segment whose creator died before initialising it. `true` with the map if this call
/// created it.
pub fn open_or_create(
    location: &Location,
    stored: MapParams,
    exist_ok: bool,
    opts: AttachOptions,
) -> shmap::Result<(LockFreeMap, bool)> {
    // A few rounds: another process may create, remove or replace the name between our steps.
    let mut last = None;
    for _ in 0..8 {
        match LockFreeMap::create_in(location, stored) {
            Err(Error::AlreadyExists(_)) if exist_ok => {}
            done => return done.map(|m| (m, true)),
        }
        match LockFreeMap::attach_in(location, opts) {
            Err(Error::NotFound(_)) => continue, // removed meanwhile: create again
            Err(e @ Error::Abandoned { .. }) => {
                shmap::remove_abandoned_at(location)?;
                last = Some(e);
            }
            done => return done.map(|m| (m, false)),
        }
    }
    Err(last.unwrap_or_else(|| Error::AlreadyExists(location.label())))
}

/// The parameters a Redis map is created with: a Redis hash grows by itself, so its limit is
/// what the map may grow to (`max_capacity` when one was given; else `capacity`, the limit
/// of a shared-memory map before it grows).
#[cfg(feature = "redis")]
pub fn redis_params(stored: MapParams, max_capacity_given: bool) -> MapParams {
    let limit = match max_capacity_given {
        true => stored.max_capacity,
        false => stored.capacity,
    };
    MapParams {
        capacity: limit,
        max_capacity: limit,
        ..stored
    }
}

/// Creates the Redis map `name` at `url` (`stored`: see [`redis_params`]), or with `exist_ok`
/// attaches to it if it exists; with `create` false, only attaches.
#[cfg(feature = "redis")]
pub fn open_or_create_redis(
    url: &str,
    name: &str,
    stored: MapParams,
    (create, exist_ok): (bool, bool),
    opts: shmap_backends::RedisOptions,
) -> shmap::Result<shmap_backends::RedisMap> {
    use shmap_backends::RedisMap;
    if !create {
        return RedisMap::attach(url, name, opts);
    }
    match RedisMap::create(url, name, stored, opts.clone()) {
        Err(Error::AlreadyExists(_)) if exist_ok => RedisMap::attach(url, name, opts),
        done => done,
    }
}
