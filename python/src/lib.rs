//! `shared_hashmap._shared_hashmap`: the `SharedHashMap` class of the specification
//! (`shared/spec/original-python-README.md`) over the lock-free shared-memory map.
//!
//! Every key and value is stored as a type tag plus its payload (see `codec`); the map is
//! created one byte larger than the user's `max_key_size` / `max_value_size` so that those
//! limits apply to the serialized payload, as in the original.
//!
//! Threads: the class is `frozen` and `Sync`; a handle may be shared by any number of threads.
//! Gets keep the GIL while they never wait (the common case); one that meets a slot another
//! process is rewriting releases the GIL before it waits, so a stopped writer never freezes
//! the reader's other threads. Writes, scans, create/attach release it, since they may wait
//! for another process. `close()` never waits (see `shmap::Closable`).

mod atomic;
mod codec;
mod direct;
mod errors;
mod fast;
mod mapping;
mod open;
mod scratch;
mod store;
mod value_cache;

use std::sync::atomic::{AtomicU64, Ordering};

use direct::{Direct, Made, Presence};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use shmap::{
    AttachOptions, Closable, Location, MapBackend, MapOps, MapParams, MAX_KEY_SIZE_LIMIT,
    MAX_VALUE_SIZE_LIMIT,
};
use shmap_backends::{LockFreeMap, RedisMap, RedisOptions};
use store::{MapRef, Store};

use errors::to_py;

/// Bytes of every stored key and value taken by the type tag.
const TAG: usize = 1;

/// Keys up to this many serialized bytes are encoded on the stack: thread-locals in an
/// extension module cost a `__tls_get_addr` call on every access.
const STACK_KEY: usize = 128;

/// SharedHashMap(name=None, capacity=1024, max_key_size=256, max_value_size=1024, create=True,
///               exist_ok=False, trust_foreign=False, track=True, path=None, url=None,
///               timeout=5.0, max_capacity=None)
///
/// A dict in a named POSIX shared-memory segment (/dev/shm/NAME), read and written by any
/// number of processes and threads at once; a collections.abc.MutableMapping.
///
/// name: the segment's name, as multiprocessing.shared_memory names them; or instead
/// path: a file for the map (created with mode 0600), which outlives the processes and,
///     after flush(), restarts of the machine. Give one of the two. The first process to
///     open a file nobody has open checks every entry's checksum: entries a crash of the
///     machine left torn are dropped, with a RuntimeWarning that counts them.
/// url: "redis://host:port/db" stores the map NAME on a Redis (or Valkey) server, or on a
///     Redis Cluster (any node's URL), for processes on several machines: the same API,
///     types, errors and atomic operations, each one step on the server. Its keys are
///     shmap:{NAME} and shmap:{NAME}:meta. unlink() deletes it for everyone at once.
/// timeout: with url, seconds to wait for the server before a ConnectionError.
/// capacity: buckets to start with (an int from 1). The table doubles when it is 3/4 used
///     (every process follows it), up to
/// max_capacity: the most buckets it may grow to (default: as large as a segment may be);
///     only a map that large is ever full. Give max_capacity=capacity for a fixed size.
/// max_key_size, max_value_size: the largest serialized key and value, in bytes.
/// create: True creates the map, False attaches to an existing one (the sizes are then read
///     from it).
/// exist_ok: with create=True, attach if the map exists (ValueError if a size you gave
///     differs) and replace one whose creator died before initialising it.
/// trust_foreign: attach even to a segment another user owns or others may write. Values
///     that went through pickle run code of their writer's choosing when read (on Redis:
///     anyone who may write to the server).
/// track: a shared-memory map this process creates is removed when the program ends (also
///     when it is killed), by multiprocessing's resource tracker, as SharedMemory does; False
///     keeps it until unlink(). File-backed maps are kept. A map that grew keeps its table in
///     NAME.t<g>, tracked once the creator's writes see it and removed when the creator exits
///     (a creator killed before it saw a growth by another process: unlink(NAME)).
///
/// Keys follow dict equality: 1, 1.0 and True are one key; tuples and frozensets of such keys
/// are found by equal ones; unhashable keys raise TypeError. Values keep their exact type.
/// As a dict does, gets of an entry nobody changed return the same object when it is an
/// immutable str, bytes, int or float (each handle keeps those it returned, up to 8 MiB, with
/// a reference to the key object of the last get when that is a str, bytes, int or float:
/// gets and `in` of that very object find the entry by identity, as a dict does).
/// Atomic across processes: each set, del, pop, popitem, setdefault, incr and
/// compare_and_set. Snapshots: keys(), values(), items(), copy() (dict(m) may raise KeyError
/// while others remove keys; use m.copy()).
///
/// Errors: FileExistsError (create, exists), FileNotFoundError (attach, missing),
/// PermissionError (a foreign segment), OSError with errno ENOSPC (/dev/shm cannot hold it),
/// ValueError (bad sizes or names, oversize keys or values, a segment that is not a map, is
/// corrupt, or was abandoned by its creator), TypeError (sizes that are not ints, unhashable
/// keys, incr on a non-number), RuntimeError (the table is full at max_capacity; 1,024
/// writers at once),
/// TimeoutError (a live process held a lock for over 5 s), ConnectionError (url=: the
/// server cannot be reached or did not answer within timeout; a write that raised it was
/// made in whole or not at all), and pickle's errors.
#[pyclass(module = "shared_hashmap", name = "SharedHashMap", frozen)]
pub(crate) struct SharedHashMap {
    map: Store,
    /// The shared-memory name, or for a file-backed map its path.
    name: String,
    place: Place,
    /// As the user sees them: payload sizes, without the tag byte.
    pub(crate) params: MapParams,
    /// Passed on when the handle is pickled, so a child attaches as its parent did.
    trust_foreign: bool,
    /// The buffer values are encoded into (sets) and copied into by the gets that do not
    /// build their result straight from the slot (see `direct`).
    scratch: scratch::Scratch,
    /// Whether this handle created the map and registered it with the resource tracker; its
    /// writes then register each new table generation too (`open::track_table`).
    tracks: bool,
    /// The generation whose table this handle last registered (Relaxed: a hint that saves
    /// `track_table`'s lock, which decides).
    tracked_gen: AtomicU64,
}

