//! Python objects to bytes and back. The first byte is a type tag, so every value comes back as
//! the type it went in as (`True` stays `True`, `1.0` stays `1.0`). Only exact built-in types
//! take the fast paths; subclasses (an `IntEnum`, a `str` subclass) go through pickle so that
//! they too come back as what they were.
//!
//! Keys are encoded canonically instead ([`encode_key`]), so that keys equal in a dict are
//! equal bytes: `1`, `1.0` and `True` are one key (stored as the int), tuples and frozensets
//! of such keys have encodings of their own (a frozenset's elements sorted), and an unhashable
//! key is the `TypeError` a dict raises.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyFrozenSet, PyInt, PyString, PyTuple};

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
/// A tuple of canonical keys: each element as a u32 length (little-endian) and its encoding.
const TUPLE: u8 = 8;
/// A frozenset of canonical keys: as a tuple, the encodings sorted.
const FROZENSET: u8 = 9;

/// The type tags, as [`tag_of`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    None = NONE as isize,
    Str = STR as isize,
    Bytes = BYTES as isize,
    Int = INT as isize,
    BigInt = BIG_INT as isize,
    Bool = BOOL as isize,
    Float = FLOAT as isize,
    Pickle = PICKLE as isize,
    Tuple = TUPLE as isize,
    FrozenSet = FROZENSET as isize,
}

impl Tag {
    const ALL: [Tag; 10] = [
        Tag::None,
        Tag::Str,
        Tag::Bytes,
        Tag::Int,
        Tag::BigInt,
        Tag::Bool,
        Tag::Float,
        Tag::Pickle,
        Tag::Tuple,
        Tag::FrozenSet,
    ];

    /// The Python type a value of this tag decodes to, for error messages.
    pub fn python_name(self) -> &'static str {
        match self {
            Tag::None => "NoneType",
            Tag::Str => "str",
            Tag::Bytes => "bytes",
            Tag::Int | Tag::BigInt => "int",
            Tag::Bool => "bool",
            Tag::Float => "float",
            Tag::Pickle => "a pickled object",
            Tag::Tuple => "tuple",
            Tag::FrozenSet => "frozenset",
        }
    }
}

/// The tag of an encoding and its payload; `None` for an empty or unknown encoding.
pub fn tag_of(bytes: &[u8]) -> Option<(Tag, &[u8])> {
    let (&t, payload) = bytes.split_first()?;
    Tag::ALL
        .into_iter()
        .find(|&tag| tag as u8 == t)
        .map(|tag| (tag, payload))
}

/// An encoding: `tag` then `payload`.
pub fn tagged(tag: Tag, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + payload.len());
    v.push(tag as u8);
    v.extend_from_slice(payload);
    v
}

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

/// Appends the canonical key encoding of `obj` to `out` (which the caller cleared): keys equal
/// in a dict encode to equal bytes.
pub fn encode_key(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    let mut small = [0u8; 64];
    if let Some(n) = encode_small(obj, &mut small)? {
        out.extend_from_slice(&small[..n]);
    } else if obj.is_exact_instance_of::<PyInt>() || obj.is_exact_instance_of::<PyFloat>() {
        // An int beyond i64, or an integral float as large: its decimal digits, like the int.
        out.push(BIG_INT);
        let int = obj.py().get_type::<PyInt>().call1((obj,))?;
        out.extend_from_slice(int.str()?.to_str()?.as_bytes());
    } else if obj.is_exact_instance_of::<PyTuple>() || obj.is_exact_instance_of::<PyFrozenSet>() {
        let mut parts = Vec::new();
        for item in obj.try_iter()? {
            let mut part = Vec::new();
            encode_key(&item?, &mut part)?;
            parts.push(part);
        }
        if obj.is_exact_instance_of::<PyFrozenSet>() {
            parts.sort_unstable(); // insertion order and hash seeds must not matter
            out.push(FROZENSET);
        } else {
            out.push(TUPLE);
        }
        for part in parts {
            let len = u32::try_from(part.len())
                .map_err(|_| PyValueError::new_err("a key element is larger than 4 GiB"))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&part);
        }
    } else {
        obj.hash()?; // unhashable keys: the TypeError a dict raises
        encode(obj, out)?;
    }
    Ok(())
}

/// The length-prefixed parts of a TUPLE or FROZENSET payload.
fn parts(payload: &[u8]) -> PyResult<Vec<&[u8]>> {
    let mut rest = payload;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(4).ok_or_else(|| corrupt("tuple"))?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let (part, tail) = tail.split_at_checked(len).ok_or_else(|| corrupt("tuple"))?;
        out.push(part);
        rest = tail;
    }
    Ok(out)
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

/// An integral, finite float that fits an i64 (so it equals that int in a dict), as the int.
fn float_as_int(f: f64) -> Option<i64> {
    // -2^63 is exact as an f64; 2^63 is not an i64, hence the half-open range.
    (f.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f))
        .then_some(f as i64)
}

/// The canonical key encoding of `obj` into `buf` if it is a str, bytes, int (i64), bool,
/// float or None whose encoding fits: the allocation-free path for typical keys. `None` means
/// "use [`encode_key`]".
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
        put(buf, INT, &i64::from(obj.is_truthy()?).to_le_bytes()) // True == 1
    } else if obj.is_exact_instance_of::<PyInt>() {
        match obj.extract::<i64>() {
            Ok(i) => put(buf, INT, &i.to_le_bytes()),
            Err(_) => None,
        }
    } else if obj.is_exact_instance_of::<PyFloat>() {
        let f = obj.extract::<f64>()?;
        match float_as_int(f) {
            Some(i) => put(buf, INT, &i.to_le_bytes()), // 1.0 == 1
            None if f.fract() == 0.0 && f.is_finite() => None, // a big int: the slow path
            None => put(buf, FLOAT, &f.to_le_bytes()),
        }
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
        TUPLE | FROZENSET => {
            let items = parts(payload)?
                .into_iter()
                .map(|p| decode(py, p))
                .collect::<PyResult<Vec<_>>>()?;
            if tag == TUPLE {
                PyTuple::new(py, items)?.into_any().unbind()
            } else {
                PyFrozenSet::new(py, &items)?.into_any().unbind()
            }
        }
        _ => return Err(corrupt("value (unknown type tag)")),
    })
}
