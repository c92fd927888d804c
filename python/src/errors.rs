//! shmap errors as the Python exceptions the specification names.

use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyOSError, PyRuntimeError, PyTimeoutError, PyValueError,
};
use pyo3::PyErr;
use shmap::Error;

pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::NotFound(_) => PyFileNotFoundError::new_err(msg),
        Error::AlreadyExists(_) => PyFileExistsError::new_err(msg),
        Error::TableFull { .. } | Error::TooManyHandles { .. } => PyRuntimeError::new_err(msg),
        Error::Stalled { .. } => PyTimeoutError::new_err(msg),
        Error::Io { .. } => PyOSError::new_err(msg),
        // Bad parameters, names, sizes, and segments that are not ours, of another version or
        // corrupt: all a ValueError with the reason.
        _ => PyValueError::new_err(msg),
    }
}