/// Where the map is, as the handle passes it on when pickled.
enum Place {
    /// Shared memory or a file on this machine.
    Local(Location),
    /// A Redis server: the URL as given (with its password, for the child to connect) and the
    /// timeout in seconds.
    Redis { url: String, timeout: f64 },
}

/// The specification's error for a serialized key or value (tag excluded) over its maximum.
/// Inlined, its error cold: as a call, it saved five registers and spilled its arguments for
/// the error's `format!` on every set (perf, a set at 1,000 str keys: 2.9% of the samples).
#[inline(always)]
fn check_size(what: &str, encoded: &[u8], max: usize) -> PyResult<()> {
    let size = encoded.len() - TAG;
    if size > max {
        return Err(oversize(what, size, max));
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn oversize(what: &str, size: usize, max: usize) -> PyErr {
    PyValueError::new_err(format!(
        "Serialized {what} size {size} exceeds maximum {max}"
    ))
}

/// A size argument as given, or `None` when it was left out. (`Option<&PyAny>` cannot tell
/// a missing argument from an explicit `None`, which must be a `TypeError`, not the default.)
struct SizeArg(Option<Py<PyAny>>);

impl<'py> FromPyObject<'py> for SizeArg {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        Ok(Self(Some(ob.clone().unbind())))
    }
}

/// A size parameter as the user gave it: an int from 1 to `max` (a bool or `None` is a
/// `TypeError`, as in a dict-like API that means numbers).
fn size_param(obj: &Bound<'_, PyAny>, what: &str, max: usize) -> PyResult<usize> {
    if obj.is_instance_of::<pyo3::types::PyBool>() || !obj.is_instance_of::<pyo3::types::PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, not {}",
            obj.get_type().name()?
        )));
    }
    match obj.extract::<i64>() {
        Ok(n) if n >= 1 && n as u64 <= max as u64 => Ok(n as usize),
        _ => Err(PyValueError::new_err(format!(
            "{what} must be an integer from 1 to {max}, got {obj}"
        ))),
    }
}

