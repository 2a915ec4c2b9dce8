//! `EnvelopeWriter` for Python: the sink `pickle.Pickler` writes into.

use std::os::fd::IntoRawFd;
use std::path::PathBuf;

use jobpersist_core::{EnvelopeWriter, Options};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::errors::{misuse, to_pyerr, unusable_buffer};
use crate::plaintext::escape;

/// Writes below this size keep the GIL: releasing it costs more than they do.
const DETACH_AT: usize = 64 * 1024;
/// A buffer that is not `bytes` is encoded in steps of the core's encoding step (57-byte
/// lines fit it exactly, so no step leaves a partial line behind; a 1 MiB array is one
/// step).
const ENCODE_STEP: usize = jobpersist_core::B64_STEP;

/// An envelope being written to a temp file beside its target.
#[pyclass(module = "jobpersist._native", name = "EnvelopeWriter")]
pub struct NativeEnvelopeWriter {
    inner: Option<EnvelopeWriter>,
    in_b64: bool,
    in_memory: bool,
}

impl NativeEnvelopeWriter {
    fn inner(&mut self) -> PyResult<&mut EnvelopeWriter> {
        usable(&mut self.inner)
    }
}

fn usable(inner: &mut Option<EnvelopeWriter>) -> PyResult<&mut EnvelopeWriter> {
    inner
        .as_mut()
        .ok_or_else(|| misuse("the writer is already committed or aborted"))
}

#[pymethods]
impl NativeEnvelopeWriter {
    /// Appends ASCII JSON text as it is.
    fn write_raw(&mut self, data: &[u8]) -> PyResult<()> {
        self.inner()?.write_raw(data).map_err(to_pyerr)
    }

    /// Appends `key` as an escaped JSON string followed by `": "`, after `", "` when
    /// `separator` (one call per entry: envelopes may hold tens of thousands).
    #[pyo3(signature = (key, separator = false))]
    fn write_key(&mut self, key: &Bound<'_, PyString>, separator: bool) -> PyResult<()> {
        let mut out = Vec::with_capacity(key.len()? + 6);
        if separator {
            out.extend_from_slice(b", ");
        }
        escape(key, &mut out)?;
        out.extend_from_slice(b": ");
        self.inner()?.write_raw(&out).map_err(to_pyerr)
    }

    /// Appends `value` as an escaped JSON string.
    fn write_str(&mut self, py: Python<'_>, value: &Bound<'_, PyString>) -> PyResult<()> {
        let mut out = Vec::new();
        escape(value, &mut out)?;
        let inner = self.inner()?;
        py.detach(|| inner.write_raw(&out)).map_err(to_pyerr)
    }

    /// Appends the JSON text the reference writes for `value` (under top-level `key`);
    /// `convert(path, depth, value)` converts what this module does not write itself.
    fn write_json(
        &mut self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        convert: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let inner = self.inner()?;
        crate::plaintext::encode(py, key, value, convert, |chunk| {
            py.detach(|| inner.write_raw(chunk)).map_err(to_pyerr)
        })
    }

    /// Opens a JSON string holding `base64.encodebytes` of what is written next.
    fn begin_b64(&mut self) -> PyResult<()> {
        if self.in_b64 {
            return Err(misuse("begin_b64() inside an open base64 value"));
        }
        self.inner()?.begin_b64_string().map_err(to_pyerr)?;
        self.in_b64 = true;
        Ok(())
    }

