//! Python objects to bytes and back, in the encoding `shmap_typed::codec` defines (its tags,
//! shared with Rust's typed map). The first byte is a type tag, so every value comes back as
//! the type it went in as (`True` stays `True`, `1.0` stays `1.0`). Only exact built-in types
//! (and exact tuples of them) have tags of their own; subclasses (an `IntEnum`, a `str`
//! subclass, a namedtuple) and other objects go through pickle so that they too come back as
//! what they were, or with `serializer="json"` through JSON, which Rust reads too.
//!
//! Keys are encoded canonically instead ([`encode_key`]), so that keys equal in a dict are
//! equal bytes: `1`, `1.0` and `True` are one key (stored as the int), tuples and frozensets
//! of such keys have encodings of their own (a frozenset's elements sorted), and an unhashable
//! key is the `TypeError` a dict raises.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PyString, PyTuple,
};

use shmap_typed::codec::{float_as_int, parts as tuple_parts};
pub use shmap_typed::codec::{tag_of, Tag};

const NONE: u8 = Tag::None as u8;
const STR: u8 = Tag::Str as u8;
const BYTES: u8 = Tag::Bytes as u8;
const INT: u8 = Tag::Int as u8;
const BIG_INT: u8 = Tag::BigInt as u8;
const BOOL: u8 = Tag::Bool as u8;
const FLOAT: u8 = Tag::Float as u8;
const PICKLE: u8 = Tag::Pickle as u8;
const TUPLE: u8 = Tag::Tuple as u8;
const FROZENSET: u8 = Tag::FrozenSet as u8;
const JSON: u8 = Tag::Json as u8;

/// How a handle stores values that are none of the built-in types the codec knows
/// (`serializer=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serializer {
    /// `pickle.dumps`: any picklable value, read back only by Python.
    Pickle,
    /// JSON: lists, dicts with `str` keys, and the scalars inside them, which Rust reads as
    /// `Json<T>`; anything else is refused.
    Json,
}

