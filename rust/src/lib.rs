//! `jobpersist._native`: PyO3 bindings over `jobpersist-core`.
//!
//! What the glue holds:
//!
//! * argument conversion, GIL handling (`detach` around the core's I/O and
//!   base64 work) and the buffer protocol (`writer::write`, `reader::readinto`);
//! * error mapping, all of it in `errors.rs`;
//! * the plaintext JSON encoder's walk over Python objects (`plaintext.rs`):
//!   it reads dicts, lists, ints and strings through the Python C API and
//!   calls the caller's converter for other objects, so it cannot be
//!   pyo3-free. The text it writes comes from the core (`write_json_float`,
//!   `write_i64`, `escape_str`), and so do the nesting rules (`Nesting`,
//!   `MAX_DEPTH`).
//!
//! Every byte of base64, every envelope scan, and every file operation is the
//! pyo3-free core's.

mod errors;
mod faults;
mod placeholder;
mod plaintext;
mod reader;
mod writer;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<writer::NativeEnvelopeWriter>()?;
    m.add_function(wrap_pyfunction!(writer::open_writer, m)?)?;
    m.add_function(wrap_pyfunction!(writer::encode_json, m)?)?;
    m.add_function(wrap_pyfunction!(placeholder::placeholder, m)?)?;
    m.add_class::<reader::NativeFileData>()?;
    m.add_class::<reader::NativeValueReader>()?;
    m.add("DecodeError", m.py().get_type::<errors::DecodeError>())?;
    m.add("FrameError", m.py().get_type::<errors::FrameError>())?;
    m.add("PICKLE_PEEK_SIZE", jobpersist_core::PEEK_SIZE)?;
    m.add("LIMITS", limits(m.py())?)?;
    m.add_function(wrap_pyfunction!(reader::read_file, m)?)?;
    m.add_function(wrap_pyfunction!(base64_isa, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_DEPTH", jobpersist_core::MAX_DEPTH)?;
    m.add(
        "ENVELOPE_HEAD",
        pyo3::types::PyBytes::new(m.py(), jobpersist_core::HEAD),
    )?;
    m.add_function(wrap_pyfunction!(envelope_tail, m)?)?;
    m.add_function(wrap_pyfunction!(faults::arm_faults, m)?)?;
    m.add_function(wrap_pyfunction!(faults::disarm_faults, m)?)?;
    m.add_function(wrap_pyfunction!(faults::set_spares, m)?)?;
    m.add_function(wrap_pyfunction!(faults::spare_count, m)?)?;
    Ok(())
}

/// The instruction set base64-simd encodes and decodes with on this machine:
/// "avx2", "ssse3", "neon", "simd128" or "fallback" (for `jobpersist info`).
#[pyfunction]
fn base64_isa() -> &'static str {
    jobpersist_core::base64_isa()
}

/// The envelope text after the last value for the format label `label`, as the
/// core's scan knows it (`tail("pickled_v4")` is the only end it accepts).
#[pyfunction]
fn envelope_tail(py: Python<'_>, label: &str) -> Py<pyo3::types::PyBytes> {
    pyo3::types::PyBytes::new(py, &jobpersist_core::tail(label)).unbind()
}

/// The sizes both backends share, by name, for the test that compares them with the
/// pure-Python codec's (`jobpersist._codec.python.codec.LIMITS`).
fn limits(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    use jobpersist_core as core;
    let limits = pyo3::types::PyDict::new(py);
    limits.set_item("line_chars", core::LINE_CHARS)?;
    limits.set_item("line_input_bytes", core::LINE_INPUT_BYTES)?;
    limits.set_item("flush_at", core::FLUSH_THRESHOLD)?;
    limits.set_item("reserve_at", core::RESERVE_AT)?;
    limits.set_item("reserve_slack", core::RESERVE_SLACK)?;
    limits.set_item("reserve_ahead", core::RESERVE_AHEAD)?;
    limits.set_item("read_whole_max", reader::IN_MEMORY_MAX)?;
    limits.set_item("pickle_peek_size", core::PEEK_SIZE)?;
    limits.set_item("max_depth", core::MAX_DEPTH)?;
    limits.set_item("max_spares", core::spare_files::MAX_SPARES)?;
    limits.set_item("slow_create_ns", core::spare_files::SLOW_CREATE_NS)?;
    limits.set_item("keep_anyway_at", core::in_memory_fs::KEEP_ANYWAY_AT)?;
    Ok(limits)
}
