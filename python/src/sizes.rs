//! The sizes a user gives (`capacity`, `max_key_size`, `max_value_size`, `max_capacity`) and
//! the sizes the map stores: every key and value carries a type tag byte (see `codec`), so the
//! map is created one byte larger than the user's limits, which then apply to the serialized
//! payload, as in the original.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use shmap::{MapParams, MAX_KEY_SIZE_LIMIT, MAX_VALUE_SIZE_LIMIT};

/// Bytes of every stored key and value taken by the type tag (Rust's typed map counts the
/// same way).
use shmap_typed::TAG;

/// The specification's error for a serialized key or value (tag excluded) over its maximum.
/// Inlined, its error cold: as a call, it saved five registers and spilled its arguments for
/// the error's `format!` on every set (perf, a set at 1,000 str keys: 2.9% of the samples).
#[inline(always)]
pub(crate) fn check_size(what: &str, encoded: &[u8], max: usize) -> PyResult<()> {
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
pub(crate) struct SizeArg(pub(crate) Option<Py<PyAny>>);

impl<'py> FromPyObject<'py> for SizeArg {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        Ok(Self(Some(ob.clone().unbind())))
    }
}

/// A size parameter as the user gave it: an int from 1 to `max` (a bool or `None` is a
/// `TypeError`, as in a dict-like API that means numbers), or for a key or value limit
/// (`or_none`) also `None`: no limit, stored as `max`.
fn size_param(obj: &Bound<'_, PyAny>, what: &str, max: usize, or_none: bool) -> PyResult<usize> {
    let none = if or_none { " or None (no limit)" } else { "" };
    if or_none && obj.is_none() {
        return Ok(max);
    }
    if obj.is_instance_of::<pyo3::types::PyBool>() || !obj.is_instance_of::<pyo3::types::PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int{none}, not {}",
            obj.get_type().name()?
        )));
    }
    match obj.extract::<i64>() {
        Ok(n) if n >= 1 && n as u64 <= max as u64 => Ok(n as usize),
        _ => Err(PyValueError::new_err(format!(
            "{what} must be an integer from 1 to {max}{none}, got {obj}"
        ))),
    }
}

/// The sizes the user asked for (`wanted`, defaults for those left out) and as stored (one tag
/// byte more for keys and values).
pub(crate) fn wanted_params(
    py: Python<'_>,
    args: [&SizeArg; 4],
) -> PyResult<(MapParams, MapParams)> {
    let [capacity, max_key_size, max_value_size, max_capacity] = args;
    let d = MapParams::default();
    // Only a missing argument takes the default; `None` is not a capacity, and no limit for
    // keys and values.
    let size = |arg: &SizeArg, what, default, max, or_none| match &arg.0 {
        None => Ok(default),
        Some(o) => size_param(o.bind(py), what, max, or_none),
    };
    let param = |arg, what, default, max| size(arg, what, default, max, false);
    let limit = |arg, what, default, max| size(arg, what, default, max, true);
    let wanted = MapParams {
        capacity: param(capacity, "capacity", d.capacity, shmap::MAX_CAPACITY)?,
        // The tag byte comes out of the limit: the user's numbers are payload sizes.
        max_key_size: limit(
            max_key_size,
            "max_key_size",
            d.max_key_size,
            MAX_KEY_SIZE_LIMIT - TAG,
        )?,
        max_value_size: limit(
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
pub(crate) fn check_same_params(
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
        let user = |x: usize| match what {
            "max_key_size" => shown(user_limit(x - TAG, MAX_KEY_SIZE_LIMIT)),
            "max_value_size" => shown(user_limit(x - TAG, MAX_VALUE_SIZE_LIMIT)),
            _ => x.to_string(),
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
pub(crate) fn user_params(found: MapParams) -> MapParams {
    MapParams {
        max_key_size: found.max_key_size - TAG,
        max_value_size: found.max_value_size - TAG,
        ..found
    }
}

/// A key or value limit as the user sees it (without the tag byte): `None` for no limit.
pub(crate) fn user_limit(user: usize, limit: usize) -> Option<usize> {
    (user < limit - TAG).then_some(user)
}

/// A limit as Python writes it: a number, or `None`.
pub(crate) fn shown(limit: Option<usize>) -> String {
    limit.map_or_else(|| "None".to_owned(), |n| n.to_string())
}
