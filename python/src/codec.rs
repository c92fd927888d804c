//! Python objects to bytes and back. The first byte is a type tag, so `"1"`, `1`, `b"1"`,
//! `True` and `1.0` are five different keys, and every value comes back as the type it went in
//! as. Only exact built-in types take the fast paths; subclasses (an `IntEnum`, a `str`
//! subclass) go through pickle so that they too come back as what they were.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};

const NONE: u8 = 0;
const STR: u8 = 1;
const BYTES: u8 = 2;
/// An int that fits an i64: 8 bytes little-endian.
const INT: u8 = 3;
/// Any other int: its decimal digits in ASCII.
const BIG_INT: u8 = 4;
const BOOL: u8 = 5;
/// An f64, 8 bytes little-endian (bit-exact: -0.0 and NaN payloads survive).
const FLOAT: u8 = 6;
const PICKLE: u8 = 7;

static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn pickle_fn<'py>(
    py: Python<'py>,
    cell: &PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || py.import("pickle")?.getattr(name).map(Bound::unbind))
        .map(|f| f.bind(py).clone())
}

/// Appends the tagged encoding of `obj` to `out` (which the caller cleared).
pub fn encode(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    let py = obj.py();
    if obj.is_none() {
        out.push(NONE);
    } else if obj.is_exact_instance_of::<PyString>() {
        out.push(STR);
        out.extend_from_slice(obj.downcast::<PyString>()?.to_str()?.as_bytes());
    } else if obj.is_exact_instance_of::<PyBytes>() {
        out.push(BYTES);
        out.extend_from_slice(obj.downcast::<PyBytes>()?.as_bytes());
    } else if obj.is_exact_instance_of::<PyBool>() {
        out.extend_from_slice(&[BOOL, obj.is_truthy()? as u8]);
    } else if obj.is_exact_instance_of::<PyInt>() {
        match obj.extract::<i64>() {
            Ok(i) => {
                out.push(INT);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Err(_) => {
                out.push(BIG_INT);
                out.extend_from_slice(obj.str()?.to_str()?.as_bytes());
            }
        }
    } else if obj.is_exact_instance_of::<PyFloat>() {
        out.push(FLOAT);
        out.extend_from_slice(&obj.extract::<f64>()?.to_le_bytes());
    } else {
        // Unpicklable values raise pickle's own error (PicklingError, TypeError, ...).
        let pickled = pickle_fn(py, &DUMPS, "dumps")?.call1((obj,))?;
        out.push(PICKLE);
        out.extend_from_slice(pickled.downcast::<PyBytes>()?.as_bytes());
    }
    Ok(())
}

/// A `str` from UTF-8 bytes, validated once, by CPython's decoder (which builds the compact
/// representation in the same pass).
fn str_from_utf8(py: Python<'_>, payload: &[u8]) -> PyResult<Py<PyAny>> {
    let len =
        pyo3::ffi::Py_ssize_t::try_from(payload.len()).map_err(|_| corrupt("UTF-8 string"))?;
    // SAFETY: the pointer and length describe `payload`, alive for the call; the GIL is held
    // (we have `py`); "strict" is a valid NUL-terminated error handler name. A null result is
    // a raised UnicodeDecodeError, which `from_owned_ptr_or_err` turns into our error.
    unsafe {
        let obj = pyo3::ffi::PyUnicode_DecodeUTF8(payload.as_ptr().cast(), len, c"strict".as_ptr());
        Bound::from_owned_ptr_or_err(py, obj)
            .map(Bound::unbind)
            .map_err(|_| corrupt("UTF-8 string"))
    }
}

/// Encodes `obj` into `buf` if it is a str, bytes, int (i64), bool, float or None whose
/// encoding fits: the allocation-free path for typical keys. `None` means "use [`encode`]".
pub fn encode_small(obj: &Bound<'_, PyAny>, buf: &mut [u8]) -> PyResult<Option<usize>> {
    let put = |buf: &mut [u8], tag: u8, payload: &[u8]| {
        let n = 1 + payload.len();
        (n <= buf.len()).then(|| {
            buf[0] = tag;
            buf[1..n].copy_from_slice(payload);
            n
        })
    };
    Ok(if obj.is_exact_instance_of::<PyString>() {
        put(buf, STR, obj.downcast::<PyString>()?.to_str()?.as_bytes())
    } else if obj.is_exact_instance_of::<PyBytes>() {
        put(buf, BYTES, obj.downcast::<PyBytes>()?.as_bytes())
    } else if obj.is_exact_instance_of::<PyBool>() {
        put(buf, BOOL, &[obj.is_truthy()? as u8])
    } else if obj.is_exact_instance_of::<PyInt>() {
        match obj.extract::<i64>() {
            Ok(i) => put(buf, INT, &i.to_le_bytes()),
            Err(_) => None,
        }
    } else if obj.is_exact_instance_of::<PyFloat>() {
        put(buf, FLOAT, &obj.extract::<f64>()?.to_le_bytes())
    } else if obj.is_none() {
        put(buf, NONE, &[])
    } else {
        None
    })
}

fn corrupt(what: &str) -> PyErr {
    PyValueError::new_err(format!(
        "stored bytes are not a valid {what}: the segment was written by something else"
    ))
}

fn word(payload: &[u8], what: &str) -> PyResult<[u8; 8]> {
    payload.try_into().map_err(|_| corrupt(what))
}

/// The object `bytes` (as written by [`encode`]) stands for.
pub fn decode(py: Python<'_>, bytes: &[u8]) -> PyResult<Py<PyAny>> {
    let Some((&tag, payload)) = bytes.split_first() else {
        return Err(corrupt("value (no type tag)"));
    };
    Ok(match tag {
        NONE => py.None(),
        STR => str_from_utf8(py, payload)?,
        BYTES => PyBytes::new(py, payload).into_any().unbind(),
        INT => i64::from_le_bytes(word(payload, "int")?)
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        BIG_INT => {
            let digits = std::str::from_utf8(payload).map_err(|_| corrupt("int"))?;
            py.get_type::<PyInt>()
                .call1((digits,))
                .map_err(|_| corrupt("int"))?
                .unbind()
        }
        BOOL => PyBool::new(py, payload.first() == Some(&1))
            .to_owned()
            .into_any()
            .unbind(),
        FLOAT => PyFloat::new(py, f64::from_le_bytes(word(payload, "float")?))
            .into_any()
            .unbind(),
        PICKLE => pickle_fn(py, &LOADS, "loads")?
            .call1((PyBytes::new(py, payload),))?
            .unbind(),
        _ => return Err(corrupt("value (unknown type tag)")),
    })
}
