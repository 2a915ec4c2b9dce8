//! The native plaintext JSON encoder: streams exactly the bytes
//! `jobpersist._conversion.to_json_text(key, value)` returns (the reference's
//! `json.dumps` of its converted value), walking the Python objects directly.
//!
//! This walk is the one part of the glue that is more than argument conversion:
//! it reads Python objects (type checks, dict iteration, `int.__repr__`), so it
//! cannot live in the pyo3-free core. What does not need Python is in the core
//! and only called from here: the text of floats, ints and strings
//! (`write_json_float`, `write_i64`, `escape_str`) and the nesting rules
//! (`Nesting`, `MAX_DEPTH`, which also bounds this module's recursion).
//!
//! Exact dicts, lists and tuples and the JSON scalars (with `int`, `float` and
//! `str` subclasses, which `json.dumps` writes as their base value) are
//! written here. Everything else is handed to the caller's converter
//! (`jobpersist._conversion.convert_subtree`, passed in as `convert`), whose
//! result is then written the same way, so both backends convert alike and
//! raise the same exception types.

use jobpersist_core::{
    escape_code_points, escape_str, write_i64, write_json_float, Nesting, NestingError,
};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::errors;

/// Output handed to the sink in pieces of about this size.
const CHUNK: usize = 1 << 20;

/// One step of the key path that error messages name.
enum Step<'py> {
    Key(Bound<'py, PyAny>),
    Index(usize),
}

struct Encoder<'py, W> {
    py: Python<'py>,
    out: Vec<u8>,
    sink: W,
    /// From the top-level key down to the value being written.
    path: Vec<Step<'py>>,
    /// The containers on the path, by address (Python's `id`).
    nesting: Nesting,
    /// `convert(path, depth, value)`: what to write for an object this module does not
    /// write itself.
    convert: Bound<'py, PyAny>,
    int_repr: Option<Bound<'py, PyAny>>,
    /// Set while writing what `convert` returned, which needs no more conversion.
    converted: usize,
    /// An error `json.dumps` would raise only after the conversion walk (an int too long
    /// for `int.__repr__`): conversion errors found later take precedence, as in Python.
    deferred: Option<PyErr>,
}

/// Writes the JSON text of `value` (stored under top-level `key`) through `sink`, in
/// pieces of about 1 MiB, converting what JSON cannot hold with `convert`.
pub(crate) fn encode<'py, W>(
    py: Python<'py>,
    key: &Bound<'py, PyAny>,
    value: &Bound<'py, PyAny>,
    convert: &Bound<'py, PyAny>,
    sink: W,
) -> PyResult<()>
where
    W: FnMut(&[u8]) -> PyResult<()>,
{
    let mut encoder = Encoder {
        py,
        out: Vec::with_capacity(CHUNK + 4096),
        sink,
        path: vec![Step::Key(key.clone())],
        nesting: Nesting::new(),
        convert: convert.clone(),
        int_repr: None,
        converted: 0,
        deferred: None,
    };
    encoder.value(value)?;
    if let Some(err) = encoder.deferred.take() {
        return Err(err);
    }
    if !encoder.out.is_empty() {
        (encoder.sink)(&encoder.out)?;
    }
    Ok(())
}