/// The sizes the user asked for (`wanted`, defaults for those left out) and as stored (one tag
/// byte more for keys and values).
fn wanted_params(py: Python<'_>, args: [&SizeArg; 4]) -> PyResult<(MapParams, MapParams)> {
    let [capacity, max_key_size, max_value_size, max_capacity] = args;
    let d = MapParams::default();
    // Only a missing argument takes the default; `None` is not a size.
    let param = |arg: &SizeArg, what, default, max| match &arg.0 {
        None => Ok(default),
        Some(o) => size_param(o.bind(py), what, max),
    };
    let wanted = MapParams {
        capacity: param(capacity, "capacity", d.capacity, shmap::MAX_CAPACITY)?,
        // The tag byte comes out of the limit: the user's numbers are payload sizes.
        max_key_size: param(
            max_key_size,
            "max_key_size",
            d.max_key_size,
            MAX_KEY_SIZE_LIMIT - TAG,
        )?,
        max_value_size: param(
            max_value_size,
            "max_value_size",
            d.max_value_size,
            MAX_VALUE_SIZE_LIMIT - TAG,
        )?,
        max_capacity: param(
            max_capacity,
            "max_capacity",
            d.max_capacity,
            shmap::MAX_CAPACITY,
        )?,
    };
    if wanted.max_capacity < wanted.capacity {
        return Err(PyValueError::new_err(format!(
            "max_capacity ({}) must be at least capacity ({})",
            wanted.max_capacity, wanted.capacity
        )));
    }
    let stored = MapParams {
        max_key_size: wanted.max_key_size + TAG,
        max_value_size: wanted.max_value_size + TAG,
        ..wanted
    };
    Ok((wanted, stored))
}

/// With `exist_ok=True`, a map found with other sizes than those the caller gave is a
/// `ValueError` (sizes left out match any).
fn check_same_params(
    name: &str,
    found: MapParams,
    stored: MapParams,
    args: [&SizeArg; 4],
) -> PyResult<()> {
    let asked = args.map(|a| a.0.is_some());
    let differs: Vec<String> = [
        ("capacity", found.capacity, stored.capacity),
        ("max_key_size", found.max_key_size, stored.max_key_size),
        (
            "max_value_size",
            found.max_value_size,
            stored.max_value_size,
        ),
        ("max_capacity", found.max_capacity, stored.max_capacity),
    ]
    .into_iter()
    .zip(asked)
    .filter(|((_, f, s), asked)| *asked && f != s)
    .map(|((what, f, s), _)| {
        let user = |x: usize| {
            if what.ends_with("capacity") {
                x
            } else {
                x - TAG
            }
        };
        format!("{what}={} (asked for {})", user(f), user(s))
    })
    .collect();
    if differs.is_empty() {
        return Ok(());
    }
    Err(PyValueError::new_err(format!(
        "SharedHashMap {name:?} exists with other parameters: {}",
        differs.join(", ")
    )))
}

/// Stored sizes as the user sees them (without the tag byte).
fn user_params(found: MapParams) -> MapParams {
    MapParams {
        max_key_size: found.max_key_size - TAG,
        max_value_size: found.max_value_size - TAG,
        ..found
    }
}

impl SharedHashMap {
    pub(crate) fn with_map<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(MapRef<'_>) -> PyResult<R>,
    ) -> PyResult<R> {
        let (out, generation) = self
            .map
            .with(py, |m| {
                let out = f(m);
                // After `f`: the operations here (update, setdefault, incr, ...) may grow it.
                let generation = match m {
                    MapRef::Shm(s) if self.tracks => Some(s.generation()),
                    _ => None,
                };
                (out, generation)
            })
            .unwrap_or_else(|| (Err(self.closed_error()), None));
        self.note_generation(py, generation);
        out
    }

    /// For a handle that tracks its map: registers the table of `generation` (one this
    /// handle's write saw) with the resource tracker if it is new (`open::track_table`).
    fn note_generation(&self, py: Python<'_>, generation: Option<u64>) {
        let Some(g) = generation else { return };
        if self.tracks && self.tracked_gen.swap(g, Ordering::Relaxed) != g {
            // The write itself is done: a tracker that cannot be reached only costs the
            // cleanup of this one table if the program is killed (`at_exit` still runs).
            let _ = open::track_table(py, &self.name, g);
        }
    }

