//! Streaming decoder for one wrapped-base64 JSON string value of a file: the
//! bytes come out as a reader asks for them (`pickle.Unpickler` reading from
//! it), so neither the file's text nor a copy of the value is ever held whole.
//!
//! It accepts what the strict decoder accepts (`\n` or `\r\n` escapes between
//! any characters, standard alphabet, padding only at the end) and refuses the
//! rest with the file offset of the first offending byte.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::base64_decode::decode_chunk;
use crate::error::{Error, Result};

/// Raw bytes read from the file per refill (a multiple of 4 keeps quads whole).
const RAW_CHUNK: usize = 1 << 20;

/// Where the raw text comes from: a file, or bytes in memory (tests).
pub trait ReadAt {
    /// Reads up to `buf.len()` bytes at `offset`; 0 only at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;
}

impl ReadAt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for std::sync::Arc<T> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        (**self).read_at(buf, offset)
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.as_slice().read_at(buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let start = (offset as usize).min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

/// Decodes `src[start..end]` (raw JSON string content) on demand.
pub struct SpanDecoder<R: ReadAt + ?Sized> {
    src: Box<R>,
    /// Next raw offset to read, and the end of the span.
    pos: u64,
    end: u64,
    raw: Vec<u8>,
    /// Base64 characters gathered (separators dropped), not yet decoded.
    chars: Vec<u8>,
    /// File offset of `chars[0]`'s source byte, for error reports.
    chars_at: u64,
    /// Decoded bytes not yet handed out, from `pending_from`.
    pending: Vec<u8>,
    pending_from: usize,
    /// A separator escape cut by the end of a raw chunk: its first bytes.
    cut: Vec<u8>,
    padded: bool,
}

impl<R: ReadAt + ?Sized> SpanDecoder<R> {
    /// A decoder over `src[start..end]`.
    pub fn new(src: Box<R>, start: u64, end: u64) -> Self {
        SpanDecoder {
            src,
            pos: start,
            end,
            raw: Vec::new(),
            chars: Vec::new(),
            chars_at: start,
            pending: Vec::new(),
            pending_from: 0,
            cut: Vec::new(),
            padded: false,
        }
    }

    fn err(&self, offset: u64, reason: &str) -> Error {
        Error::decode(offset as usize, reason)
    }

    /// Reads the next raw chunk and appends its base64 characters to `chars`.
    /// Returns false at the end of the span.
    fn refill(&mut self) -> Result<bool> {
        if self.pos >= self.end {
            if !self.cut.is_empty() {
                return Err(self.err(self.end - self.cut.len() as u64, "cut escape sequence"));
            }
            return Ok(false);
        }
        let want = RAW_CHUNK.min((self.end - self.pos) as usize);
        self.raw.resize(want, 0);
        let mut got = 0;
        while got < want {
            match self
                .src
                .read_at(&mut self.raw[got..], self.pos + got as u64)
            {
                Ok(0) => {
                    let e = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                    return Err(Error::io("read", PathBuf::new(), e));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read", PathBuf::new(), e)),
            }
        }
        let base = self.pos - self.cut.len() as u64;
        self.pos += want as u64;
        // Prepend a cut escape so separators are always seen whole.
        let mut text = std::mem::take(&mut self.cut);
        text.extend_from_slice(&self.raw);
        let mut i = 0;
        while i < text.len() {
            match memchr::memchr(b'\\', &text[i..]) {
                None => {
                    self.chars.extend_from_slice(&text[i..]);
                    break;
                }
                Some(j) => {
                    self.chars.extend_from_slice(&text[i..i + j]);
                    let at = i + j;
                    let rest = &text[at..];
                    let sep = if rest.starts_with(b"\\n") {
                        2
                    } else if rest.starts_with(b"\\r\\n") {
                        4
                    } else if rest.len() < 4 && b"\\r\\n".starts_with(rest) {
                        // Cut by the chunk's end: finish it with the next chunk.
                        self.cut = rest.to_vec();
                        break;
                    } else {
                        return Err(self.err(base + at as u64, "unsupported escape sequence"));
                    };
                    i = at + sep;
                }
            }
        }
        Ok(true)
    }

    /// Decodes the whole quads gathered so far (all of them at the end of the
    /// span) into `out`, or into `pending` when `out` is too short.
    fn decode_gathered(&mut self, out: &mut [u8], at_end: bool) -> Result<usize> {
        let usable = if at_end {
            if self.chars.len() % 4 != 0 {
                return Err(self.err(self.end, "base64 length is not a multiple of 4"));
            }
            self.chars.len()
        } else {
            // Keep the last quad back while more may follow: only the final one may pad.
            (self.chars.len() / 4).saturating_sub(1) * 4
        };
        if usable == 0 {
            return Ok(0);
        }
        if self.padded {
            return Err(self.err(self.chars_at, "data after padding"));
        }
        let quads = &self.chars[..usable];
        let pad = quads
            .iter()
            .rev()
            .take(2)
            .take_while(|&&c| c == b'=')
            .count();
        let n = usable / 4 * 3 - pad;
        let bad = |this: &Self| this.err(this.chars_at, "invalid base64 in this block");
        if n <= out.len() {
            decode_chunk(quads, &mut out[..n], at_end).map_err(|()| bad(self))?;
        } else {
            self.pending.resize(n, 0);
            self.pending_from = 0;
            let (chars, pending) = (&self.chars, &mut self.pending);
            decode_chunk(&chars[..usable], pending, at_end).map_err(|()| bad(self))?;
        }
        self.padded = pad > 0;
        self.chars.drain(..usable);
        self.chars_at += usable as u64;
        Ok(if n <= out.len() { n } else { 0 })
    }

    /// At most how many decoded bytes are left: a reader asked for more (a
    /// damaged length in a pickle) needs no bigger buffer than this.
    pub fn remaining_max(&self) -> usize {
        let raw_left = (self.end - self.pos) as usize + self.cut.len() + self.chars.len();
        (self.pending.len() - self.pending_from) + raw_left.div_ceil(4) * 3
    }

    /// Fills `out` with the next decoded bytes; fewer only at the end (0 then).
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize> {
        let mut filled = 0;
        while filled < out.len() {
            if self.pending_from < self.pending.len() {
                let n = (self.pending.len() - self.pending_from).min(out.len() - filled);
                out[filled..filled + n]
                    .copy_from_slice(&self.pending[self.pending_from..self.pending_from + n]);
                self.pending_from += n;
                filled += n;
                continue;
            }
            let more = self.refill()?;
            let n = self.decode_gathered(&mut out[filled..], !more)?;
            filled += n;
            if !more && n == 0 && self.pending_from >= self.pending.len() {
                break;
            }
        }
        Ok(filled)
    }

    /// Decodes (and discards) whatever is left, to check it is valid.
    pub fn validate_rest(&mut self) -> Result<()> {
        let mut sink = vec![0u8; self.remaining_max().clamp(1, RAW_CHUNK)];
        while self.read(&mut sink)? > 0 {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{data, encode};

    fn decode_stream(text: &[u8], step: usize) -> Result<Vec<u8>> {
        let mut d = SpanDecoder::new(Box::<[u8]>::from(text), 0, text.len() as u64);
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            let n = d.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn streams_what_the_strict_decoder_decodes() {
        for n in (0..200).chain([57 * 30_000 + 11]) {
            let d = data(n);
            for sep in [&b"\\n"[..], &b"\\r\\n"[..]] {
                let text = encode(&d, sep);
                for step in [1, 3, 57, 4096, 1 << 21] {
                    assert_eq!(decode_stream(&text, step).unwrap(), d, "n={n} step={step}");
                }
            }
        }
    }

    #[test]
    fn escapes_cut_at_chunk_ends_are_joined() {
        // Lines of 76 chars + `\r\n` escapes put separators across every chunk offset.
        let d = data(RAW_CHUNK * 2);
        let text = encode(&d, b"\\r\\n");
        assert_eq!(decode_stream(&text, 1 << 20).unwrap(), d);
    }

    #[test]
    fn damage_is_an_error_never_a_panic() {
        let text = encode(&data(500), b"\\n");
        for i in 0..text.len() {
            for b in [b'!', b'\\', b'=', b'"', 0x80] {
                let mut t = text.clone();
                t[i] = b;
                let _ = decode_stream(&t, 7);
            }
            let _ = decode_stream(&text[..i], 5);
        }
        assert!(decode_stream(b"QQ==QQ==", 8).is_err());
        assert!(decode_stream(b"Q\\t==", 8).is_err());
    }
}
