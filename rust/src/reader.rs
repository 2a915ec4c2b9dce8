//! Loading: the canonical-envelope scan read from the file in pieces, and a
//! streaming base64 reader per value that `pickle.Unpickler` reads from, so a
//! load holds neither the file's text nor a second copy of any value.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use jobpersist_core::{
    decode_into, decoded_len, scan, Error, FileSource, FrameGuard, ScanSource, SpanDecoder,
};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView, PyString};

use crate::errors::{frame_crossing, in_file, misuse, unusable_buffer};

type Scanned<'py> = (Vec<Bound<'py, PyAny>>, Vec<(usize, usize)>);
type ScannedRaw = (Vec<jobpersist_core::Entry>, Vec<Vec<u8>>);

/// One open file: scanned and read in pieces, never held whole unless
/// `bytes()` asks for it.
#[pyclass(module = "jobpersist._native", name = "FileData")]
pub struct NativeFileData {
    file: Arc<File>,
    /// The whole file, for small files: one read serves every value.
    memory: Option<Arc<Vec<u8>>>,
    path: PathBuf,
    size: usize,
}

/// Files up to this size are read whole at once; bigger ones are streamed.
pub const IN_MEMORY_MAX: usize = 16 << 20;
/// Reads below this size keep the GIL: releasing it costs more than they do.
const DETACH_AT: usize = 64 * 1024;
/// `readinto` decodes into a buffer of its own, this big at most, and copies each piece
/// into the caller's buffer with the GIL held. No smaller than what the decoder makes of
/// one raw chunk (1 MiB of text), which it then decodes straight into the piece.
const FILL_PIECE: usize = 1 << 20;

type Source = dyn jobpersist_core::ReadAt + Send + Sync;

impl NativeFileData {
    fn io_err(&self, op: &'static str, e: std::io::Error) -> PyErr {
        self.named(Error::Io {
            op,
            path: PathBuf::new(),
            source: e,
        })
    }

    /// Core errors from reading this file name it.
    fn named(&self, err: Error) -> PyErr {
        in_file(err, &self.path, 0)
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
        fn scan_keys(src: &mut impl ScanSource) -> Result<Option<ScannedRaw>, Error> {
            let Some(entries) = scan(src)? else {
                return Ok(None);
            };
            let mut raw_keys = Vec::with_capacity(entries.len());
            for e in &entries {
                raw_keys.push(src.window(e.key.0, e.key.1 - e.key.0)?.to_vec());
            }
            Ok(Some((entries, raw_keys)))
        }
        let scanned = match &self.memory {
            Some(memory) => scan_keys(&mut memory.as_slice()),
            None => {
                let file = Arc::clone(&self.file);
                let size = self.size;
                py.detach(|| scan_keys(&mut FileSource::new(&file, size)))
            }
        };
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
            return Err(misuse("span outside the file"));
        }
        Ok(NativeValueReader {
            decoder: SpanDecoder::new(
                Box::new(ArcFile(Arc::clone(&self.file))),
                start as u64,
                end as u64,
            ),
            path: self.path.clone(),
            ahead: Vec::new(),
            ahead_at: 0,
            guard: FrameGuard::new(),
        })
    }

    /// The decoded bytes of each span, whole (for small values, where a reader per value
    /// would cost more than the value). Raises `DecodeError` as the readers do.
    fn decode_values<'py>(
        &self,
        py: Python<'py>,
        spans: Vec<(usize, usize)>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let mut values = Vec::with_capacity(spans.len());
        let mut scratch = Vec::new();
        for (start, end) in spans {
            if start > end || end > self.size {
                return Err(misuse("span outside the file"));
            }
            let raw: &[u8] = match &self.memory {
                Some(memory) => &memory[start..end],
                None => {
                    scratch.resize(end - start, 0);
                    std::os::unix::fs::FileExt::read_exact_at(
                        &*self.file,
                        &mut scratch,
                        start as u64,
                    )
                    .map_err(|e| self.io_err("read", e))?;
                    &scratch
                }
            };
            let bad = |e: Error| in_file(e, &self.path, start);
            let len = decoded_len(raw).map_err(bad)?;
            values.push(PyBytes::new_with(py, len, |out| {
                decode_into(raw, out).map_err(bad)
            })?);
        }
        Ok(values)
    }

    /// The whole file as `bytes`, read in one pass (GIL released).
    fn bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        if let Some(memory) = &self.memory {
            return Ok(PyBytes::new(py, memory));
        }
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
///
/// It offers `peek`, so that the unpickler reads frames as `pickle.loads` does, and checks
/// the frames it reads whole with `read(n)` (see `jobpersist_core::FrameGuard`).
#[pyclass(module = "jobpersist._native", name = "ValueReader")]
pub struct NativeValueReader {
    decoder: SpanDecoder<Source>,
    path: PathBuf,
    /// Bytes decoded by `peek` and not read yet: `ahead[ahead_at..]`.
    ahead: Vec<u8>,
    ahead_at: usize,
    guard: FrameGuard,
}