    /// A hot-path call (get, `in`, set, del). On a shared-memory map `try_shm` runs with the
    /// GIL; if it would wait for another process (`Ok(None)`), `wait_shm` runs without it. On a
    /// Redis map `redis` runs without the GIL. `arg` (a get's value buffer) goes to whichever
    /// runs. The small result matters: moving a whole `PyResult` (tens of bytes) out of the
    /// call, just before `Closable`'s exit (then a locked decrement), made that exit wait on
    /// the stores of its bytes (perf, a get at 10k keys: `with_map` 8% of samples and 171 ns
    /// a get, against 3% and 157 ns before the Redis storage came; the instructions were the
    /// same), so the error, if any, leaves through `err`.
    #[inline(always)]
    fn call<A: Send, R: Copy + Send>(
        &self,
        py: Python<'_>,
        mut arg: A,
        try_shm: impl FnOnce(&LockFreeMap, &mut A) -> shmap::Result<Option<R>>,
        wait_shm: impl FnOnce(&LockFreeMap, A) -> shmap::Result<R> + Send,
        redis: impl FnOnce(&RedisMap, A) -> shmap::Result<R> + Send,
    ) -> PyResult<R> {
        let mut err = None;
        let out = match &self.map {
            Store::Shm(c) => store::enter(py, c, |m| match try_shm(m, &mut arg) {
                Ok(Some(r)) => Some(r),
                Ok(None) => py
                    .detach(|| wait_shm(m, arg))
                    .map_err(|e| err = Some(e))
                    .ok(),
                Err(e) => {
                    err = Some(e);
                    None
                }
            }),
            Store::Redis(c) => store::enter(py, c, |r| {
                py.detach(|| redis(r, arg)).map_err(|e| err = Some(e)).ok()
            }),
        };
        // `err` is read only on the error path: moving it (80 bytes, written as a one-word
        // `None`) on every call made the copy wait on that store (perf: the `match (out, err)`
        // loads, 8% of an `in`).
        match out {
            None => Err(self.closed_error()),
            Some(Some(r)) => Ok(r),
            Some(None) => Err(match err.take() {
                Some(e) => to_py(e),
                None => {
                    pyo3::exceptions::PySystemError::new_err("a map call failed without saying why")
                }
            }),
        }
    }

    fn closed_error(&self) -> PyErr {
        PyValueError::new_err(format!("SharedHashMap {:?} is closed", self.name))
    }

    pub(crate) fn encode(
        obj: &Bound<'_, PyAny>,
        what: &str,
        max: usize,
        out: &mut Vec<u8>,
    ) -> PyResult<()> {
        out.clear();
        codec::encode(obj, out)?;
        check_size(what, out, max)
    }

    /// Runs `f` with the serialized `key`, encoded on the stack when it is short.
    pub(crate) fn with_key<R>(
        &self,
        key: &Bound<'_, PyAny>,
        f: impl FnOnce(&[u8]) -> PyResult<R>,
    ) -> PyResult<R> {
        let mut heap = Vec::new();
        let mut stack = [0u8; STACK_KEY];
        let bytes = match codec::encode_small(key, &mut stack)? {
            Some(n) => &stack[..n],
            None => {
                codec::encode_key(key, &mut heap)?;
                &heap[..]
            }
        };
        check_size("key", bytes, self.params.max_key_size)?;
        f(bytes)
    }

    /// Looks `key` up; `Ok(None)` if absent. With the GIL, common values are built straight
    /// from shared memory (`direct`); a get that waits for a writer, or a Redis get, copies the
    /// bytes into the handle's buffer and decodes them.
    fn lookup(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let py = key.py();
        let keyed = value_cache::identity_key(key);
        self.with_key(key, |k| {
            self.scratch.lend_all(py, |v, cache| {
                let mut made = Made::Buffered;
                let found = self.call(
                    py,
                    &mut *v,
                    |m, v| {
                        let sink = &mut Direct {
                            py,
                            buf: v,
                            made: &mut made,
                            cache: &*cache,
                            origin: None,
                            key: keyed,
                        };
                        let found = m.try_get_with(k, sink);
                        if !matches!(found, Ok(Some(true))) {
                            made = Made::Buffered; // a torn attempt's object, unseen
                        }
                        found
                    },
                    // A writer is in the middle of this key: wait without the GIL.
                    |m, v| m.get_into(k, v),
                    |r, v| r.get_into(k, v),
                )?;
                if !found {
                    return Ok(None);
                }
                match made {
                    Made::Object { obj, from } => {
                        if let Some(origin) = from {
                            cache.put(py, origin, &obj, keyed);
                        }
                        Ok(Some(obj.unbind()))
                    }
                    Made::Recalled { obj, read } => {
                        if let Some(origin) = read {
                            cache.adopt_key(py, origin, keyed);
                        }
                        Ok(Some(obj.unbind()))
                    }
                    Made::Failed(e) => Err(e),
                    Made::Buffered => codec::decode(py, v).map(Some),
                }
            })
        })
    }