impl<'py, W> Encoder<'py, W>
where
    W: FnMut(&[u8]) -> PyResult<()>,
{
    #[inline]
    fn maybe_flush(&mut self) -> PyResult<()> {
        if self.out.len() >= CHUNK {
            (self.sink)(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    fn value(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        if obj.is_exact_instance_of::<PyFloat>() {
            write_json_float(obj.cast::<PyFloat>()?.value(), &mut self.out);
        } else if obj.is_exact_instance_of::<PyString>() {
            escape(obj.cast::<PyString>()?, &mut self.out)?;
        } else if obj.is_exact_instance_of::<PyInt>() {
            self.int(obj, false)?;
        } else if obj.is_none() {
            self.out.extend_from_slice(b"null");
        } else if obj.is_exact_instance_of::<PyBool>() {
            let text: &[u8] = if obj.is_truthy()? { b"true" } else { b"false" };
            self.out.extend_from_slice(text);
        } else if obj.is_exact_instance_of::<PyList>() {
            self.sequence(obj, obj.cast::<PyList>()?.iter())?;
        } else if obj.is_exact_instance_of::<PyDict>() {
            self.dict(obj.cast::<PyDict>()?)?;
        } else if obj.is_exact_instance_of::<PyTuple>() {
            self.sequence(obj, obj.cast::<PyTuple>()?.iter())?;
        } else if obj.is_instance_of::<PyInt>() {
            // Subclasses (IntEnum, ...): json.dumps writes `int.__repr__`, as for the rest.
            // No type is both one of these scalars and a dict or a sequence the walker
            // rebuilds (their layouts conflict), so testing these first is safe.
            self.int(obj, true)?;
        } else if obj.is_instance_of::<PyFloat>() {
            write_json_float(obj.cast::<PyFloat>()?.value(), &mut self.out);
        } else if obj.is_instance_of::<PyString>() {
            escape(obj.cast::<PyString>()?, &mut self.out)?;
        } else {
            self.convert(obj)?;
        }
        Ok(())
    }

    #[inline(never)]
    fn int(&mut self, obj: &Bound<'py, PyAny>, subclass: bool) -> PyResult<()> {
        if let Ok(small) = obj.extract::<i64>() {
            write_i64(small, &mut self.out);
            return Ok(());
        }
        match self.long_repr(obj, subclass) {
            Ok(text) => self.out.extend_from_slice(text.as_bytes()),
            Err(err) => {
                self.deferred.get_or_insert(err);
            }
        }
        Ok(())
    }

    /// `int.__repr__(obj)` (never a subclass's own `__repr__`).
    #[inline(never)]
    fn long_repr(&mut self, obj: &Bound<'py, PyAny>, subclass: bool) -> PyResult<String> {
        let text = if subclass {
            let int_repr = match &self.int_repr {
                Some(f) => f.clone(),
                None => {
                    let f = self.py.get_type::<PyInt>().getattr("__repr__")?;
                    self.int_repr = Some(f.clone());
                    f
                }
            };
            int_repr.call1((obj,))?.cast_into::<PyString>()?
        } else {
            obj.repr()?
        };
        Ok(text.to_str()?.to_owned())
    }

    /// Marks `obj` as on the path, as `_Walker.enter` does.
    fn enter(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        match self.nesting.enter(obj.as_ptr() as usize) {
            Ok(()) => Ok(()),
            Err(err @ NestingError::Cycle) => {
                Err(errors::nesting(err, &self.path_text(self.path.len())?, ""))
            }
            Err(err @ NestingError::TooDeep) => Err(errors::nesting(err, "", &self.path_text(3)?)),
        }
    }

    fn leave(&mut self) {
        self.nesting.leave();
    }

    /// A list or tuple (exact types): `[` items `]`. The list iterator re-reads the length
    /// each step, so a list changed meanwhile is safe.
    #[inline(never)]
    fn sequence(
        &mut self,
        container: &Bound<'py, PyAny>,
        items: impl Iterator<Item = Bound<'py, PyAny>>,
    ) -> PyResult<()> {
        self.enter(container)?;
        self.out.push(b'[');
        self.path.push(Step::Index(0));
        for (index, item) in items.enumerate() {
            if index > 0 {
                self.out.extend_from_slice(b", ");
            }
            if let Some(last) = self.path.last_mut() {
                *last = Step::Index(index);
            }
            self.value(&item)?;
            self.maybe_flush()?;
        }
        self.path.pop();
        self.out.push(b']');
        self.leave();
        Ok(())
    }

    #[inline(never)]
    fn dict(&mut self, dict: &Bound<'py, PyDict>) -> PyResult<()> {
        self.enter(dict.as_any())?;
        self.out.push(b'{');
        let size = dict.len();
        let mut pos: ffi::Py_ssize_t = 0;
        let mut first = true;
        loop {
            let mut key_ptr: *mut ffi::PyObject = std::ptr::null_mut();
            let mut value_ptr: *mut ffi::PyObject = std::ptr::null_mut();
            // SAFETY: `dict` is a live dict and the GIL is held; `pos`, `key_ptr` and
            // `value_ptr` are valid out-parameters. PyDict_Next bounds-checks `pos`
            // against the dict's current entries, so it stays sound even if Python code
            // run below changed the dict (which is then reported, see the size check).
            let more =
                unsafe { ffi::PyDict_Next(dict.as_ptr(), &mut pos, &mut key_ptr, &mut value_ptr) };
            if more == 0 {
                break;
            }
            // SAFETY: PyDict_Next returned 1, so both are valid borrowed references to
            // objects the dict holds; taking strong references keeps them alive below.
            let (key, value) = unsafe {
                (
                    Bound::from_borrowed_ptr(self.py, key_ptr),
                    Bound::from_borrowed_ptr(self.py, value_ptr),
                )
            };
            if !first {
                self.out.extend_from_slice(b", ");
            }
            first = false;
            self.key(&key)?;
            self.out.extend_from_slice(b": ");
            self.path.push(Step::Key(key));
            self.value(&value)?;
            self.path.pop();
            if dict.len() != size {
                return Err(errors::dict_changed());
            }
            self.maybe_flush()?;
        }
        self.out.push(b'}');
        self.leave();
        Ok(())
    }

    /// A dict key as `json.dumps` writes it, tested in its order: str, float,
    /// True/False/None, int.
    #[inline(never)]
    fn key(&mut self, key: &Bound<'py, PyAny>) -> PyResult<()> {
        if key.is_instance_of::<PyString>() {
            escape(key.cast::<PyString>()?, &mut self.out)?;
        } else if key.is_instance_of::<PyFloat>() {
            self.out.push(b'"');
            write_json_float(key.cast::<PyFloat>()?.value(), &mut self.out);
            self.out.push(b'"');
        } else if key.is_none() {
            self.out.extend_from_slice(b"\"null\"");
        } else if key.is_exact_instance_of::<PyBool>() {
            let text: &[u8] = if key.is_truthy()? {
                b"\"true\""
            } else {
                b"\"false\""
            };
            self.out.extend_from_slice(text);
        } else if key.is_instance_of::<PyInt>() {
            self.out.push(b'"');
            self.int(key, !key.is_exact_instance_of::<PyInt>())?;
            self.out.push(b'"');
        } else {
            return Err(self.bad_key(key));
        }
        Ok(())
    }

    #[inline(never)]
    fn bad_key(&self, key: &Bound<'py, PyAny>) -> PyErr {
        let error = (|| -> PyResult<PyErr> {
            Ok(errors::bad_key(
                key.repr()?.to_str()?,
                key.get_type().name()?.to_str()?,
                &self.path_text(self.path.len())?,
            ))
        })();
        error.unwrap_or_else(|err| err)
    }

    /// Writes what the converter turns `obj` into (a dict or list subclass, set,
    /// datetime, Enum, dataclass, ...), or raises what it raises.
    #[inline(never)]
    fn convert(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        if self.converted > 0 {
            // The converter returns exact containers and JSON scalars only.
            return Err(errors::unexpected_conversion(
                obj.get_type().name()?.to_str()?,
                &self.path_text(self.path.len())?,
            ));
        }
        let path = self.path_list(self.path.len())?;
        let converted = self.convert.call1((path, self.nesting.depth(), obj))?;
        self.converted += 1;
        let result = self.value(&converted);
        self.converted -= 1;
        result
    }

    /// The first `len` steps of the path as the Python list the walker keeps.
    fn path_list(&self, len: usize) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(self.py);
        for step in self.path.iter().take(len) {
            match step {
                Step::Key(key) => list.append(key)?,
                Step::Index(index) => list.append(index)?,
            }
        }
        Ok(list)
    }

    /// `_path_text` of the first `len` steps of the path: `['key'][0]['inner']`.
    #[inline(never)]
    fn path_text(&self, len: usize) -> PyResult<String> {
        let mut text = String::new();
        for step in self.path.iter().take(len) {
            match step {
                Step::Key(key) => {
                    text.push('[');
                    text.push_str(key.repr()?.to_str()?);
                    text.push(']');
                }
                Step::Index(index) => {
                    text.push_str(&format!("[{index}]"));
                }
            }
        }
        Ok(text)
    }
}

/// Appends the contents of `value` (a str or a str subclass) as `json.dumps` escapes them.
pub(crate) fn escape(value: &Bound<'_, PyString>, out: &mut Vec<u8>) -> PyResult<()> {
    match value.to_str() {
        Ok(text) => escape_str(text, out),
        Err(_) => escape_wide(value, out)?,
    }
    Ok(())
}

/// Strings with lone surrogates have no UTF-8 form: escape their code points.
#[inline(never)]
fn escape_wide(value: &Bound<'_, PyString>, out: &mut Vec<u8>) -> PyResult<()> {
    // `str.encode`, not the object's own method: a subclass may override it.
    let wide = value
        .py()
        .get_type::<PyString>()
        .getattr("encode")?
        .call1((value, "utf-32-le", "surrogatepass"))?;
    let wide = wide.cast::<PyBytes>()?.as_bytes();
    let points = wide
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    escape_code_points(points, out);
    Ok(())
}