impl NativeValueReader {
    fn decode_err(&self, err: Error) -> PyErr {
        // The decoder's offsets count from the start of the file.
        in_file(err, &self.path, 0)
    }

    /// Fills `out` from what `peek` decoded, then from the decoder; fewer bytes only at the
    /// end of the value.
    fn take(
        ahead: &[u8],
        ahead_at: &mut usize,
        decoder: &mut SpanDecoder<Source>,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let n = (ahead.len() - *ahead_at).min(out.len());
        out[..n].copy_from_slice(&ahead[*ahead_at..*ahead_at + n]);
        *ahead_at += n;
        Ok(n + decoder.read(&mut out[n..])?)
    }

    /// How many bytes are left at most: what `peek` holds and what the decoder may give.
    fn remaining_max(&self) -> usize {
        self.ahead.len() - self.ahead_at + self.decoder.remaining_max()
    }
}

/// The memory of `buffer` as writable, C-contiguous bytes, whatever its item type (a
/// numpy float64 array too), as `io.FileIO.readinto` takes it. The view holds a buffer
/// export for as long as it lives, so the memory can be neither resized nor released.
fn writable_bytes(buffer: &Bound<'_, PyAny>) -> PyResult<PyBuffer<u8>> {
    let view = match PyBuffer::<u8>::get(buffer) {
        Ok(view) => view,
        Err(_) => {
            // Items other than unsigned bytes: the same memory, seen as bytes. Not a
            // buffer at all: memoryview's own TypeError.
            let items = PyMemoryView::from(buffer)?;
            let bytes = items
                .call_method1("cast", ("B",))
                .map_err(|_| unusable_buffer("readinto() needs a contiguous buffer"))?;
            PyBuffer::<u8>::get(&bytes)?
        }
    };
    if view.readonly() {
        return Err(unusable_buffer("readinto() needs a writable buffer"));
    }
    if !view.is_c_contiguous() {
        return Err(unusable_buffer("readinto() needs a contiguous buffer"));
    }
    Ok(view)
}

