//! Loading: the canonical-envelope scan read from the file in pieces, and a
//! streaming base64 reader per value that `pickle.Unpickler` reads from, so a
//! load holds neither the file's text nor a second copy of any value.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use jobpersist_core::{scan, Error, FileSource, ScanSource, SpanDecoder};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::errors::{to_pyerr, DecodeError};

type Scanned<'py> = (Vec<Bound<'py, PyAny>>, Vec<(usize, usize)>);

/// One open file: scanned and read in pieces, never held whole unless
/// `bytes()` asks for it.
#[pyclass(module = "jobpersist._native", name = "FileData")]
pub struct NativeFileData {
    file: Arc<File>,
    path: PathBuf,
    size: usize,
}

impl NativeFileData {
    fn io_err(&self, op: &'static str, e: std::io::Error) -> PyErr {
        to_pyerr(Error::Io {
            op,
            path: self.path.clone(),
            source: e,
        })
    }

    /// Core errors from reading this file name it.
    fn named(&self, err: Error) -> PyErr {
        match err {
            Error::Io { op, source, .. } => self.io_err(op, source),
            other => to_pyerr(other),
        }
    }
}

/// A JSON string's raw content as `str`: directly when it holds no escape,
/// through `json.loads` (exact, including its errors) when it does.
fn json_string<'py>(
    py: Python<'py>,
    raw: &[u8],
    loads: &mut Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    if !raw.contains(&b'\\') {
        if let Ok(text) = std::str::from_utf8(raw) {
            return Ok(PyString::new(py, text).into_any());
        }
    }
    let f = match loads {
        Some(f) => f.clone(),
        None => loads.insert(py.import("json")?.getattr("loads")?).clone(),
    };
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    f.call1((PyBytes::new(py, &quoted),))
}

#[pymethods]
impl NativeFileData {
    /// Keys and value spans of a canonical pickled envelope, or `None`.
    fn scan_pickled<'py>(&self, py: Python<'py>) -> PyResult<Option<Scanned<'py>>> {
        let file = Arc::clone(&self.file);
        let size = self.size;
        let scanned = py.detach(|| -> Result<_, Error> {
            let mut src = FileSource::new(&file, size);
            let Some(entries) = scan(&mut src)? else {
                return Ok(None);
            };
            let mut raw_keys = Vec::with_capacity(entries.len());
            for e in &entries {
                raw_keys.push(src.window(e.key.0, e.key.1 - e.key.0)?.to_vec());
            }
            Ok(Some((entries, raw_keys)))
        });
        let Some((entries, raw_keys)) = scanned.map_err(|e| self.named(e))? else {
            return Ok(None);
        };
        let mut loads = None;
        let mut keys = Vec::with_capacity(entries.len());
        for raw in &raw_keys {
            keys.push(json_string(py, raw, &mut loads)?);
        }
        Ok(Some((keys, entries.iter().map(|e| e.value).collect())))
    }

    /// A reader of the bytes the wrapped base64 in `[start, end)` encodes.
    fn value_reader(&self, start: usize, end: usize) -> PyResult<NativeValueReader> {
        if start > end || end > self.size {
            return Err(PyValueError::new_err("span outside the file"));
        }
        Ok(NativeValueReader {
            decoder: SpanDecoder::new(
                Box::new(ArcFile(Arc::clone(&self.file))),
                start as u64,
                end as u64,
            ),
            path: self.path.clone(),
        })
    }

    /// The whole file as `bytes`, read in one pass (GIL released).
    fn bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let file = Arc::clone(&self.file);
        PyBytes::new_with(py, self.size, |buf| {
            py.detach(|| {
                use std::os::unix::fs::FileExt;
                file.read_exact_at(buf, 0)
            })
            .map_err(|e| self.io_err("read", e))
        })
    }

    /// The size of the file in bytes.
    fn __len__(&self) -> usize {
        self.size
    }
}

/// A shared open file the span decoder reads from.
struct ArcFile(Arc<File>);

impl jobpersist_core::ReadAt for ArcFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&*self.0, buf, offset)
    }
}