    /// Appends bytes to the open base64 value (the file protocol `pickle` uses).
    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        if !self.in_b64 {
            return Err(misuse("write() outside begin_b64()/end_b64()"));
        }
        let inner = usable(&mut self.inner)?;
        if let Ok(bytes) = data.cast::<PyBytes>() {
            // Bytes are immutable and `data` keeps them alive, so the slice
            // stays valid while other threads run.
            let slice = bytes.as_bytes();
            let result = if slice.len() >= DETACH_AT {
                py.detach(|| inner.write_b64(slice))
            } else {
                inner.write_b64(slice)
            };
            result.map_err(to_pyerr)?;
            return Ok(slice.len());
        }
        // bytearray, memoryview (a numpy array's memory): Python code may change them, so
        // they are read (encoded) with the GIL held, a step at a time, and the text is
        // written without it. Copying them out to encode without the GIL would cost as
        // much as encoding them.
        let buffer = PyBuffer::<u8>::get(data)?;
        if !buffer.is_c_contiguous() {
            return Err(unusable_buffer("write() needs a contiguous buffer"));
        }
        let cells = buffer
            .as_slice(py)
            .ok_or_else(|| unusable_buffer("write() needs a byte buffer"))?;
        inner.reserve_b64(cells.len());
        for chunk in cells.chunks(ENCODE_STEP) {
            // SAFETY: `ReadOnlyCell<u8>` is `repr(transparent)` over `u8`, so `chunk` is
            // `chunk.len()` readable bytes, which the buffer export keeps alive; the slice
            // lives only while the GIL is held, so no Python code writes them meanwhile.
            let bytes =
                unsafe { std::slice::from_raw_parts(chunk.as_ptr().cast::<u8>(), chunk.len()) };
            inner.encode_b64(bytes);
            if inner.is_full() {
                py.detach(|| inner.flush_full()).map_err(to_pyerr)?;
            }
        }
        Ok(cells.len())
    }

    /// Closes the base64 value with its final line break.
    fn end_b64(&mut self) -> PyResult<()> {
        if !self.in_b64 {
            return Err(misuse("end_b64() without begin_b64()"));
        }
        self.in_b64 = false;
        self.inner()?.end_b64_string().map_err(to_pyerr)
    }

    /// Replaces the target with what was written: fsync, rename, fsync the directory (the
    /// fsyncs as opened). With `keep_replaced`, the descriptor of the replaced file, which
    /// the caller closes (that frees it); else, or when nothing was replaced, None.
    fn commit(&mut self, py: Python<'_>) -> PyResult<Option<i32>> {
        let inner = self
            .inner
            .take()
            .ok_or_else(|| misuse("the writer is already committed or aborted"))?;
        let kept = py.detach(|| inner.commit_keeping()).map_err(to_pyerr)?;
        Ok(kept.map(IntoRawFd::into_raw_fd))
    }

    /// Whether the target's filesystem keeps its files in memory (tmpfs, ramfs), where no
    /// fsync makes a file durable; known when a file is replaced, else False.
    #[getter]
    fn in_memory(&self) -> bool {
        self.in_memory
    }

    /// Removes the temp file; the target is untouched. Idempotent.
    fn abort(&mut self) {
        // Dropping the core writer removes its temp file.
        self.inner = None;
    }
}

/// The JSON text the reference writes for `value` (under top-level `key`);
/// `convert(path, depth, value)` converts what this module does not write itself.
#[pyfunction]
pub fn encode_json<'py>(
    py: Python<'py>,
    key: &Bound<'py, PyAny>,
    value: &Bound<'py, PyAny>,
    convert: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut text = Vec::new();
    crate::plaintext::encode(py, key, value, convert, |chunk| {
        text.extend_from_slice(chunk);
        Ok(())
    })?;
    Ok(PyBytes::new(py, &text).into_any())
}

/// Starts an atomic write of `path`: `fsync` flushes the file before the rename and the
/// directory after it (inside `commit`); `scan_stale` first removes the temps dead writers
/// left in the directory; `keep_replaced` has `commit` hand back the replaced file.
///
/// `JOBPERSIST_NO_TMPFILE=1` forces the named temp file (read here, with the GIL held, so no
/// Python thread changes the environment meanwhile).
#[pyfunction]
#[pyo3(signature = (path, fsync, scan_stale = true, keep_replaced = false))]
pub fn open_writer(
    py: Python<'_>,
    path: PathBuf,
    fsync: bool,
    scan_stale: bool,
    keep_replaced: bool,
) -> PyResult<NativeEnvelopeWriter> {
    let options = Options {
        fsync,
        unnamed_temp: !std::env::var_os("JOBPERSIST_NO_TMPFILE")
            .is_some_and(|v| v.to_str().map(str::trim) == Some("1")),
        scan_stale,
        keep_replaced,
    };
    let inner = py
        .detach(|| EnvelopeWriter::create_with(&path, options))
        .map_err(to_pyerr)?;
    Ok(NativeEnvelopeWriter {
        in_memory: inner.in_memory(),
        inner: Some(inner),
        in_b64: false,
    })
}
