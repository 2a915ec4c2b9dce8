//! `jobpersist._native`: thin PyO3 bindings over `jobpersist-core`.
//!
//! Only argument conversion, GIL handling and error mapping live here; every
//! byte the module writes or decodes is produced by the pyo3-free core.

mod errors;
mod faults;
mod plaintext;
mod reader;
mod writer;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<writer::NativeEnvelopeWriter>()?;
    m.add_function(wrap_pyfunction!(writer::open_writer, m)?)?;
    m.add_function(wrap_pyfunction!(writer::encode_json, m)?)?;
    m.add_class::<reader::NativeFileData>()?;
    m.add_class::<reader::NativeValueReader>()?;
    m.add("DecodeError", m.py().get_type::<errors::DecodeError>())?;
    m.add_function(wrap_pyfunction!(reader::read_file, m)?)?;
    m.add_function(wrap_pyfunction!(base64_isa, m)?)?;
    m.add_function(wrap_pyfunction!(faults::arm_faults, m)?)?;
    m.add_function(wrap_pyfunction!(faults::disarm_faults, m)?)?;
    Ok(())
}

/// The instruction set base64-simd encodes and decodes with on this machine:
/// "avx2", "ssse3", "neon", "simd128" or "fallback" (for `jobpersist info`).
#[pyfunction]
fn base64_isa() -> &'static str {
    jobpersist_core::base64_isa()
}
