//! The atomic operations of the Python class, on the map's `update` (see `shmap::MapBackend`):
//! each is one read-modify-write under the key's writer exclusion, so two processes never
//! both see the old value. No Python code runs while the exclusion is held (other processes
//! spin on it): `incr` does its arithmetic on the stored encoding in Rust, the others compare
//! or copy bytes. On a Redis map each is one step on the server: `incr` is `incr.lua` (the same
//! arithmetic, bit for bit, in `shmap_typed::number`), the others are `MapOps` operations the
//! map does in one script.

use pyo3::exceptions::{PyKeyError, PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyTuple};

use shmap::MapOps;
use shmap_typed::number::{self, Holds, NotANumber, Num};

use crate::codec;
use crate::errors::to_py;
use crate::store::MapRef;

/// A number `incr` takes: an `int` (a `bool` counts as one, as in Python arithmetic) or a
/// `float`.
pub fn num_from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Num> {
    if obj.is_instance_of::<PyFloat>() {
        return Ok(Num::Float(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyBool>() {
        return obj.extract::<i128>().map(Num::Int).map_err(|_| {
            PyOverflowError::new_err(format!("{what} is beyond the 128-bit ints incr supports"))
        });
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be an int or a float, not {}",
        obj.get_type().name()?
    )))
}

/// `incr`: adds `delta` to the number at `key` (`default` if absent) and returns the new value.
/// The arithmetic is `shmap_typed::number`'s, which Rust's typed map uses too.
pub fn incr(
    py: Python<'_>,
    map: MapRef<'_>,
    key: &[u8],
    delta: Num,
    default: Num,
) -> PyResult<Py<PyAny>> {
    let result = py.detach(|| match map {
        MapRef::Shm(m) => number::incr_local(m, key, delta, default, Holds::Any),
        MapRef::Redis(r) => number::incr_redis(r, key, delta, default, Holds::Any),
    });
    match result.map_err(to_py)? {
        Ok(bytes) => codec::decode(py, &bytes),
        Err(NotANumber::Type(name)) => Err(PyTypeError::new_err(format!(
            "incr needs an int or a float at the key, not {name}"
        ))),
        // (`OutOfRange` is for typed Rust maps: `Holds::Any` never refuses a sum.)
        Err(NotANumber::Overflow | NotANumber::OutOfRange(_)) => Err(PyOverflowError::new_err(
            "incr supports ints of up to 128 bits",
        )),
    }
}

/// `compare_and_set`: `new` replaces `expected` (same type and value) only if the key holds it.
/// `or_pickled`: the pickled form of an `expected` tuple, which an older version stored: tried
/// second. Each attempt is one atomic compare-exchange; a key rewritten from one form to the
/// other between the two may be reported as not holding `expected`.
pub fn compare_and_set(
    py: Python<'_>,
    map: MapRef<'_>,
    key: &[u8],
    expected: &[u8],
    new: &[u8],
    or_pickled: Option<&[u8]>,
) -> PyResult<bool> {
    let swapped = py
        .detach(|| {
            let first = map.ops().compare_exchange(key, Some(expected), Some(new))?;
            match (first, or_pickled) {
                (Err(_), Some(pickled)) => {
                    map.ops().compare_exchange(key, Some(pickled), Some(new))
                }
                (first, _) => Ok(first),
            }
        })
        .map_err(to_py)?;
    Ok(swapped.is_ok())
}

/// `setdefault`: the key's value, after inserting `default` if it was absent.
pub fn setdefault(
    py: Python<'_>,
    map: MapRef<'_>,
    key: &[u8],
    default: &[u8],
) -> PyResult<Py<PyAny>> {
    let (value, _) = py
        .detach(|| map.ops().get_or_insert(key, default))
        .map_err(to_py)?;
    codec::decode(py, &value)
}

/// `pop`: removes the key and returns its value; `default`, or `KeyError`, if it was absent.
pub fn pop(
    py: Python<'_>,
    map: MapRef<'_>,
    key: &[u8],
    key_obj: &Bound<'_, PyAny>,
    default: Option<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    match py.detach(|| map.ops().remove_entry(key)).map_err(to_py)? {
        Some(value) => codec::decode(py, &value),
        None => default.ok_or_else(|| PyKeyError::new_err(key_obj.clone().unbind())),
    }
}

/// `popitem`: removes some entry and returns it; `KeyError` if the map is empty. The entry is
/// removed atomically: two processes never pop the same one.
pub fn popitem<'py>(py: Python<'py>, map: MapRef<'_>) -> PyResult<Bound<'py, PyTuple>> {
    let map = match map {
        MapRef::Shm(m) => m,
        MapRef::Redis(r) => {
            // One script: HRANDFIELD and HDEL.
            let Some((key, value)) = py.detach(|| r.pop_any()).map_err(to_py)? else {
                return Err(PyKeyError::new_err("popitem(): dictionary is empty"));
            };
            return PyTuple::new(py, [codec::decode(py, &key)?, codec::decode(py, &value)?]);
        }
    };
    loop {
        let entries = py.detach(|| map.entries()).map_err(to_py)?;
        let Some((key, _)) = entries.last() else {
            return Err(PyKeyError::new_err("popitem(): dictionary is empty"));
        };
        // Removed by someone else since the scan: scan again.
        if let Some(value) = py.detach(|| map.remove_entry(key)).map_err(to_py)? {
            return PyTuple::new(py, [codec::decode(py, key)?, codec::decode(py, &value)?]);
        }
    }
}
