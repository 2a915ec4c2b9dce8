//! Helpers shared by the unit tests of several modules.

use crate::LineEncoder;

/// `n` bytes of a fixed, irregular pattern.
pub fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 7) as u8).collect()
}

/// `d` encoded in one push, with `sep` between lines.
pub fn encode(d: &[u8], sep: &'static [u8]) -> Vec<u8> {
    let mut enc = LineEncoder::new(sep);
    let mut out = Vec::new();
    enc.push(d, &mut out);
    enc.finish(&mut out);
    out
}
