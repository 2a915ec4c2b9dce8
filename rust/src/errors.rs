//! The one place where core errors become Python exceptions.

use jobpersist_core::Error;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::PyErr;

pyo3::create_exception!(
    jobpersist._native,
    DecodeError,
    PyValueError,
    "A value is not strict wrapped base64; the caller decodes it on the exact path."
);

/// `Io` becomes the `OSError` subclass its errno selects (`OSError(errno,
/// strerror, filename)` picks it), naming the user's path; `Decode` becomes
/// `ValueError`.
pub fn to_pyerr(err: Error) -> PyErr {
    match err {
        Error::Io { op, path, source } => {
            let filename = path.to_string_lossy().into_owned();
            match source.raw_os_error() {
                Some(errno) => {
                    let text = source.to_string();
                    // io::Error's Display appends " (os error N)"; Python's strerror does not.
                    let strerror = match text.rfind(" (os error ") {
                        Some(cut) => text[..cut].to_owned(),
                        None => text,
                    };
                    PyOSError::new_err((errno, strerror, filename))
                }
                None => PyOSError::new_err(format!("{op} failed for {filename}: {source}")),
            }
        }
        Error::Decode { offset, reason } => {
            PyValueError::new_err(format!("invalid base64 at byte {offset} ({reason})"))
        }
    }
}
