//! `shared_hashmap._shared_hashmap`: the `SharedHashMap` class of the specification
//! (`shared/spec/original-python-README.md`) over the lock-free shared-memory map.
//!
//! Every key and value is stored as a type tag plus its payload (see `codec`); the map is
//! created one byte larger than the user's `max_key_size` / `max_value_size` so that those
//! limits apply to the serialized payload, as in the original.
//!
//! Threads: the class is `frozen` and `Sync`; a handle may be shared by any number of threads.
//! Gets keep the GIL (they never block: at most a bounded wait for a slot being rewritten);
//! writes, scans, create/attach and close release it, since they may wait for another process.

mod codec;
mod errors;

use std::cell::RefCell;

use parking_lot::RwLock;
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use shmap::{MapBackend, MapParams};
use shmap_backends::LockFreeMap;

use errors::to_py;

/// Bytes of every stored key and value taken by the type tag.
const TAG: usize = 1;

/// Keys up to this many serialized bytes are encoded on the stack: thread-locals in an
/// extension module cost a `__tls_get_addr` call on every access.
const STACK_KEY: usize = 128;

thread_local! {
    // const-initialised: no lazy-init check on every access.
    static VALUE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer, or a fresh one if `f` re-entered (pickle can
/// run user code that uses the map again).
fn with_scratch<R>(
    cell: &'static std::thread::LocalKey<RefCell<Vec<u8>>>,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> R {
    cell.with(|c| match c.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut Vec::new()),
    })
}

/// A dict-like hash map in a named shared-memory segment, shared by processes and threads.
#[pyclass(module = "shared_hashmap", name = "SharedHashMap", frozen)]
struct SharedHashMap {
    /// `None` once closed.
    map: RwLock<Option<LockFreeMap>>,
    name: String,
    /// As the user sees them: payload sizes, without the tag byte.
    params: MapParams,
}

/// The specification's error for a serialized key or value (tag excluded) over its maximum.
fn check_size(what: &str, encoded: &[u8], max: usize) -> PyResult<()> {
    let size = encoded.len() - TAG;
    if size > max {
        return Err(PyValueError::new_err(format!(
            "Serialized {what} size {size} exceeds maximum {max}"
        )));
    }
    Ok(())
}

fn size_param(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<usize> {
    if obj.is_instance_of::<pyo3::types::PyBool>() || !obj.is_instance_of::<pyo3::types::PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, not {}",
            obj.get_type().name()?
        )));
    }
    match obj.extract::<i64>() {
        Ok(n) if n >= 1 => Ok(n as usize),
        _ => Err(PyValueError::new_err(format!(
            "{what} must be a positive integer, got {obj}"
        ))),
    }
}

impl SharedHashMap {
    fn with_map<R>(&self, f: impl FnOnce(&LockFreeMap) -> PyResult<R>) -> PyResult<R> {
        let guard = self.map.read();
        let map = guard.as_ref().ok_or_else(|| {
            PyValueError::new_err(format!("SharedHashMap {:?} is closed", self.name))
        })?;
        f(map)
    }

    fn encode(obj: &Bound<'_, PyAny>, what: &str, max: usize, out: &mut Vec<u8>) -> PyResult<()> {
        out.clear();
        codec::encode(obj, out)?;
        check_size(what, out, max)
    }

    /// Runs `f` with the serialized `key`, encoded on the stack when it is short.
    fn with_key<R>(
        &self,
        key: &Bound<'_, PyAny>,
        f: impl FnOnce(&[u8]) -> PyResult<R>,
    ) -> PyResult<R> {
        let mut heap = Vec::new();
        let mut stack = [0u8; STACK_KEY];
        let bytes = match codec::encode_small(key, &mut stack)? {
            Some(n) => &stack[..n],
            None => {
                codec::encode(key, &mut heap)?;
                &heap[..]
            }
        };
        check_size("key", bytes, self.params.max_key_size)?;
        f(bytes)
    }

    /// Looks `key` up; `Ok(None)` if absent.
    fn lookup(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let py = key.py();
        self.with_key(key, |k| {
            with_scratch(&VALUE_SCRATCH, |v| {
                let found = self.with_map(|m| m.get_into(k, v).map_err(to_py))?;
                found.then(|| codec::decode(py, v)).transpose()
            })
        })
    }

    fn remove(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.with_key(key, |k| {
            self.with_map(|m| py.detach(|| m.remove(k)).map_err(to_py))
        })
    }