#[pymethods]
impl NativeValueReader {
    /// Up to `size` decoded bytes (all that is left when `size` is negative).
    #[pyo3(signature = (size = -1))]
    fn read<'py>(&mut self, py: Python<'py>, size: isize) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::new();
        // A damaged pickle may ask for terabytes: no more than can be left.
        let cap = self.remaining_max();
        let (ahead, ahead_at, decoder) = (&self.ahead, &mut self.ahead_at, &mut self.decoder);
        let small = size >= 0 && (size as usize) < DETACH_AT;
        let mut work = || -> Result<(), Error> {
            if size < 0 {
                let mut chunk = vec![0u8; 1 << 20];
                loop {
                    let n = Self::take(ahead, ahead_at, decoder, &mut chunk)?;
                    if n == 0 {
                        return Ok(());
                    }
                    out.extend_from_slice(&chunk[..n]);
                }
            }
            out.resize((size as usize).min(cap), 0);
            let n = Self::take(ahead, ahead_at, decoder, &mut out)?;
            out.truncate(n);
            Ok(())
        };
        let result = if small { work() } else { py.detach(work) };
        result.map_err(|e| self.decode_err(e))?;
        if size < 0 {
            self.guard.pass(&out);
        } else {
            self.guard
                .pass_read(size as usize, &out)
                .map_err(frame_crossing)?;
        }
        Ok(PyBytes::new(py, &out))
    }

    /// Fills the writable buffer `buffer` (any writable C-contiguous buffer: bytearray,
    /// memoryview, numpy array, ...); returns how many bytes it got, fewer only at the
    /// end of the value.
    ///
    /// The caller's memory is never written without the GIL: while the GIL is released,
    /// other Python threads may read or write that memory, so the value is decoded into
    /// a buffer of this reader's own, then copied in with the GIL held, a piece at a time.
    fn readinto(&mut self, py: Python<'_>, buffer: &Bound<'_, PyAny>) -> PyResult<usize> {
        let view = writable_bytes(buffer)?;
        let cells = view
            .as_mut_slice(py)
            .ok_or_else(|| unusable_buffer("readinto() needs a writable contiguous buffer"))?;
        let mut piece = vec![0u8; cells.len().min(FILL_PIECE)];
        let mut filled = 0;
        while filled < cells.len() {
            let want = (cells.len() - filled).min(FILL_PIECE);
            let out = &mut piece[..want];
            let (ahead, ahead_at, decoder) = (&self.ahead, &mut self.ahead_at, &mut self.decoder);
            let got = if want < DETACH_AT {
                Self::take(ahead, ahead_at, decoder, out)
            } else {
                py.detach(|| Self::take(ahead, ahead_at, decoder, out))
            };
            let n = got.map_err(|e| self.decode_err(e))?;
            self.guard.pass(&piece[..n]);
            let target = &cells[filled..filled + n];
            // SAFETY: `target` is `n` cells of the caller's buffer, borrowed from the view
            // that holds the buffer export (the memory stays allocated and in place); a
            // `Cell<u8>` is a `u8` in memory and may be written through a shared
            // reference. The GIL is held, so no other Python code runs during the copy,
            // and `piece` is this reader's own memory, so the two do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(piece.as_ptr(), target.as_ptr() as *mut u8, n);
            }
            filled += n;
            if n < want {
                break; // the end of the value
            }
        }
        Ok(filled)
    }

    /// Protocol 0's text opcodes read lines (from `peek`'s bytes first), a byte at a time
    /// from the decoder: CPython's unpickler looks for the line in what it peeked first.
    #[pyo3(signature = (size = -1))]
    fn readline<'py>(&mut self, py: Python<'py>, size: isize) -> PyResult<Bound<'py, PyBytes>> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while size < 0 || (line.len() as isize) < size {
            let (ahead, ahead_at, decoder) = (&self.ahead, &mut self.ahead_at, &mut self.decoder);
            let n =
                Self::take(ahead, ahead_at, decoder, &mut byte).map_err(|e| self.decode_err(e))?;
            if n == 0 {
                break;
            }
            line.push(byte[0]);
            if byte[0] == b'\n' {
                break;
            }
        }
        self.guard.pass(&line);
        Ok(PyBytes::new(py, &line))
    }

    /// Up to `size` of the next bytes (at least one unless at the end), without reading
    /// them. CPython's unpickler then reads frames as `pickle.loads` does: it takes what it
    /// peeked as its buffer and `read`s only what it used.
    #[pyo3(signature = (size = 1))]
    fn peek<'py>(&mut self, py: Python<'py>, size: isize) -> PyResult<Bound<'py, PyBytes>> {
        let want = size.max(1) as usize;
        self.ahead.drain(..self.ahead_at);
        self.ahead_at = 0;
        let have = self.ahead.len();
        if have < want {
            let more = (want - have).min(self.decoder.remaining_max());
            self.ahead.resize(have + more, 0);
            let (ahead, decoder) = (&mut self.ahead[have..], &mut self.decoder);
            let got = if more < DETACH_AT {
                decoder.read(ahead)
            } else {
                py.detach(|| decoder.read(ahead))
            };
            let n = got.map_err(|e| self.decode_err(e))?;
            self.ahead.truncate(have + n);
        }
        Ok(PyBytes::new(py, &self.ahead[..want.min(self.ahead.len())]))
    }

    /// Checks that the rest of the value (after what the unpickler read) is valid.
    fn validate_rest(&mut self, py: Python<'_>) -> PyResult<()> {
        self.ahead_at = self.ahead.len();
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
        let size = meta.len() as usize;
        let memory = if size <= IN_MEMORY_MAX {
            let mut data = vec![0u8; size];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut data, 0)?;
            Some(Arc::new(data))
        } else {
            None
        };
        Ok((file, memory, size))
    });
    match opened {
        Ok((file, memory, size)) => Ok(NativeFileData {
            file: Arc::new(file),
            memory,
            path,
            size,
        }),
        Err(source) => Err(in_file(
            Error::Io {
                op: "open",
                path: PathBuf::new(),
                source,
            },
            &path,
            0,
        )),
    }
}
