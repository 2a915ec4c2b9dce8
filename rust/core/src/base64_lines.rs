//! Streaming, line-wrapping base64 encoder matching Python's
//! `base64.encodebytes` byte for byte.

use base64_simd::{AsOut, STANDARD};

/// Output characters per full line, as in `base64.encodebytes`.
pub const LINE_CHARS: usize = 76;
/// Input bytes that encode to exactly one full line.
pub const LINE_INPUT_BYTES: usize = LINE_CHARS / 4 * 3;

/// Lines encoded per bulk step: the scratch (~76 KiB) stays in L2 while its
/// lines are copied out with separators.
const BULK_LINES: usize = 1024;

/// Incremental base64 encoder that inserts `line_sep` after every 76 output
/// characters and after the final partial line.
///
/// Input may be pushed in arbitrary pieces; the output is identical to
/// encoding the concatenation in one go.
#[derive(Debug)]
pub struct LineEncoder {
    sep: &'static [u8],
    /// Input bytes that did not yet make up a full 3-byte group.
    carry: [u8; 2],
    carry_len: usize,
    /// Characters already written on the current (unterminated) line; always
    /// a multiple of 4 and below `LINE_CHARS` between calls.
    col: usize,
    /// Bulk encoding buffer, allocated on first large push and then reused.
    scratch: Vec<u8>,
}

impl LineEncoder {
    /// Creates an encoder writing `line_sep` as the line separator
    /// (`b"\n"` for `encodebytes` output, `b"\\n"` for output already escaped
    /// for a JSON string).
    pub fn new(line_sep: &'static [u8]) -> Self {
        LineEncoder {
            sep: line_sep,
            carry: [0; 2],
            carry_len: 0,
            col: 0,
            scratch: Vec::new(),
        }
    }

    /// Exact size of the complete encoding (including the final separator)
    /// of `n` input bytes with a separator of `sep_len` bytes.
    pub fn encoded_len(n: usize, sep_len: usize) -> usize {
        let chars = n.div_ceil(3) * 4;
        chars + chars.div_ceil(LINE_CHARS) * sep_len
    }

    /// Exact number of bytes the next `push` of `n` bytes appends.
    fn push_len(&self, n: usize) -> usize {
        let chars = (self.carry_len + n) / 3 * 4;
        chars + (self.col + chars) / LINE_CHARS * self.sep.len()
    }

    /// Encodes as much of `input` as forms whole 3-byte groups (together
    /// with bytes carried from earlier calls) and appends it to `out`.
    /// Up to two bytes are kept for the next `push` or `finish`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        out.reserve(self.push_len(input.len()));

        if self.carry_len > 0 {
            let need = 3 - self.carry_len;
            if input.len() < need {
                self.carry[self.carry_len..self.carry_len + input.len()].copy_from_slice(input);
                self.carry_len += input.len();
                return;
            }
            let mut group = [0u8; 3];
            group[..self.carry_len].copy_from_slice(&self.carry[..self.carry_len]);
            group[self.carry_len..].copy_from_slice(&input[..need]);
            input = &input[need..];
            self.carry_len = 0;
            self.emit_on_line(&group, out);
        }

        if self.col > 0 {
            let room = (LINE_CHARS - self.col) / 4 * 3;
            let take = room.min(input.len() / 3 * 3);
            self.emit_on_line(&input[..take], out);
            input = &input[take..];
            if self.col > 0 {
                // The line is still open, so fewer than 3 bytes are left.
                self.stash(input);
                return;
            }
        }

        let whole = input.len() / LINE_INPUT_BYTES * LINE_INPUT_BYTES;
        self.emit_lines(&input[..whole], out);
        input = &input[whole..];

