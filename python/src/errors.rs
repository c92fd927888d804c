//! shmap errors as the Python exceptions the specification names.

use pyo3::exceptions::{
    PyConnectionError, PyFileExistsError, PyFileNotFoundError, PyOSError, PyPermissionError,
    PyRuntimeError, PyTimeoutError, PyValueError,
};
use pyo3::PyErr;
use shmap::Error;

pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::NotFound(_) => PyFileNotFoundError::new_err((libc::ENOENT, msg)),
        Error::AlreadyExists(_) => PyFileExistsError::new_err((libc::EEXIST, msg)),
        Error::TableFull { .. } | Error::TooManyHandles { .. } => PyRuntimeError::new_err(msg),
        Error::Stalled { .. } => PyTimeoutError::new_err(msg),
        // A Redis server that cannot be reached, dropped us, or did not answer in time.
        Error::Connection { .. } => PyConnectionError::new_err(msg),
        // A wrong password, or a server user without the right to run what the call needs.
        Error::PermissionDenied { .. } => PyPermissionError::new_err((libc::EACCES, msg)),
        // OSError(errno, message): Python picks the subclass users catch (PermissionError for
        // EACCES, ...), and `errno` is set.
        Error::Io { source, .. } => match source.raw_os_error() {
            Some(code) => PyOSError::new_err((code, msg)),
            None => PyOSError::new_err(msg),
        },
        Error::NoSpace { .. } => PyOSError::new_err((libc::ENOSPC, msg)),
        Error::Untrusted { .. } => PyPermissionError::new_err((libc::EACCES, msg)),
        // Bad parameters, names, sizes, and segments that are not ours, of another version or
        // corrupt: all a ValueError with the reason.
        _ => PyValueError::new_err(msg),
    }
}
