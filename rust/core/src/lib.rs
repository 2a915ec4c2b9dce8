//! Pure-Rust core of jobpersist.
//!
//! Everything the Python extension needs to write and read Braket job
//! checkpoint envelopes byte-for-byte like the reference implementation:
//! line-wrapped base64 (`base64.encodebytes`), `json.dumps`-compatible string
//! escaping, and atomic, durable file replacement; and the fixed texts and
//! limits both backends share (the envelope's head and tail, `MAX_DEPTH`).

#![warn(missing_docs)]

mod atomic_file;
mod base64_decode;
mod base64_lines;
mod base64_stream;
mod envelope_scan;
mod envelope_writer;
mod error;
pub mod fault;
mod float_repr;
pub mod in_memory_fs;
mod int_format;
mod json_escape;
mod nesting;
mod pages;
mod pickle_frame;
mod simd_isa;
pub mod spare_files;
#[cfg(test)]
mod test_support;
mod write_pipe;

pub use atomic_file::{AtomicFile, Options, RESERVE_AHEAD};
pub use base64_decode::{decode, decode_into, decoded_len};
pub use base64_lines::{LineEncoder, LINE_CHARS, LINE_INPUT_BYTES};
pub use base64_stream::{ReadAt, SpanDecoder};
pub use envelope_scan::{scan, scan_pickled, tail, Entry, FileSource, ScanSource, HEAD};
pub use envelope_writer::{EnvelopeWriter, B64_STEP, FLUSH_THRESHOLD, RESERVE_AT, RESERVE_SLACK};
pub use error::{Error, Result};
pub use float_repr::{write_float_repr, write_json_float};
pub use int_format::write_i64;
pub use json_escape::{escape_code_points, escape_str};
pub use nesting::{Nesting, NestingError, MAX_DEPTH};
pub use pages::discard_pages;
pub use pickle_frame::{
    arg_of, frame_crossing, known_opcodes, Arg, Crossing, FrameGuard, PEEK_SIZE,
};
pub use simd_isa::base64_isa;