        let take = input.len() / 3 * 3;
        self.emit_on_line(&input[..take], out);
        self.stash(&input[take..]);
    }

    /// Writes the padded tail and the final separator, exactly as
    /// `encodebytes` ends its output, and resets the encoder for reuse.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.carry_len > 0 {
            let mut buf = [0u8; 4];
            let enc = STANDARD.encode(&self.carry[..self.carry_len], buf.as_mut_slice().as_out());
            out.extend_from_slice(enc);
            // col <= 72 here, so the padded group always fits the line.
            self.col += 4;
            self.carry_len = 0;
        }
        if self.col > 0 {
            out.extend_from_slice(self.sep);
            self.col = 0;
        }
    }

    fn stash(&mut self, rest: &[u8]) {
        debug_assert!(rest.len() < 3 && self.carry_len == 0);
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carry_len = rest.len();
    }

    /// Encodes whole 3-byte groups that fit on the current line.
    fn emit_on_line(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        debug_assert!(bytes.len() % 3 == 0);
        debug_assert!(self.col + bytes.len() / 3 * 4 <= LINE_CHARS);
        let mut buf = [0u8; LINE_CHARS];
        let enc = STANDARD.encode(bytes, buf.as_mut_slice().as_out());
        out.extend_from_slice(enc);
        self.col += enc.len();
        if self.col == LINE_CHARS {
            out.extend_from_slice(self.sep);
            self.col = 0;
        }
    }

    /// Encodes whole lines (input length a multiple of 57, line start).
    fn emit_lines(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        debug_assert!(self.col == 0 && bytes.len() % LINE_INPUT_BYTES == 0);
        let max_chunk = BULK_LINES * LINE_INPUT_BYTES;
        let scratch_len = bytes.len().min(max_chunk) / 3 * 4;
        if self.scratch.len() < scratch_len {
            self.scratch.resize(scratch_len, 0);
        }
        for chunk in bytes.chunks(max_chunk) {
            let enc = STANDARD.encode(chunk, self.scratch.as_mut_slice().as_out());
            for line in enc.chunks_exact(LINE_CHARS) {
                out.extend_from_slice(line);
                out.extend_from_slice(self.sep);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scalar model of Python's `base64.encodebytes`.
    fn reference(data: &[u8], sep: &[u8]) -> Vec<u8> {
        const ALPHA: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        for line in data.chunks(LINE_INPUT_BYTES) {
            for g in line.chunks(3) {
                let b = [g[0], *g.get(1).unwrap_or(&0), *g.get(2).unwrap_or(&0)];
                let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..4 {
                    if i <= g.len() {
                        out.push(ALPHA[((v >> (18 - 6 * i)) & 63) as usize]);
                    } else {
                        out.push(b'=');
                    }
                }
            }
            out.extend_from_slice(sep);
        }
        out
    }

    use crate::test_support::{data, encode as one_shot};

    #[test]
    fn known_vectors() {
        assert_eq!(one_shot(b"", b"\n"), b"");
        assert_eq!(one_shot(b"a", b"\n"), b"YQ==\n");
        assert_eq!(one_shot(b"ab", b"\n"), b"YWI=\n");
        assert_eq!(one_shot(b"abc", b"\n"), b"YWJj\n");
        // pickle.dumps([1, 2, 3], protocol=4)
        let pickled = b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02K\x03e.";
        assert_eq!(
            one_shot(pickled, b"\\n"),
            b"gASVCwAAAAAAAABdlChLAUsCSwNlLg==\\n".to_vec()
        );
    }

    #[test]
    fn matches_reference_every_length() {
        for n in 0..300 {
            let d = data(n);
            for sep in [&b"\n"[..], b"\\n"] {
                let sep: &'static [u8] = if sep == b"\n" { b"\n" } else { b"\\n" };
                let got = one_shot(&d, sep);
                assert_eq!(got, reference(&d, sep), "n={n}");
                assert_eq!(got.len(), LineEncoder::encoded_len(n, sep.len()), "n={n}");
            }
        }
    }

    #[test]
    fn large_matches_reference() {
        let n = BULK_LINES * LINE_INPUT_BYTES * 2 + 1234;
        let d = data(n);
        assert_eq!(one_shot(&d, b"\n"), reference(&d, b"\n"));
    }

    #[test]
    fn byte_at_a_time_and_empty_pushes() {
        let d = data(400);
        let mut enc = LineEncoder::new(b"\n");
        let mut out = Vec::new();
        for b in &d {
            enc.push(&[], &mut out);
            enc.push(std::slice::from_ref(b), &mut out);
        }
        enc.finish(&mut out);
        assert_eq!(out, reference(&d, b"\n"));
    }

    #[test]
    fn reusable_after_finish() {
        let mut enc = LineEncoder::new(b"\n");
        let mut out = Vec::new();
        enc.push(b"hello", &mut out);
        enc.finish(&mut out);
        out.clear();
        enc.push(b"a", &mut out);
        enc.finish(&mut out);
        assert_eq!(out, b"YQ==\n");
        out.clear();
        enc.finish(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn push_reserves_exactly() {
        let d = data(5000);
        let mut enc = LineEncoder::new(b"\\n");
        let mut out = Vec::new();
        let mut pos = 0;
        for step in [1usize, 2, 57, 100, 3, 1000, 3837] {
            let before = out.len();
            let expect = enc.push_len(step);
            enc.push(&d[pos..pos + step], &mut out);
            assert_eq!(out.len() - before, expect);
            pos += step;
        }
    }

    proptest::proptest! {
        #[test]
        fn random_chunking_equals_one_shot(
            d in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
            cuts in proptest::collection::vec(0usize..200, 0..30),
        ) {
            let mut enc = LineEncoder::new(b"\n");
            let mut out = Vec::new();
            let mut rest = &d[..];
            for c in cuts {
                let c = c.min(rest.len());
                enc.push(&rest[..c], &mut out);
                rest = &rest[c..];
            }
            enc.push(rest, &mut out);
            enc.finish(&mut out);
            proptest::prop_assert_eq!(&out, &reference(&d, b"\n"));
            proptest::prop_assert_eq!(out.len(), LineEncoder::encoded_len(d.len(), 1));
        }
    }
}
