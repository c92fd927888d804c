//! `shared_hashmap._shared_hashmap`: the `SharedHashMap` class of the specification
//! (`shared/spec/original-python-README.md`) over the lock-free shared-memory map.
//!
//! Every key and value is stored as a type tag plus its payload (see `codec`), so the map is
//! one byte larger than the user's sizes (`sizes`). Making a handle and pickling it:
//! `construct`; its attributes and repr: `attributes`; the dict API beyond get/set/del:
//! `mapping`; the METH_FASTCALL `get`: `fast`.
//!
//! Threads: the class is `frozen` and `Sync`; a handle may be shared by any number of threads.
//! Gets keep the GIL while they never wait (the common case); one that meets a slot another
//! process is rewriting releases the GIL before it waits, so a stopped writer never freezes
//! the reader's other threads. Writes, scans, create/attach release it, since they may wait
//! for another process. `close()` never waits (see `shmap::Closable`).

mod atomic;
mod attributes;
mod codec;
mod construct;
mod direct;
mod errors;
mod fast;
mod mapping;
mod open;
mod scratch;
mod sizes;
mod store;
mod value_cache;

use std::sync::atomic::{AtomicU64, Ordering};

use direct::{Direct, Made, Presence};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use shmap::{Location, MapBackend, MapOps, MapParams};
use shmap_backends::{LockFreeMap, RedisMap, RedisOptions};
use store::{MapRef, Store};

use errors::to_py;
use sizes::check_size;

/// Keys up to this many serialized bytes are encoded on the stack: thread-locals in an
/// extension module cost a `__tls_get_addr` call on every access.
const STACK_KEY: usize = 128;