impl Serializer {
    /// `serializer=` as given: `"pickle"` or `"json"`.
    pub fn from_name(name: &str) -> PyResult<Self> {
        match name {
            "pickle" => Ok(Serializer::Pickle),
            "json" => Ok(Serializer::Json),
            other => Err(PyValueError::new_err(format!(
                "serializer must be \"pickle\" or \"json\", got {other:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Serializer::Pickle => "pickle",
            Serializer::Json => "json",
        }
    }
}

static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `module.name`, imported once.
fn py_fn<'py>(
    py: Python<'py>,
    cell: &PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || py.import(module)?.getattr(name).map(Bound::unbind))
        .map(|f| f.bind(py).clone())
}

/// Appends the tagged encoding of `obj` to `out` (which the caller cleared): a built-in type
/// the codec knows (exact `str`, `bytes`, `bool`, `int`, `float`, `None`, and exact tuples of
/// these: see [`encode_tuple`]) by its tag, anything else as `serializer` says. `limit`: the
/// map's largest value, which a tuple's own encoding must fit (else it is pickled, smaller).
pub fn encode(
    obj: &Bound<'_, PyAny>,
    serializer: Serializer,
    limit: usize,
    out: &mut Vec<u8>,
) -> PyResult<()> {
    if obj.is_exact_instance_of::<PyTuple>() {
        if encode_tuple(obj, limit, out)? {
            return Ok(());
        }
    } else if encode_scalar(obj, out)? {
        return Ok(());
    }
    match serializer {
        Serializer::Pickle => encode_pickled(obj, out),
        Serializer::Json => encode_json(obj, out),
    }
}

/// `obj` pickled, tagged.
pub fn encode_pickled(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    // Unpicklable values raise pickle's own error (PicklingError, TypeError, ...).
    let pickled = py_fn(obj.py(), &DUMPS, "pickle", "dumps")?.call1((obj,))?;
    out.push(PICKLE);
    out.extend_from_slice(pickled.downcast::<PyBytes>()?.as_bytes());
    Ok(())
}

/// Appends the encoding of `obj` if it is `None`, an exact `str`, `bytes`, `bool`, `int` or
/// `float`; `false`, with `out` as it was, otherwise.
fn encode_scalar(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<bool> {
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
        return Ok(false);
    }
    Ok(true)
}

/// Deepest tuple nesting given an encoding of its own; deeper tuples are pickled, as before.
const TUPLE_DEPTH: usize = 32;
/// Largest tuple encoding made (beside the map's own limit): a tuple holding one sub-tuple
/// many times is one object to pickle but an encoding that doubles with each level.
const TUPLE_BUDGET: usize = 1 << 16;

/// Appends the encoding of the exact tuple `obj` (each element's value encoding behind its
/// length, as Rust's typed map writes tuples) if every element, nested, is a built-in value
/// `encode_scalar` takes or such a tuple, no deeper than `TUPLE_DEPTH`, and the whole fits
/// `limit` and `TUPLE_BUDGET`: `false`, with `out` as it was, otherwise. Such tuples were
/// pickled before; they still are when this says `false`, which keeps every value that fit
/// its map before fitting it now.
fn encode_tuple(obj: &Bound<'_, PyAny>, limit: usize, out: &mut Vec<u8>) -> PyResult<bool> {
    let start = out.len();
    let budget = start + limit.min(TUPLE_BUDGET);
    let fits = encode_parts(obj, budget, TUPLE_DEPTH, out)?;
    if !fits {
        out.truncate(start);
    }
    Ok(fits)
}

fn encode_parts(
    obj: &Bound<'_, PyAny>,
    budget: usize,
    depth: usize,
    out: &mut Vec<u8>,
) -> PyResult<bool> {
    out.push(TUPLE);
    for item in obj.downcast::<PyTuple>()?.iter() {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        let encoded = if item.is_exact_instance_of::<PyTuple>() {
            depth > 0 && encode_parts(&item, budget, depth - 1, out)?
        } else {
            // An element that does not encode (a str with lone surrogates: pickle carries
            // them, UTF-8 does not) sends the whole tuple to pickle, bytes written or not.
            encode_scalar(&item, out).unwrap_or(false)
        };
        if !encoded || out.len() > budget {
            return Ok(false);
        }
        let len = u32::try_from(out.len() - at - 4).expect("within the budget");
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    Ok(true)
}

/// How deep a JSON value may nest: deeper (or a list that holds itself) is a `ValueError`, not
/// a stack overflow.
const JSON_DEPTH: usize = 512;

/// `obj` as JSON, tagged; a `TypeError` for what JSON cannot hold as it is (a tuple, a set, a
/// dict key that is not a `str`, a subclass, any other object), a `ValueError` for NaN or
/// infinity (not JSON) and for nesting deeper than `JSON_DEPTH`.
fn encode_json(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    check_json(obj, 0)?;
    let py = obj.py();
    let kwargs = PyDict::new(py);
    kwargs.set_item("ensure_ascii", false)?;
    kwargs.set_item("allow_nan", false)?;
    kwargs.set_item("separators", (",", ":"))?;
    let text = py_fn(py, &JSON_DUMPS, "json", "dumps")?.call((obj,), Some(&kwargs))?;
    out.push(JSON);
    out.extend_from_slice(text.downcast::<PyString>()?.to_str()?.as_bytes());
    Ok(())
}

fn check_json(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<()> {
    if depth > JSON_DEPTH {
        return Err(PyValueError::new_err(format!(
            "serializer=\"json\": a value nested deeper than {JSON_DEPTH} levels (or that holds itself)"
        )));
    }
    if obj.is_exact_instance_of::<PyList>() {
        for item in obj.downcast::<PyList>()?.iter() {
            check_json(&item, depth + 1)?;
        }
    } else if obj.is_exact_instance_of::<PyDict>() {
        for (k, v) in obj.downcast::<PyDict>()?.iter() {
            if !k.is_exact_instance_of::<PyString>() {
                return Err(PyTypeError::new_err(format!(
                    "serializer=\"json\" stores dicts with str keys only, not {} keys",
                    k.get_type().name()?
                )));
            }
            check_json(&v, depth + 1)?;
        }
    } else if !(obj.is_none()
        || obj.is_exact_instance_of::<PyString>()
        || obj.is_exact_instance_of::<PyBool>()
        || obj.is_exact_instance_of::<PyInt>()
        || obj.is_exact_instance_of::<PyFloat>())
    {
        return Err(PyTypeError::new_err(format!(
            "serializer=\"json\" stores str, bytes, int, float, bool, None, tuples of these, \
             and lists and dicts (str keys) of JSON values; not {}",
            obj.get_type().name()?
        )));
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
            if !shmap_typed::codec::push_part(out, &part) {
                return Err(PyValueError::new_err("a key element is larger than 4 GiB"));
            }
        }
    } else {
        obj.hash()?; // unhashable keys: the TypeError a dict raises
        if !encode_scalar(obj, out)? {
            encode_pickled(obj, out)?;
        }
    }
    Ok(())
}

/// The length-prefixed parts of a TUPLE or FROZENSET payload.
fn parts(payload: &[u8]) -> PyResult<Vec<&[u8]>> {
    tuple_parts(payload).ok_or_else(|| corrupt("tuple"))
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
        PICKLE => py_fn(py, &LOADS, "pickle", "loads")?
            .call1((PyBytes::new(py, payload),))?
            .unbind(),
        JSON => py_fn(py, &JSON_LOADS, "json", "loads")?
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
