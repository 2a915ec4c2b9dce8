//! Loading: a file read once into Rust-owned memory, the canonical-envelope
//! scan, and base64 decoding in place (so a load peaks near twice the payload).

use std::path::PathBuf;

use jobpersist_core::{decode_in_place, Error};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::errors::to_pyerr;

type Scanned<'py> = (Vec<Bound<'py, PyAny>>, Vec<(usize, usize)>);

/// The bytes of one file, read once; `decode_values` consumes them.
#[pyclass(module = "jobpersist._native", name = "FileData")]
pub struct NativeFileData {
    data: Option<Vec<u8>>,
}

impl NativeFileData {
    fn data(&self) -> PyResult<&[u8]> {
        self.data
            .as_deref()
            .ok_or_else(|| PyValueError::new_err("the file data was consumed by decode_values()"))
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
        let data = self.data()?;
        let Some(entries) = py.detach(|| jobpersist_core::scan_pickled(data)) else {
            return Ok(None);
        };
        let mut loads = None;
        let mut keys = Vec::with_capacity(entries.len());
        let mut spans = Vec::with_capacity(entries.len());
        for entry in entries {
            keys.push(json_string(
                py,
                &data[entry.key.0..entry.key.1],
                &mut loads,
            )?);
            spans.push(entry.value);
        }
        Ok(Some((keys, spans)))
    }

    /// Decodes every span (in file order) in place and returns the values'
    /// bytes. Consumes the file data, whatever the outcome.
    ///
    /// Raises ValueError for anything but strict base64 with `\n` (or `\r\n`)
    /// escapes; the caller then takes the exact path.
    fn decode_values<'py>(
        &mut self,
        py: Python<'py>,
        spans: Vec<(usize, usize)>,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut data = self
            .data
            .take()
            .ok_or_else(|| PyValueError::new_err("the file data was consumed already"))?;
        let lengths = py
            .detach(|| -> Result<Vec<usize>, Error> {
                let mut dst = 0;
                let mut lengths = Vec::with_capacity(spans.len());
                let mut last_end = 0;
                for (index, &(start, end)) in spans.iter().enumerate() {
                    if start < last_end {
                        return Err(Error::Decode {
                            offset: start,
                            reason: "spans out of order".into(),
                        });
                    }
                    // Offsets in errors count from the start of the file, not of the value.
                    let n = decode_in_place(&mut data, start, end, dst).map_err(|e| match e {
                        Error::Decode { offset, reason } => Error::Decode {
                            offset: start + offset,
                            reason: format!("value {index}: {reason}"),
                        },
                        other => other,
                    })?;
                    lengths.push(n);
                    dst += n;
                    last_end = end;
                }
                // Give the encoded text's memory back before the values are copied out.
                data.truncate(dst);
                data.shrink_to_fit();
                Ok(lengths)
            })
            .map_err(to_pyerr)?;
        let list = PyList::empty(py);
        let mut offset = 0;
        for n in lengths {
            list.append(PyBytes::new(py, &data[offset..offset + n]))?;
            offset += n;
        }
        Ok(list)
    }

    /// A copy of the whole file as `bytes`, for the full parser.
    fn bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, self.data()?))
    }

    /// The size of the file in bytes.
    fn __len__(&self) -> PyResult<usize> {
        Ok(self.data()?.len())
    }
}

/// Reads the whole file at `path` (GIL released).
#[pyfunction]
pub fn read_file(py: Python<'_>, path: PathBuf) -> PyResult<NativeFileData> {
    let data = py.detach(|| std::fs::read(&path)).map_err(|source| {
        to_pyerr(Error::Io {
            op: "read",
            path,
            source,
        })
    })?;
    Ok(NativeFileData { data: Some(data) })
}