/// SharedHashMap(name=None, capacity=1024, max_key_size=256, max_value_size=1024, create=True,
///               exist_ok=False, trust_foreign=False, track=True, path=None, url=None,
///               timeout=5.0, max_capacity=None, username=None, password=None,
///               ssl_ca_certs=None, ssl_certfile=None, ssl_keyfile=None, ssl_cert_reqs=None,
///               replicas=0, serializer="pickle")
///
/// A dict in a named POSIX shared-memory segment (/dev/shm/NAME), read and written by any
/// number of processes and threads at once; a collections.abc.MutableMapping.
///
/// name: the segment's name, as multiprocessing.shared_memory names them: printable ASCII
///     but '/' and ':', not ending with a space (what its resource tracker can carry); or
///     instead
/// path: a file for the map (created with mode 0600), which outlives the processes and,
///     after flush(), restarts of the machine. Give one of the two. The first process to
///     open a file nobody has open checks every entry's checksum: entries a crash of the
///     machine left torn are dropped, with a RuntimeWarning that counts them.
/// url: "redis://host:port/db" stores the map NAME on a Redis (or Valkey) server, or on a
///     Redis Cluster (any node's URL), for processes on several machines: the same API,
///     types, errors and atomic operations, each one step on the server. Its keys are
///     shmap:{NAME} and shmap:{NAME}:meta. unlink() deletes it for everyone at once.
///     "rediss://..." connects over TLS, verifying the server against the system's roots.
///     "redis+sentinel://host1:26379,host2:26379/MASTER/db" asks Redis Sentinels where the
///     primary named MASTER is, and again after a failover. A call whose connection broke, or
///     that met a server loading or a replica, is sent again until timeout has passed; every
///     write carries a request id, so none is applied twice.
/// timeout: with url, seconds to wait for the server before a ConnectionError.
/// replicas: with url, how many replicas must have each write before it returns (Redis WAIT):
///     a write fewer took within 3/4 of timeout is a ConnectionError that says so (it was made
///     on the primary; a failover now could lose it). 0, the default: replication is
///     asynchronous, and a failover may lose the last writes.
/// username, password: with url, the server user (Redis 6 ACLs) to log in as, instead of in
///     the URL (redis://user:password@host). A user who may only read (+@read) attaches and
///     reads; each write of theirs is a PermissionError naming the right they lack. Passwords
///     are never shown (repr, url, errors), but travel with a pickled handle.
/// ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs: with a rediss:// url, as redis-py
///     names them (also accepted in the URL's query, ?ssl_ca_certs=...): a PEM file of the
///     CA certificates to verify the server with instead of the system's roots; the client's
///     certificate and its key for a server that asks for one (mutual TLS; the key may be in
///     the certificate's file); "none" (or ssl.CERT_NONE) to connect without verifying the
///     server, only when asked ("required" is the default). A server whose certificate does
///     not verify is a ConnectionError that says so; one that wants a client certificate it
///     did not get, a PermissionError; a file that cannot be read or holds no certificate or
///     key, a ValueError.
/// capacity: buckets to start with (an int from 1). The table doubles when it is 3/4 used
///     (every process follows it), up to
/// max_capacity: the most buckets it may grow to (default: as large as a segment may be);
///     only a map that large is ever full. Give max_capacity=capacity for a fixed size.
/// max_key_size, max_value_size: the largest serialized key and value, in bytes (a larger
///     one is a ValueError), or None: no limit (up to 4 GiB each). Limits cost no memory:
///     every entry takes what it holds, whatever the limits say.
/// serializer: how values of other types than str, bytes, int, float, bool, None and tuples
///     of these are stored: "pickle" (the default; any picklable value, read only by Python)
///     or "json" (lists and dicts with str keys, nested, of those types: what Rust's
///     shmap-typed reads as Json<T>; anything else is a TypeError, NaN and infinities a
///     ValueError). A handle reads either, whatever its own serializer.
/// create: True creates the map, False attaches to an existing one (the sizes are then read
///     from it).
/// exist_ok: with create=True, attach if the map exists (ValueError if a size you gave
///     differs) and replace one whose creator died before initialising it.
/// trust_foreign: attach even to a segment another user owns or others may write. Values
///     that went through pickle run code of their writer's choosing when read (on Redis:
///     anyone who may write to the server).
/// track: a shared-memory map this process creates is removed when the program ends (also
///     when it is killed), by multiprocessing's resource tracker, as SharedMemory does; False
///     keeps it until unlink(). File-backed maps are kept. A map's entries live in NAME.heap,
///     tracked with it. A map that grew keeps its table in NAME.t<g>, tracked once the creator's writes see it and removed when the creator exits
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
/// while others remove keys; use m.copy()): each entry as it was at some instant of the scan,
/// entries added or removed meanwhile may or may not appear, none twice (on Redis: HSCAN in
/// chunks, so a big map never holds the server).
///
/// Errors: FileExistsError (create, exists), FileNotFoundError (attach, missing),
/// PermissionError (a foreign segment), OSError with errno ENOSPC (/dev/shm cannot hold it),
/// ValueError (bad sizes or names, oversize keys or values, a segment that is not a map, is
/// corrupt, or was abandoned by its creator), TypeError (sizes that are not ints, unhashable
/// keys, incr on a non-number), RuntimeError (the table is full at max_capacity; 1,024
/// writers at once),
/// TimeoutError (a live process held a lock for over 5 s), ConnectionError (url=: the
/// server cannot be reached, did not answer within timeout, or failed TLS certificate
/// verification; a write that raised it was made in whole or not at all), PermissionError
/// (url=: a wrong user name or password, a server user without the right to run the call,
/// or a client certificate the server wanted; nothing changed), and pickle's errors.
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
    /// How values of types without a tag of their own are stored (`serializer=`).
    pub(crate) serializer: codec::Serializer,
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
    /// A Redis server: the URL as given and the options (with their passwords, for the child
    /// to connect; never shown).
    Redis { url: String, opts: RedisOptions },
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

    /// Encodes the value `obj` into `out` (cleared first) as this handle's `serializer` says,
    /// within `max_value_size`.
    pub(crate) fn encode_value(&self, obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
        out.clear();
        let limit = self.params.max_value_size.saturating_add(1); // the tag byte
        codec::encode(obj, self.serializer, limit, out)?;
        check_size("value", out, self.params.max_value_size)
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
                |m, ()| {
                    let done = m.try_remove(k)?;
                    // The last entry of a large map leaves its table to give back.
                    if done == Some(true) && m.give_back_due() {
                        py.detach(|| m.give_back_if_due()); // waits for every writer
                    }
                    Ok(done)
                },
                |m, ()| m.remove(k),
                |r, ()| r.remove(k),
            )
        })
    }

    fn entries(&self, py: Python<'_>) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.with_map(py, |m| py.detach(|| m.ops().entries()).map_err(to_py))
    }
}

#[pymethods]
impl SharedHashMap {
    /// Sets `key` to `value`.
    fn set(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = key.py();
        self.with_key(key, |k| {
            self.scratch.lend(py, |v| {
                self.encode_value(value, v)?;
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
                    |r, ()| r.set(k, v),
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

    /// Removes the segment's name (call it from the last process); open handles keep working,
    /// also through growth, and the last of them to close removes its heap (NAME.heap) and
    /// the tables of a map that grew (NAME.t<g>). A map on a Redis server is deleted from it, for every handle at once.
    fn unlink(&self, py: Python<'_>) -> PyResult<()> {
        match &self.place {
            Place::Local(Location::Shm(name)) => unlink(py, name),
            Place::Local(file) => py.detach(|| file.unlink()).map_err(to_py),
            Place::Redis { url, opts } => {
                let open = self.map.with(py, |m| match m {
                    MapRef::Redis(r) => py.detach(|| r.unlink()).map_err(to_py),
                    MapRef::Shm(_) => unreachable!("a Redis place holds a Redis map"),
                });
                // A closed handle connects again for it, as unlink works on closed handles.
                open.unwrap_or_else(|| {
                    py.detach(|| RedisMap::attach(url, &self.name, opts.clone())?.unlink())
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
}

/// Removes the shared-memory segment `name` without attaching to it (like `unlink()` on a
/// handle): for a map whose creator died, or that nothing can attach to any more. Without the
/// segment, removes the heap (NAME.heap) and tables (NAME.t<g>) a process killed after
/// unlinking it left.
/// `FileNotFoundError` if there is nothing of that name.
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