    fn remove(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.with_key(key, |k| {
            // With the GIL unless it would wait, as `set`.
            self.call(
                py,
                (),
                |m, ()| m.try_remove(k),
                |m, ()| m.remove(k),
                |r, ()| r.remove(k),
            )
        })
    }

    fn entries(&self, py: Python<'_>) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.with_map(py, |m| py.detach(|| m.ops().entries()).map_err(to_py))
    }

    /// `SharedHashMap(name, ..., url=...)`: the map on a Redis server.
    #[allow(clippy::too_many_arguments)]
    fn new_on_server(
        py: Python<'_>,
        url: String,
        name: Option<String>,
        path: Option<std::path::PathBuf>,
        sizes: [SizeArg; 4],
        create: bool,
        exist_ok: bool,
        timeout: f64,
    ) -> PyResult<Self> {
        let Some(name) = name else {
            return Err(PyTypeError::new_err(
                "SharedHashMap(url=...) needs a name for the map on the server",
            ));
        };
        if path.is_some() {
            return Err(PyTypeError::new_err(
                "give a path (a file) or a url (a Redis server), not both",
            ));
        }
        if !(timeout.is_finite() && timeout > 0.0) {
            return Err(PyValueError::new_err(format!(
                "timeout must be a positive number of seconds, got {timeout}"
            )));
        }
        let args = [&sizes[0], &sizes[1], &sizes[2], &sizes[3]];
        let (_, stored) = wanted_params(py, args)?;
        // A Redis hash grows by itself: the map's limit is what it may grow to, as in shared
        // memory (with no max_capacity, capacity stays the limit there, as before growth).
        let limit = if sizes[3].0.is_some() {
            stored.max_capacity
        } else {
            stored.capacity
        };
        let stored = MapParams {
            capacity: limit,
            max_capacity: limit,
            ..stored
        };
        let opts = RedisOptions {
            timeout: std::time::Duration::from_secs_f64(timeout),
        };
        // Create, attach, or (`exist_ok`) either.
        let map = py
            .detach(|| {
                if !create {
                    return RedisMap::attach(&url, &name, opts);
                }
                match RedisMap::create(&url, &name, stored, opts) {
                    Err(shmap::Error::AlreadyExists(_)) if exist_ok => {
                        RedisMap::attach(&url, &name, opts)
                    }
                    done => done,
                }
            })
            .map_err(to_py)?;
        let found = map.params();
        let label = map.label();
        if create && exist_ok {
            // Only the limit is stored on the server: compare it with the argument it came
            // from (max_capacity if given, else capacity).
            let none = SizeArg(None);
            let (capacity, max_capacity) = match sizes[3].0 {
                Some(_) => (&none, &sizes[3]),
                None => (&sizes[0], &none),
            };
            check_same_params(
                &label,
                found,
                stored,
                [capacity, &sizes[1], &sizes[2], max_capacity],
            )?;
        }
        Ok(Self {
            name: map.name().to_owned(),
            map: Store::Redis(Closable::new(map)),
            place: Place::Redis { url, timeout },
            params: user_params(found),
            trust_foreign: false,
            scratch: Default::default(),
            tracks: false,
            tracked_gen: AtomicU64::new(0),
        })
    }
}

