//! Loading: the canonical-envelope scan and base64 decoding into exact-size bytes.

use jobpersist_core::{decode_into, decoded_len};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::errors::to_pyerr;

type Scanned<'py> = (Vec<Bound<'py, PyAny>>, Vec<(usize, usize)>);

/// Keys and value spans of a canonical pickled envelope, or `None`.
#[pyfunction]
pub fn scan_pickled<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
) -> PyResult<Option<Scanned<'py>>> {
    let bytes = data.as_bytes();
    let Some(entries) = py.detach(|| jobpersist_core::scan_pickled(bytes)) else {
        return Ok(None);
    };
    let mut keys = Vec::with_capacity(entries.len());
    let mut spans = Vec::with_capacity(entries.len());
    let mut json_loads: Option<Bound<'py, PyAny>> = None;
    for entry in entries {
        let raw = &bytes[entry.key.0..entry.key.1];
        let plain = if raw.contains(&b'\\') {
            None
        } else {
            std::str::from_utf8(raw).ok()
        };
        let key = match plain {
            Some(text) => PyString::new(py, text).into_any(),
            None => {
                // Escapes (or bytes that are not UTF-8): json.loads decides, exactly.
                let loads = match &json_loads {
                    Some(f) => f.clone(),
                    None => {
                        let f = py.import("json")?.getattr("loads")?;
                        json_loads = Some(f.clone());
                        f
                    }
                };
                let mut quoted = Vec::with_capacity(raw.len() + 2);
                quoted.push(b'"');
                quoted.extend_from_slice(raw);
                quoted.push(b'"');
                loads.call1((PyBytes::new(py, &quoted),))?
            }
        };
        keys.push(key);
        spans.push(entry.value);
    }
    Ok(Some((keys, spans)))
}

/// The bytes encoded by the wrapped base64 in `data[start:end]`.
///
/// Raises ValueError for anything but strict base64 with `\n` (or `\r\n`)
/// escapes; the caller then decodes that value on the exact path.
#[pyfunction]
pub fn decode_span<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
    start: usize,
    end: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let bytes = data.as_bytes();
    let input = bytes
        .get(start..end)
        .ok_or_else(|| PyValueError::new_err("span outside the data"))?;
    let len = py.detach(|| decoded_len(input)).map_err(to_pyerr)?;
    PyBytes::new_with(py, len, |out| {
        py.detach(|| decode_into(input, out)).map_err(to_pyerr)
    })
}