    fn entries(&self, py: Python<'_>) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.with_map(|m| py.detach(|| m.entries()).map_err(to_py))
    }
}

#[pymethods]
impl SharedHashMap {
    #[new]
    #[pyo3(signature = (name, capacity=None, max_key_size=None, max_value_size=None, create=true))]
    fn new(
        py: Python<'_>,
        name: &str,
        capacity: Option<&Bound<'_, PyAny>>,
        max_key_size: Option<&Bound<'_, PyAny>>,
        max_value_size: Option<&Bound<'_, PyAny>>,
        create: bool,
    ) -> PyResult<Self> {
        let d = MapParams::default();
        let param = |obj: Option<&Bound<'_, PyAny>>, what, default| {
            obj.map_or(Ok(default), |o| size_param(o, what))
        };
        let wanted = MapParams {
            capacity: param(capacity, "capacity", d.capacity)?,
            max_key_size: param(max_key_size, "max_key_size", d.max_key_size)?,
            max_value_size: param(max_value_size, "max_value_size", d.max_value_size)?,
        };
        let map = if create {
            let stored = MapParams {
                max_key_size: wanted.max_key_size.saturating_add(TAG),
                max_value_size: wanted.max_value_size.saturating_add(TAG),
                ..wanted
            };
            py.detach(|| LockFreeMap::create(name, stored))
        } else {
            py.detach(|| LockFreeMap::attach(name))
        }
        .map_err(to_py)?;
        let stored = map.params();
        let params = MapParams {
            max_key_size: stored.max_key_size - TAG,
            max_value_size: stored.max_value_size - TAG,
            ..stored
        };
        Ok(Self {
            map: RwLock::new(Some(map)),
            name: name.to_owned(),
            params,
        })
    }

    /// Sets `key` to `value`.
    fn set(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = key.py();
        self.with_key(key, |k| {
            with_scratch(&VALUE_SCRATCH, |v| {
                Self::encode(value, "value", self.params.max_value_size, v)?;
                let v = &*v;
                self.with_map(|m| py.detach(|| m.insert(k, v)).map(drop).map_err(to_py))
            })
        })
    }

    /// The value of `key`, or `default` if it is absent.
    #[pyo3(signature = (key, default=None))]
    fn get(&self, key: &Bound<'_, PyAny>, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        Ok(self
            .lookup(key)?
            .unwrap_or_else(|| default.unwrap_or_else(|| key.py().None())))
    }

    /// Removes `key`; `True` if it was present.
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.remove(py, key)
    }

    /// Number of key-value pairs.
    fn size(&self) -> PyResult<usize> {
        self.with_map(|m| Ok(m.len()))
    }

    /// Unmaps this handle; the segment stays for other processes. Idempotent.
    fn close(&self, py: Python<'_>) {
        // Without the GIL: an operation holding the read lock may be waiting to retake it.
        let map = py.detach(|| self.map.write().take());
        drop(map);
    }

    /// Removes the segment's name (call it from the last process); open handles keep working.
    fn unlink(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| shmap::unlink(&self.name)).map_err(to_py)
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
        self.with_key(key, |k| self.with_map(|m| m.contains_key(k).map_err(to_py)))
    }

    fn __len__(&self) -> PyResult<usize> {
        self.size()
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
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        let p = self.params;
        match &*self.map.read() {
            Some(m) => format!(
                "SharedHashMap(name={:?}, size={}, capacity={}, max_key_size={}, max_value_size={})",
                self.name,
                m.len(),
                p.capacity,
                p.max_key_size,
                p.max_value_size
            ),
            None => format!("<closed SharedHashMap name={:?}>", self.name),
        }
    }

    /// Pickles as "attach to this name", so a handle can be sent to spawned processes.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let me = slf.get();
        let p = me.params;
        let args = (
            me.name.as_str(),
            p.capacity,
            p.max_key_size,
            p.max_value_size,
            false,
        );
        PyTuple::new(
            slf.py(),
            [
                slf.get_type().into_any(),
                args.into_pyobject(slf.py())?.into_any(),
            ],
        )
    }

    /// The segment's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Number of buckets: the most key-value pairs the map can hold.
    #[getter]
    fn capacity(&self) -> usize {
        self.params.capacity
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
        self.map.read().is_none()
    }
}

#[pymodule]
fn _shared_hashmap(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SharedHashMap>()
}
