//! The one place where failures become Python exceptions.
//!
//! Core errors (`jobpersist_core::Error`, `NestingError`, `Crossing`) are
//! mapped here, and every other exception the module raises is built here as
//! well (the plaintext encoder's, a writer used out of order, an unusable
//! buffer, a size too large), so
//! `new_err` appears nowhere else in the glue. Argument types that pyo3
//! refuses while converting a call's arguments raise pyo3's own `TypeError`.

use std::path::Path;

use jobpersist_core::{Crossing, Error, NestingError, MAX_DEPTH};
use pyo3::exceptions::{
    PyBufferError, PyOSError, PyOverflowError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::PyErr;

pyo3::create_exception!(
    jobpersist._native,
    DecodeError,
    PyValueError,
    "A value is not strict wrapped base64; the caller decodes it on the exact path."
);

pyo3::create_exception!(
    jobpersist._native,
    FrameError,
    PyValueError,
    "A pickle read from a file would not read as from bytes: args (offset, frame length)."
);

/// An opcode crossing the end of a frame the unpickler reads whole: `FrameError(offset,
/// frame length)`, which the caller words (with the key) for both backends.
pub fn frame_crossing(crossing: Crossing) -> PyErr {
    FrameError::new_err((crossing.at, crossing.frame))
}

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

/// An error while reading the user's file `path` (the core reads it through a
/// handle and does not know its name): `Io` names `path`; `Decode`, whose
/// offset counts from byte `base` of the file, becomes `DecodeError` naming
/// the file and the offset in it.
pub fn in_file(err: Error, path: &Path, base: usize) -> PyErr {
    match err {
        Error::Io { op, source, .. } => to_pyerr(Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }),
        Error::Decode { offset, reason } => DecodeError::new_err(format!(
            "invalid base64 in {} at byte {} ({reason})",
            path.display(),
            base + offset
        )),
    }
}

/// A value the plaintext encoder cannot enter, as the Python walker words it:
/// `path` is the whole key path, `head` its first three steps.
pub fn nesting(err: NestingError, path: &str, head: &str) -> PyErr {
    match err {
        NestingError::Cycle => {
            PyValueError::new_err(format!("Circular reference detected at {path}"))
        }
        NestingError::TooDeep => PyValueError::new_err(format!(
            "Data nested deeper than {MAX_DEPTH} levels at {head}... cannot be persisted as \
             plaintext JSON."
        )),
    }
}

/// A dict key `json.dumps` cannot write (`key` is its repr).
pub fn bad_key(key: &str, type_name: &str, path: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "Key {key} at {path}: keys must be str, int, float, bool or None, not {type_name}"
    ))
}

/// The converter returned an object the encoder would have to convert again.
pub fn unexpected_conversion(type_name: &str, path: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "Value at {path} of type '{type_name}' cannot be persisted as plaintext JSON: the \
         conversion returned an unexpected type."
    ))
}

/// A dict changed size while the encoder iterated over it (Python's own words).
pub fn dict_changed() -> PyErr {
    PyRuntimeError::new_err("dictionary changed size during iteration")
}

/// A call out of order or out of range (a writer after commit, a span past
/// the end of the file).
pub fn misuse(message: &'static str) -> PyErr {
    PyValueError::new_err(message)
}

/// A buffer the method cannot use (read-only, not contiguous).
pub fn unusable_buffer(message: &'static str) -> PyErr {
    PyBufferError::new_err(message)
}

/// A size Python's objects cannot hold (more than `isize::MAX` bytes).
pub fn too_large(message: &'static str) -> PyErr {
    PyOverflowError::new_err(message)
}
