//! The atomic operations of the Python class, on the map's `update` (see `shmap::MapBackend`):
//! each is one read-modify-write under the key's writer exclusion, so two processes never
//! both see the old value. No Python code runs while the exclusion is held (other processes
//! spin on it): `incr` does its arithmetic on the stored encoding in Rust, the others compare
//! or copy bytes. On a Redis map each is one step on the server: `incr` is `incr.lua` (the same
//! arithmetic, bit for bit), the others are `MapOps` operations the map does in one script.

use pyo3::exceptions::{PyKeyError, PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyTuple};
use std::sync::LazyLock;

use shmap::{MapBackend, MapOps, Update};
use shmap_backends::redis_map::redis::{self, Script};
use shmap_backends::redis_map::write_script;
use shmap_backends::{LockFreeMap, RedisMap};

use crate::codec::{self, Tag};
use crate::errors::to_py;
use crate::store::MapRef;

/// `incr` on the server: see `incr.lua`.
static INCR: LazyLock<Script> = LazyLock::new(|| write_script(include_str!("incr.lua")));

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
    Type(std::borrow::Cow<'static, str>),
    Overflow,
}

/// The stored value as a number, if it is an int (bool included) or a float.
fn stored_num(bytes: &[u8]) -> Result<Num, NotANumber> {
    match codec::tag_of(bytes) {
        Some((Tag::Int, p)) => p
            .try_into()
            .map(|w| Num::Int(i64::from_le_bytes(w).into()))
            .map_err(|_| NotANumber::Type("corrupt int".into())),
        Some((Tag::BigInt, p)) => std::str::from_utf8(p)
            .ok()
            .and_then(|d| d.parse::<i128>().ok())
            .map(Num::Int)
            .ok_or(NotANumber::Overflow),
        Some((Tag::Bool, p)) => Ok(Num::Int(i128::from(p.first() == Some(&1)))),
        Some((Tag::Float, p)) => p
            .try_into()
            .map(|w| Num::Float(f64::from_le_bytes(w)))
            .map_err(|_| NotANumber::Type("corrupt float".into())),
        Some((tag, _)) => Err(NotANumber::Type(tag.python_name().into())),
        None => Err(NotANumber::Type("corrupt value".into())),
    }
}

/// `incr`: adds `delta` to the number at `key` (`default` if absent) and returns the new value.
pub fn incr(
    py: Python<'_>,
    map: MapRef<'_>,
    key: &[u8],
    delta: Num,
    default: Num,
) -> PyResult<Py<PyAny>> {
    let result = match map {
        MapRef::Shm(m) => incr_shm(py, m, key, delta, default),
        MapRef::Redis(r) => incr_redis(py, r, key, delta, default),
    };
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

type Incremented = shmap::Result<Result<Vec<u8>, NotANumber>>;

fn incr_redis(py: Python<'_>, map: &RedisMap, key: &[u8], delta: Num, default: Num) -> Incremented {
    let (delta, default) = (delta.encode(), default.encode());
    let reply: Vec<redis::Value> =
        py.detach(|| map.script_once(&INCR, &[key, &delta, &default]))?;
    let bytes = |v: Option<&redis::Value>| match v {
        Some(redis::Value::BulkString(b)) => Some(b.clone()),
        _ => None,
    };
    Ok(match reply.first() {
        Some(redis::Value::Int(0)) => {
            bytes(reply.get(1)).ok_or(NotANumber::Type("corrupt reply".into()))
        }
        Some(redis::Value::Int(1)) => Err(NotANumber::Type(
            bytes(reply.get(1)).map_or("corrupt value".into(), |b| {
                String::from_utf8_lossy(&b).into_owned().into()
            }),
        )),
        _ => Err(NotANumber::Overflow),
    })
}

fn incr_shm(
    py: Python<'_>,
    map: &LockFreeMap,
    key: &[u8],
    delta: Num,
    default: Num,
) -> Incremented {
    py.detach(|| {
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
    })
}

/// `compare_and_set`: `new` replaces `expected` (same type and value) only if the key holds it.
pub fn compare_and_set(
    py: Python<'_>,
    map: MapRef<'_>,
    key: &[u8],
    expected: &[u8],
    new: &[u8],
) -> PyResult<bool> {
    let swapped = py
        .detach(|| map.ops().compare_exchange(key, Some(expected), Some(new)))
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
