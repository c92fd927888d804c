//! The atomic operations of the Python class, on the map's `update` (see `shmap::MapBackend`):
//! each is one read-modify-write under the key's writer exclusion, so two processes never
//! both see the old value. No Python code runs while the exclusion is held (other processes
//! spin on it): `incr` does its arithmetic on the stored encoding in Rust, the others compare
//! or copy bytes.

use pyo3::exceptions::{PyKeyError, PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyTuple};
use shmap::{MapBackend, MapOps, Update};
use shmap_backends::LockFreeMap;

use crate::codec::{self, Tag};
use crate::errors::to_py;

/// A number as `incr` computes with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    /// An `int` (a `bool` counts as one, as in Python arithmetic) or a `float`.
    pub fn from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Self> {
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

    fn add(self, other: Num) -> Option<Num> {
        Some(match (self, other) {
            (Num::Int(a), Num::Int(b)) => Num::Int(a.checked_add(b)?),
            (Num::Int(a), Num::Float(b)) => Num::Float(a as f64 + b),
            (Num::Float(a), Num::Int(b)) => Num::Float(a + b as f64),
            (Num::Float(a), Num::Float(b)) => Num::Float(a + b),
        })
    }

    fn encode(self) -> Vec<u8> {
        match self {
            Num::Int(i) => match i64::try_from(i) {
                Ok(small) => codec::tagged(Tag::Int, &small.to_le_bytes()),
                Err(_) => codec::tagged(Tag::BigInt, i.to_string().as_bytes()),
            },
            Num::Float(f) => codec::tagged(Tag::Float, &f.to_le_bytes()),
        }
    }
}

/// Why a stored value cannot be incremented.
enum NotANumber {
    Type(&'static str),
    Overflow,
}

/// The stored value as a number, if it is an int (bool included) or a float.
fn stored_num(bytes: &[u8]) -> Result<Num, NotANumber> {
    match codec::tag_of(bytes) {
        Some((Tag::Int, p)) => p
            .try_into()
            .map(|w| Num::Int(i64::from_le_bytes(w).into()))
            .map_err(|_| NotANumber::Type("corrupt int")),
        Some((Tag::BigInt, p)) => std::str::from_utf8(p)
            .ok()
            .and_then(|d| d.parse::<i128>().ok())
            .map(Num::Int)
            .ok_or(NotANumber::Overflow),
        Some((Tag::Bool, p)) => Ok(Num::Int(i128::from(p.first() == Some(&1)))),
        Some((Tag::Float, p)) => p
            .try_into()
            .map(|w| Num::Float(f64::from_le_bytes(w)))
            .map_err(|_| NotANumber::Type("corrupt float")),
        Some((tag, _)) => Err(NotANumber::Type(tag.python_name())),
        None => Err(NotANumber::Type("corrupt value")),
    }
}

/// `incr`: adds `delta` to the number at `key` (`default` if absent) and returns the new value.
pub fn incr(
    py: Python<'_>,
    map: &LockFreeMap,
    key: &[u8],
    delta: Num,
    default: Num,
) -> PyResult<Py<PyAny>> {
    let result = py.detach(|| {
        map.update(key, |current| {
            let base = match current.map(stored_num) {
                None => Ok(default),
                Some(n) => n,
            };
            match base.map(|b| b.add(delta).ok_or(NotANumber::Overflow)) {
                Ok(Ok(new)) => {
                    let bytes = new.encode();
                    (Update::Set(bytes.clone()), Ok(bytes))
                }
                Ok(Err(e)) | Err(e) => (Update::Keep, Err(e)),
            }
        })
    });
    match result.map_err(to_py)? {
        Ok(bytes) => codec::decode(py, &bytes),
        Err(NotANumber::Type(name)) => Err(PyTypeError::new_err(format!(
            "incr needs an int or a float at the key, not {name}"
        ))),
        Err(NotANumber::Overflow) => Err(PyOverflowError::new_err(
            "incr supports ints of up to 128 bits",
        )),
    }
}

/// `compare_and_set`: `new` replaces `expected` (same type and value) only if the key holds it.
pub fn compare_and_set(
    py: Python<'_>,
    map: &LockFreeMap,
    key: &[u8],
    expected: &[u8],
    new: &[u8],
) -> PyResult<bool> {
    let swapped = py
        .detach(|| map.compare_exchange(key, Some(expected), Some(new)))
        .map_err(to_py)?;
    Ok(swapped.is_ok())
}

/// `setdefault`: the key's value, after inserting `default` if it was absent.
pub fn setdefault(
    py: Python<'_>,
    map: &LockFreeMap,
    key: &[u8],
    default: &[u8],
) -> PyResult<Py<PyAny>> {
    let (value, _) = py
        .detach(|| map.get_or_insert(key, default))
        .map_err(to_py)?;
    codec::decode(py, &value)
}

/// `pop`: removes the key and returns its value; `default`, or `KeyError`, if it was absent.
pub fn pop(
    py: Python<'_>,
    map: &LockFreeMap,
    key: &[u8],
    key_obj: &Bound<'_, PyAny>,
    default: Option<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    match py.detach(|| map.remove_entry(key)).map_err(to_py)? {
        Some(value) => codec::decode(py, &value),
        None => default.ok_or_else(|| PyKeyError::new_err(key_obj.clone().unbind())),
    }
}

/// `popitem`: removes some entry and returns it; `KeyError` if the map is empty. The entry is
/// removed atomically: two processes never pop the same one.
pub fn popitem<'py>(py: Python<'py>, map: &LockFreeMap) -> PyResult<Bound<'py, PyTuple>> {
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
