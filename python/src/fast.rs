//! The hot calls (`m[k]`, `k in m`, `m[k] = v`, `del m[k]`, `m.get(key, default=None)`) entered
//! from CPython without pyo3's trampoline.
//!
//! pyo3 hands a method's `PyResult` back through `catch_unwind` in memory, written in pieces
//! and read back whole, which the CPU cannot forward from its store buffer (perf, a set at
//! 1,000 str keys: 57% of pyo3's `__setitem__` wrapper on that one load; the same load was
//! the hottest instruction of an `in`). It also counts attachment in a thread-local (a
//! `__tls_get_addr` call in an extension) and parses `get`'s arguments generically. Here each
//! entry restores its error itself and passes only a pointer or an int through `catch_unwind`.
//!
//! The class keeps its pyo3 dunder methods (what `type(m).__getitem__` calls); [`install`]
//! points the type's slots at the functions below and adds `get`, which exists only here,
//! once, at import.

use std::ffi::{c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;

use pyo3::exceptions::{PySystemError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};
use pyo3::Borrowed;

use crate::SharedHashMap;

/// Runs `f` with the GIL CPython holds when it calls a slot or a method; an error is restored
/// as the raised exception and `failed` returned, as is a panic (as a `SystemError`).
#[inline(always)]
fn enter<R: Copy>(failed: R, f: impl FnOnce(Python<'_>) -> PyResult<R>) -> R {
    // SAFETY: CPython calls type slots and methods with the GIL held (the extension does not
    // declare itself free of the GIL).
    let py = unsafe { Python::assume_attached() };
    let out = catch_unwind(AssertUnwindSafe(|| match f(py) {
        Ok(r) => r,
        Err(e) => {
            e.restore(py);
            failed
        }
    }));
    out.unwrap_or_else(|_| {
        PySystemError::new_err("shared_hashmap: an internal error (a Rust panic)").restore(py);
        failed
    })
}

/// Runs `f` on the map behind `slf`.
///
/// # Safety
/// `slf` is a live `SharedHashMap` (CPython passes the slot's own type: the class has no
/// subclasses), lent for the call, and the GIL is held for `'py`.
#[inline(always)]
unsafe fn with_this<'py, R>(
    py: Python<'py>,
    slf: *mut ffi::PyObject,
    f: impl FnOnce(&SharedHashMap) -> R,
) -> R {
    // SAFETY: `slf` is live and lent for the call (the contract).
    let slf = unsafe { Borrowed::from_ptr(py, slf) };
    // SAFETY: it is a `SharedHashMap` (the contract); a `frozen` class is shared by `&`
    // without a borrow flag.
    f(unsafe { slf.cast_unchecked::<SharedHashMap>() }.get())
}

/// An argument CPython lends for the call.
///
/// # Safety
/// `ptr` is a live object and the GIL is held for `'py`.
#[inline(always)]
unsafe fn arg<'a, 'py>(py: Python<'py>, ptr: *mut ffi::PyObject) -> Borrowed<'a, 'py, PyAny> {
    // SAFETY: see the function's contract.
    unsafe { Borrowed::from_ptr(py, ptr) }
}

/// `m[k]`.
///
/// # Safety
/// Only for CPython, as the class's `mp_subscript` slot: a live instance and key, the GIL held.
unsafe extern "C" fn subscript(
    slf: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    enter(null_mut(), |py| {
        // SAFETY: CPython calls mp_subscript with a live instance and a live key.
        unsafe { with_this(py, slf, |m| m.__getitem__(&arg(py, key)).map(Py::into_ptr)) }
    })
}

/// `k in m`.
///
/// # Safety
/// Only for CPython, as the class's `sq_contains` slot (as `subscript`).
unsafe extern "C" fn contains(slf: *mut ffi::PyObject, key: *mut ffi::PyObject) -> c_int {
    enter(-1, |py| {
        // SAFETY: as in `subscript`.
        unsafe { with_this(py, slf, |m| m.__contains__(&arg(py, key)).map(c_int::from)) }
    })
}

/// `m[k] = v`, and `del m[k]` (a null value).
///
/// # Safety
/// Only for CPython, as the class's `mp_ass_subscript` slot (as `subscript`; `value` may be
/// null).
unsafe extern "C" fn assign(
    slf: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
) -> c_int {
    enter(-1, |py| {
        // SAFETY: as in `subscript`; `value` is live or null (a delete).
        unsafe {
            with_this(py, slf, |m| {
                let key = arg(py, key);
                if value.is_null() {
                    m.__delitem__(py, &key)
                } else {
                    m.__setitem__(&key, &arg(py, value))
                }
            })
        }
        .map(|()| 0)
    })
}

/// `m.get(key, default=None)`: positional arguments on the fast path, keywords as the
/// specification names them.
///
/// # Safety
/// Only for CPython, through `GET_DEF` (METH_FASTCALL | METH_KEYWORDS): a live instance, `nargs`
/// live arguments at `args` and then one per name in `kwnames`, the GIL held.
unsafe extern "C" fn get(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    enter(null_mut(), |py| {
        // SAFETY: CPython passes `nargs` positional arguments at `args`, then one per name in
        // `kwnames` (null without keywords), all live for the call (METH_FASTCALL |
        // METH_KEYWORDS).
        let (key, default) = unsafe { get_args(py, args, nargs, kwnames) }?;
        // SAFETY: a live instance (as in `subscript`) and live arguments (above).
        let found = unsafe { with_this(py, slf, |m| m.lookup(&arg(py, key))) }?;
        Ok(match (found, default) {
            (Some(v), _) => v.into_ptr(),
            // SAFETY: a live argument.
            (None, Some(d)) => unsafe { arg(py, d) }.to_owned().into_ptr(),
            (None, None) => py.None().into_ptr(),
        })
    })
}

/// `get`'s key and default from a vectorcall's arguments.
///
/// # Safety
/// As CPython passes them to a METH_FASTCALL | METH_KEYWORDS method, with the GIL held.
#[inline(always)]
unsafe fn get_args(
    py: Python<'_>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<(*mut ffi::PyObject, Option<*mut ffi::PyObject>)> {
    let n = usize::try_from(nargs).unwrap_or(usize::MAX);
    if n > 2 {
        return Err(PyTypeError::new_err(format!(
            "get() takes at most 2 arguments ({n} given)"
        )));
    }
    // SAFETY: `n` live positional arguments at `args` (the contract).
    let (mut key, mut default) =
        unsafe { ((n >= 1).then(|| *args), (n >= 2).then(|| *args.add(1))) };
    if !kwnames.is_null() {
        // SAFETY: a tuple of str, live for the call (the contract).
        let names = unsafe { arg(py, kwnames) };
        for (i, name) in names.downcast::<PyTuple>()?.iter().enumerate() {
            // SAFETY: the value of the i-th keyword follows the positional arguments.
            let value = unsafe { *args.add(n + i) };
            let slot = match name.extract::<String>()?.as_str() {
                "key" => &mut key,
                "default" => &mut default,
                other => {
                    return Err(PyTypeError::new_err(format!(
                        "get() got an unexpected keyword argument '{other}'"
                    )))
                }
            };
            if slot.replace(value).is_some() {
                return Err(PyTypeError::new_err(format!(
                    "get() got multiple values for argument '{name}'"
                )));
            }
        }
    }
    let key = key.ok_or_else(|| PyTypeError::new_err("get() missing required argument 'key'"))?;
    Ok((key, default))
}

const GET_DOC: &CStr = c"get($self, key, default=None)\n--\n\nThe value of `key`, or `default` if \
it is absent. While nobody changes the entry, gets of a str, bytes, int or float return the \
same object (the handle keeps those it returned, up to 8 MiB, with the str, bytes, int or \
float key object of the last get, which a get or `in` of that very object then finds by \
identity, as a dict does); other values are unpickled afresh.";

/// `get`'s method table entry: CPython keeps a pointer to it for as long as the class lives.
static mut GET_DEF: ffi::PyMethodDef = ffi::PyMethodDef {
    ml_name: c"get".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: get,
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: GET_DOC.as_ptr(),
};

/// Points the class's mapping and sequence slots at the functions above and adds `get`.
pub(crate) fn install(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let t = ty.as_type_ptr();
    // SAFETY: `t` is our heap type, created by pyo3 and not yet used: a heap type owns its
    // slot tables (`tp_as_mapping`, `tp_as_sequence` point into it), which pyo3 filled
    // because the class defines __getitem__, __setitem__ and __contains__. GET_DEF is a
    // static that lives for ever and is only ever read by CPython.
    unsafe {
        let mapping = (*t).tp_as_mapping;
        let sequence = (*t).tp_as_sequence;
        if mapping.is_null() || sequence.is_null() {
            return Err(PySystemError::new_err("SharedHashMap has no mapping slots"));
        }
        (*mapping).mp_subscript = Some(subscript);
        (*mapping).mp_ass_subscript = Some(assign);
        (*sequence).sq_contains = Some(contains);
        let descr = ffi::PyDescr_NewMethod(t, std::ptr::addr_of_mut!(GET_DEF));
        let descr = Bound::from_owned_ptr_or_err(ty.py(), descr)?;
        ty.setattr("get", descr)?;
        ffi::PyType_Modified(t);
    }
    Ok(())
}
