//! Placeholders for array data the pickler must not copy (see
//! `jobpersist._pickle.dump`).

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A new `bytes` of `size` that holds no memory: its contents are never read.
///
/// The writer recognises the object and writes an array's memory in its
/// place, and the pickler's memo keeps it until the value is done. `bytes(n)`
/// is calloc'd, which below glibc's mmap threshold (raised up to 32 MiB by
/// every large block freed) zeroes memory the process already used: a value
/// of 256 arrays of 1 MiB held 256 MiB of zeros. Here the bytes are left
/// uninitialised (no page touched), and the whole pages inside them are given
/// back to the system, in case they were resident.
#[pyfunction]
pub fn placeholder(py: Python<'_>, size: usize) -> PyResult<Bound<'_, PyBytes>> {
    let len = pyo3::ffi::Py_ssize_t::try_from(size)
        .map_err(|_| crate::errors::too_large("placeholder too large"))?;
    // SAFETY: a null pointer asks CPython for `len` uninitialised bytes (the documented
    // use of PyBytes_FromStringAndSize); it returns a new reference or null with an
    // exception set, which `from_owned_ptr_or_err` takes over either way; what it returns
    // is a `bytes`.
    let bytes: Bound<'_, PyBytes> = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), len),
        )?
        .cast_into_unchecked()
    };
    // SAFETY: the object is new and only ours: its `size` bytes are its own allocation's
    // (the allocator's header and the object's header come before them, the terminating
    // NUL after), and nothing reads them (the point of a placeholder).
    unsafe {
        jobpersist_core::discard_pages(pyo3::ffi::PyBytes_AsString(bytes.as_ptr()).cast(), size)
    };
    Ok(bytes)
}