/// A binary file object over one value's decoded bytes, for `pickle.Unpickler`.
#[pyclass(module = "jobpersist._native", name = "ValueReader")]
pub struct NativeValueReader {
    decoder: SpanDecoder<ArcFile>,
    path: PathBuf,
}

impl NativeValueReader {
    fn decode_err(&self, err: Error) -> PyErr {
        match err {
            Error::Decode { offset, reason } => DecodeError::new_err(format!(
                "invalid base64 in {} at byte {offset} ({reason})",
                self.path.display()
            )),
            Error::Io { op, source, .. } => to_pyerr(Error::Io {
                op,
                path: self.path.clone(),
                source,
            }),
        }
    }
}

#[pymethods]
impl NativeValueReader {
    /// Up to `size` decoded bytes (all that is left when `size` is negative).
    #[pyo3(signature = (size = -1))]
    fn read<'py>(&mut self, py: Python<'py>, size: isize) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::new();
        let decoder = &mut self.decoder;
        let result = py.detach(|| -> Result<(), Error> {
            if size < 0 {
                let mut chunk = vec![0u8; 1 << 20];
                loop {
                    let n = decoder.read(&mut chunk)?;
                    if n == 0 {
                        return Ok(());
                    }
                    out.extend_from_slice(&chunk[..n]);
                }
            }
            // A damaged pickle may ask for terabytes: no more than can be left.
            out.resize((size as usize).min(decoder.remaining_max()), 0);
            let n = decoder.read(&mut out)?;
            out.truncate(n);
            Ok(())
        });
        result.map_err(|e| self.decode_err(e))?;
        Ok(PyBytes::new(py, &out))
    }

    /// Fills the writable buffer `buffer`; returns how many bytes it got.
    fn readinto(&mut self, py: Python<'_>, buffer: PyBuffer<u8>) -> PyResult<usize> {
        if buffer.readonly() || !buffer.is_c_contiguous() {
            return Err(PyBufferError::new_err(
                "readinto() needs a writable contiguous buffer",
            ));
        }
        let len = buffer.len_bytes();
        let ptr = buffer.buf_ptr() as usize;
        let decoder = &mut self.decoder;
        let result = py.detach(|| {
            // SAFETY: `buffer` holds the export for the whole call, so the memory
            // stays valid; it is contiguous and writable (checked above) and
            // `len` bytes long. The unpickler that passes it allocated it for
            // this read and touches it only after readinto returns.
            let out = unsafe { std::slice::from_raw_parts_mut(ptr as *mut u8, len) };
            decoder.read(out)
        });
        result.map_err(|e| self.decode_err(e))
    }

    /// Pickle protocols above 0 never read lines; `pickle.Unpickler` wants the method.
    #[pyo3(signature = (size = -1))]
    fn readline<'py>(&mut self, py: Python<'py>, size: isize) -> PyResult<Bound<'py, PyBytes>> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while size < 0 || (line.len() as isize) < size {
            let n = self
                .decoder
                .read(&mut byte)
                .map_err(|e| self.decode_err(e))?;
            if n == 0 {
                break;
            }
            line.push(byte[0]);
            if byte[0] == b'\n' {
                break;
            }
        }
        Ok(PyBytes::new(py, &line))
    }

    /// Checks that the rest of the value (after what the unpickler read) is valid.
    fn validate_rest(&mut self, py: Python<'_>) -> PyResult<()> {
        let decoder = &mut self.decoder;
        py.detach(|| decoder.validate_rest())
            .map_err(|e| self.decode_err(e))
    }
}

/// Opens the file at `path` for reading.
#[pyfunction]
pub fn read_file(py: Python<'_>, path: PathBuf) -> PyResult<NativeFileData> {
    let opened = py.detach(|| {
        let file = File::open(&path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(std::io::Error::from_raw_os_error(21)); // EISDIR, as open() gives
        }
        Ok((file, meta.len() as usize))
    });
    match opened {
        Ok((file, size)) => Ok(NativeFileData {
            file: Arc::new(file),
            path,
            size,
        }),
        Err(source) => Err(to_pyerr(Error::Io {
            op: "open",
            path,
            source,
        })),
    }
}