#[pymethods]
impl SharedHashMap {
    #[new]
    #[pyo3(
        signature = (name=None, capacity=SizeArg(None), max_key_size=SizeArg(None), max_value_size=SizeArg(None), create=true, exist_ok=false, trust_foreign=false, track=true, path=None, url=None, timeout=5.0, max_capacity=SizeArg(None)),
        text_signature = "(name=None, capacity=1024, max_key_size=256, max_value_size=1024, create=True, exist_ok=False, trust_foreign=False, track=True, path=None, url=None, timeout=5.0, max_capacity=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: Option<String>,
        capacity: SizeArg,
        max_key_size: SizeArg,
        max_value_size: SizeArg,
        create: bool,
        exist_ok: bool,
        trust_foreign: bool,
        track: bool,
        path: Option<std::path::PathBuf>,
        url: Option<String>,
        timeout: f64,
        max_capacity: SizeArg,
    ) -> PyResult<Self> {
        if let Some(url) = url {
            return Self::new_on_server(
                py,
                url,
                name,
                path,
                [capacity, max_key_size, max_value_size, max_capacity],
                create,
                exist_ok,
                timeout,
            );
        }
        let location = match (name, path) {
            (Some(name), None) => Location::Shm(name),
            (None, Some(path)) => Location::File(path),
            (Some(_), Some(_)) => {
                return Err(PyTypeError::new_err(
                    "give a name (shared memory) or a path (a file), not both",
                ))
            }
            (None, None) => {
                return Err(PyTypeError::new_err(
                    "SharedHashMap() needs a name (shared memory) or a path (a file)",
                ))
            }
        };
        let name = &location.label();
        let sizes = [&capacity, &max_key_size, &max_value_size, &max_capacity];
        let (_, stored) = wanted_params(py, sizes)?;
        let opts = if trust_foreign {
            AttachOptions::trusting()
        } else {
            AttachOptions::default()
        };
        let (map, created) = if create {
            py.detach(|| open::open_or_create(&location, stored, exist_ok, opts))
        } else {
            py.detach(|| LockFreeMap::attach_in(&location, opts))
                .map(|m| (m, false))
        }
        .map_err(to_py)?;
        if let Some(v) = map.validation().filter(|v| !v.is_clean()) {
            // The file was torn (an unclean shutdown of the machine): say what was dropped.
            let message = format!(
                "{}: the file was not written out whole before the machine stopped; opening \
                 it kept {} entries and dropped {} torn ones ({} duplicates, {} bad control \
                 words, {} empty words bridged)",
                location.label(),
                v.entries,
                v.dropped,
                v.duplicates,
                v.bad_words,
                v.bridged
            );
            let category = py.get_type::<pyo3::exceptions::PyRuntimeWarning>();
            PyErr::warn(py, &category, &std::ffi::CString::new(message)?, 1)?;
        }
        // A file-backed map is meant to outlive its creator: only shared memory is tracked.
        let tracks = created && track && matches!(location, Location::Shm(_));
        if tracks {
            // A map nobody would remove must not be left: undo the create (the error says why;
            // track=False creates without the tracker).
            if let Err(e) = open::track(py, name) {
                let _ = shmap::unlink(name);
                return Err(e);
            }
        }
        // `capacity` is where the table started: it may have grown since.
        let found = map.initial_params();
        if create && exist_ok {
            check_same_params(name, found, stored, sizes)?;
        }
        Ok(Self {
            map: Store::Shm(Closable::new(map)),
            name: name.to_owned(),
            place: Place::Local(location),
            params: user_params(found),
            trust_foreign,
            scratch: Default::default(),
            tracks,
            tracked_gen: AtomicU64::new(0),
        })
    }

    /// Sets `key` to `value`.
    fn set(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = key.py();
        self.with_key(key, |k| {
            self.scratch.lend(py, |v| {
                Self::encode(value, "value", self.params.max_value_size, v)?;
                let v = &*v;
                // The generation after a write that may have grown the map (u64::MAX: none).
                let grown = AtomicU64::new(u64::MAX);
                self.call(
                    py,
                    (),
                    // With the GIL, unless it would wait: releasing and retaking the GIL costs
                    // as much as the write (about 20 ns of a 170 ns set). A key lock or slot
                    // another process holds, or a tombstone reclaim, is waited for without it.
                    |m, ()| {
                        let done = m.try_insert(k, v)?.map(drop);
                        if done.is_some() && m.reclaim_due() {
                            py.detach(|| m.reclaim_if_due()); // waits for every writer
                            grown.store(m.generation(), Ordering::Relaxed);
                        }
                        Ok(done)
                    },
                    |m, ()| {
                        let done = m.insert(k, v).map(drop);
                        grown.store(m.generation(), Ordering::Relaxed);
                        done
                    },
                    |r, ()| r.insert(k, v).map(drop),
                )?;
                let g = grown.load(Ordering::Relaxed);
                self.note_generation(py, (g != u64::MAX).then_some(g));
                Ok(())
            })
        })
    }

    // `get(key, default=None)` is defined in `fast.rs` only (a METH_FASTCALL method).

    /// Removes `key`; `True` if it was present.
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.remove(py, key)
    }

    /// Number of key-value pairs.
    fn size(&self, py: Python<'_>) -> PyResult<usize> {
        self.with_map(py, |m| match m {
            MapRef::Shm(m) => m.len().map_err(to_py),
            MapRef::Redis(r) => py.detach(|| r.len()).map_err(to_py),
        })
    }

    /// Unmaps this handle; the segment stays for other processes. Idempotent.
    fn close(&self, py: Python<'_>) {
        self.map.close(py);
        // The objects gets returned, kept for the next get (`value_cache`); a get in flight in
        // another thread (waiting without the GIL) keeps them until the handle is freed.
        self.scratch.lend_all(py, |_, cache| cache.clear(py));
    }

    /// How many values this handle's cache of get results holds (for tests).
    fn _cached_values(&self, py: Python<'_>) -> usize {
        self.scratch.lend_all(py, |_, cache| cache.len())
    }

    /// Removes the segment's name (call it from the last process); open handles keep working.
    /// A map on a Redis server is deleted from it, for every handle at once.
    fn unlink(&self, py: Python<'_>) -> PyResult<()> {
        match &self.place {
            Place::Local(Location::Shm(name)) => unlink(py, name),
            Place::Local(file) => py.detach(|| file.unlink()).map_err(to_py),
            Place::Redis { url, timeout } => {
                let open = self.map.with(py, |m| match m {
                    MapRef::Redis(r) => py.detach(|| r.unlink()).map_err(to_py),
                    MapRef::Shm(_) => unreachable!("a Redis place holds a Redis map"),
                });
                // A closed handle connects again for it, as unlink works on closed handles.
                open.unwrap_or_else(|| {
                    let opts = RedisOptions {
                        timeout: std::time::Duration::from_secs_f64(*timeout),
                    };
                    py.detach(|| RedisMap::attach(url, &self.name, opts)?.unlink())
                        .map_err(to_py)
                })
            }
        }
    }

    /// Writes the map's pages to its file (msync): for a map created with `path=`, what a
    /// restart of the machine keeps. Returns at once for shared memory and Redis (whose
    /// server persists as it is configured to).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.with_map(py, |m| match m {
            MapRef::Shm(m) => py.detach(|| m.flush()).map_err(to_py),
            MapRef::Redis(_) => Ok(()),
        })
    }

    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.lookup(key)?
            .ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set(key, value)
    }

    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.remove(py, key)? {
            Ok(())
        } else {
            Err(PyKeyError::new_err(key.clone().unbind()))
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = key.py();
        let keyed = value_cache::identity_key(key);
        self.with_key(key, |k| {
            self.scratch.lend_all(py, |_, cache| {
                // The origin of the compare that found the key, if the first try decided.
                let mut read = None;
                let found = self.call(
                    py,
                    &mut read,
                    |m, read| {
                        let sink = &mut Presence {
                            cache: &*cache,
                            key: keyed,
                            read: None,
                        };
                        let found = m.try_get_with(k, sink);
                        **read = sink.read;
                        found
                    },
                    |m, read| {
                        *read = None;
                        m.contains_key(k)
                    },
                    |r, _| r.contains_key(k),
                )?;
                if let (true, Some(origin)) = (found, read) {
                    cache.adopt_key(py, origin, keyed);
                }
                Ok(found)
            })
        })
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.size(py)
    }

    /// Iterates over a snapshot of the keys.
    fn __iter__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Ok(slf.get().keys(slf.py())?.call_method0("__iter__")?.unbind())
    }

    /// A snapshot list of the keys.
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let keys: Vec<_> = self
            .entries(py)?
            .iter()
            .map(|(k, _)| codec::decode(py, k))
            .collect::<PyResult<_>>()?;
        PyList::new(py, keys)
    }

    /// A snapshot list of the values.
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let values: Vec<_> = self
            .entries(py)?
            .iter()
            .map(|(_, v)| codec::decode(py, v))
            .collect::<PyResult<_>>()?;
        PyList::new(py, values)
    }

    /// A snapshot list of `(key, value)` pairs.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items: Vec<_> = self
            .entries(py)?
            .iter()
            .map(|(k, v)| PyTuple::new(py, [codec::decode(py, k)?, codec::decode(py, v)?]))
            .collect::<PyResult<_>>()?;
        PyList::new(py, items)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close(_exc.py());
        false
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let p = MapParams {
            capacity: self.capacity(py),
            ..self.params
        };
        self.map
            .with(py, |m| {
                // repr must not raise: a server that does not answer shows as size=?.
                let size = m
                    .ops()
                    .len()
                    .map_or_else(|_| "?".to_owned(), |n| n.to_string());
                let url = match m {
                    MapRef::Redis(r) => format!(", url={:?}", r.url()),
                    MapRef::Shm(_) => String::new(),
                };
                format!(
                    "SharedHashMap(name={:?}{url}, size={size}, capacity={}, max_key_size={}, \
                     max_value_size={})",
                    self.name, p.capacity, p.max_key_size, p.max_value_size
                )
            })
            .unwrap_or_else(|| format!("<closed SharedHashMap name={:?}>", self.name))
    }

    /// Pickles as "attach to this name", so a handle can be sent to spawned processes.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let me = slf.get();
        let p = me.params;
        let (name, path, url, timeout) = match &me.place {
            Place::Local(Location::Shm(name)) => (Some(name.clone()), None, None, 5.0),
            Place::Local(Location::File(path)) => (None, Some(path.clone()), None, 5.0),
            Place::Redis { url, timeout } => {
                (Some(me.name.clone()), None, Some(url.clone()), *timeout)
            }
        };
        let args = (
            name,
            p.capacity,
            p.max_key_size,
            p.max_value_size,
            false,
            false,
            me.trust_foreign,
            false,
            path,
            url,
            timeout,
            p.max_capacity,
        );
        PyTuple::new(
            slf.py(),
            [
                slf.get_type().into_any(),
                args.into_pyobject(slf.py())?.into_any(),
            ],
        )
    }

    /// The segment's name (for a file-backed map, its path).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The file of a map created with `path=`; `None` for shared memory.
    #[getter]
    fn path(&self) -> Option<std::path::PathBuf> {
        match &self.place {
            Place::Local(Location::File(path)) => Some(path.clone()),
            _ => None,
        }
    }

    /// The Redis server of a map created with `url=` (its password hidden); `None` for a map
    /// on this machine.
    #[getter]
    fn url(&self) -> Option<String> {
        match &self.place {
            Place::Redis { url, .. } => Some(shmap_backends::redis_map::redact(url)),
            Place::Local(_) => None,
        }
    }

    /// Number of buckets now: the table doubles when it is 3/4 used, up to max_capacity. (On
    /// Redis, whose hash grows by itself: the most entries the map may hold.)
    #[getter]
    fn capacity(&self, py: Python<'_>) -> usize {
        self.map
            .with(py, |m| m.ops().capacity())
            .unwrap_or(self.params.capacity)
    }

    /// The most buckets the table may grow to: only then is it full (RuntimeError).
    #[getter]
    fn max_capacity(&self) -> usize {
        self.params.max_capacity
    }

    /// Largest serialized key, in bytes.
    #[getter]
    fn max_key_size(&self) -> usize {
        self.params.max_key_size
    }

    /// Largest serialized value, in bytes.
    #[getter]
    fn max_value_size(&self) -> usize {
        self.params.max_value_size
    }

    /// Whether `close()` was called on this handle.
    #[getter]
    fn closed(&self) -> bool {
        self.map.is_closed()
    }
}

/// Removes the shared-memory segment `name` without attaching to it (like `unlink()` on a
/// handle): for a map whose creator died, or that nothing can attach to any more.
/// `FileNotFoundError` if there is no such segment.
#[pyfunction]
fn unlink(py: Python<'_>, name: &str) -> PyResult<()> {
    open::untrack(py, name)?;
    py.detach(|| shmap::unlink(name)).map_err(to_py)
}

#[pymodule]
fn _shared_hashmap(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SharedHashMap>()?;
    fast::install(&m.py().get_type::<SharedHashMap>())?;
    m.add_function(wrap_pyfunction!(unlink, m)?)
}
