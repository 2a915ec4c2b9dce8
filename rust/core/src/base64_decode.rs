//! Strict decoder for line-wrapped base64 held in a JSON string value.
//!
//! The input is the raw text between the quotes, still JSON-escaped. Only
//! the shapes our own writer and Braket produce are accepted; everything
//! else is an error so the caller can fall back to the exact Python path.

use base64_simd::{AsOut, STANDARD};
use memchr::memchr;

use crate::error::{Error, Result};

/// Base64 characters gathered per SIMD decode call (a multiple of 4).
const CHUNK_CHARS: usize = 1 << 20;

/// Length of the separator escape starting at `pos` (which holds a
/// backslash): 2 for `\n`, 4 for `\r\n`, `None` for anything else.
#[inline]
fn separator_len(input: &[u8], pos: usize) -> Option<usize> {
    match input.get(pos + 1) {
        Some(b'n') => Some(2),
        Some(b'r') if input.get(pos + 2..pos + 4) == Some(&b"\\n"[..]) => Some(4),
        _ => None,
    }
}

/// Separator structure of a validated input.
struct Layout {
    /// Number of base64 characters (separators excluded).
    chars: usize,
    /// Number of trailing `=` characters.
    pad: usize,
    has_separators: bool,
}

fn layout(input: &[u8]) -> Result<Layout> {
    let mut sep_bytes = 0;
    let mut pos = 0;
    while let Some(i) = memchr(b'\\', &input[pos..]) {
        let at = pos + i;
        let len = separator_len(input, at)
            .ok_or_else(|| Error::decode(at, "unsupported escape sequence"))?;
        sep_bytes += len;
        pos = at + len;
    }
    let chars = input.len() - sep_bytes;
    if chars % 4 != 0 {
        // A stray character is the more useful report (and the earlier
        // offending byte) than the length mismatch it causes.
        return Err(first_invalid_char(input).unwrap_or_else(|| {
            Error::decode(input.len(), "base64 length is not a multiple of 4")
        }));
    }
    // Separators are validated above, so walking back over `\n` / `\r`
    // pairs cannot misread a data character.
    let mut pad = 0;
    let mut end = input.len();
    let mut seen = 0;
    while seen < 2 && end >= 1 {
        if end >= 2 && input[end - 2] == b'\\' {
            end -= 2;
            continue;
        }
        let c = input[end - 1];
        if c == b'=' && pad == seen {
            pad += 1;
        }
        seen += 1;
        end -= 1;
    }
    Ok(Layout {
        chars,
        pad,
        has_separators: sep_bytes > 0,
    })
}

fn len_from(l: &Layout) -> usize {
    let n = l.chars - l.pad;
    // pad <= 2 and chars % 4 == 0, so n % 4 is never 1.
    n / 4 * 3 + (n % 4).saturating_sub(1)
}

/// Validates the separator, length and padding structure of `input` and
/// returns the exact number of bytes [`decode_into`] will produce.
///
/// Character validity is only checked by [`decode_into`].
pub fn decoded_len(input: &[u8]) -> Result<usize> {
    Ok(len_from(&layout(input)?))
}

/// Decodes `input` into `out`, whose length must equal
/// [`decoded_len`]`(input)`.
///
/// On error the contents of `out` are unspecified.
pub fn decode_into(input: &[u8], out: &mut [u8]) -> Result<()> {
    let l = layout(input)?;
    let total = len_from(&l);
    if out.len() != total {
        return Err(Error::decode(
            0,
            format!("output buffer is {} bytes, expected {total}", out.len()),
        ));
    }
    decode_with(input, out, &l)
}

/// Gathers the base64 characters (separators dropped) into chunks and
/// decodes each with SIMD straight into the output.
fn decode_with(input: &[u8], out: &mut [u8], l: &Layout) -> Result<()> {
    let len = input.len();
    let total = len_from(l);
    if !l.has_separators {
        return decode_chunk(input, &mut out[..total], true).map_err(|()| locate_error(input, l));
    }
    let mut scratch: Vec<u8> = Vec::with_capacity(l.chars.min(CHUNK_CHARS));
    let mut written = 0;
    let mut pos = 0;
    while pos < len {
        let seg_end = memchr(b'\\', &input[pos..]).map_or(len, |i| pos + i);
        while pos < seg_end {
            if scratch.len() == CHUNK_CHARS {
                // More data follows, so this chunk must decode to full groups.
                let n = CHUNK_CHARS / 4 * 3;
                decode_chunk(&scratch, &mut out[written..written + n], false)
                    .map_err(|()| locate_error(input, l))?;
                written += n;
                scratch.clear();
            }
            let take = (seg_end - pos).min(CHUNK_CHARS - scratch.len());
            scratch.extend_from_slice(&input[pos..pos + take]);
            pos += take;
        }
        if pos < len {
            // layout() accepted every escape, so this is a known separator.
            pos += separator_len(input, pos).unwrap_or(2);
        }
    }
    decode_chunk(&scratch, &mut out[written..total], true).map_err(|()| locate_error(input, l))
}

/// Decodes one gathered chunk that must fill `out` exactly; padding is only
/// allowed in the final chunk.
pub(crate) fn decode_chunk(
    chunk: &[u8],
    out: &mut [u8],
    last: bool,
) -> std::result::Result<(), ()> {
    if !last && chunk.last() == Some(&b'=') {
        return Err(());
    }
    // Checked up front because base64-simd panics on a short destination.
    match STANDARD.decoded_length(chunk) {
        Ok(n) if n == out.len() => {}
        _ => return Err(()),
    }
    STANDARD
        .decode(chunk, out.as_out())
        .map(|_| ())
        .map_err(|_| ())
}

/// First byte that is neither a base64 character, `=`, nor part of a
/// separator (error path only).
fn first_invalid_char(input: &[u8]) -> Option<Error> {
    let mut pos = 0;
    while pos < input.len() {
        let c = input[pos];
        if c == b'\\' {
            pos += separator_len(input, pos)?;
        } else if c == b'=' || is_b64_char(c) {
            pos += 1;
        } else {
            return Some(Error::decode(
                pos,
                format!("invalid base64 character 0x{c:02x}"),
            ));
        }
    }
    None
}

/// Finds the first offending byte after a SIMD decode failure. Only runs on
/// the error path, so a plain scalar scan is fine.
fn locate_error(input: &[u8], l: &Layout) -> Error {
    let pad_start = l.chars - l.pad;
    let mut idx = 0; // index among base64 characters
    let mut last_data_at = 0;
    let mut pos = 0;
    while pos < input.len() {
        let c = input[pos];
        if c == b'\\' {
            pos += separator_len(input, pos).unwrap_or(2);
            continue;
        }
        if c == b'=' {
            if idx < pad_start {
                return Error::decode(pos, "padding before end of data");
            }
        } else if !is_b64_char(c) {
            return Error::decode(pos, format!("invalid base64 character 0x{c:02x}"));
        } else if idx >= pad_start {
            return Error::decode(pos, "data after padding");
        } else {
            last_data_at = pos;
        }
        idx += 1;
        pos += 1;
    }
    Error::decode(last_data_at, "non-zero trailing bits before padding")
}

fn is_b64_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

/// Decodes `input` into a new vector; see [`decode_into`].
pub fn decode(input: &[u8]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; decoded_len(input)?];
    decode_into(input, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{data, encode};

    fn strip_seps(s: &[u8]) -> Vec<u8> {
        let text = String::from_utf8(s.to_vec()).unwrap();
        text.replace("\\r\\n", "").replace("\\n", "").into_bytes()
    }

    fn err_offset(r: Result<impl std::fmt::Debug>) -> usize {
        match r {
            Err(Error::Decode { offset, .. }) => offset,
            other => panic!("expected decode error, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_every_length_all_forms() {
        for n in 0..300 {
            let d = data(n);
            let escaped = encode(&d, b"\\n");
            assert_eq!(decode(&escaped).unwrap(), d, "n={n}");
            let crlf = String::from_utf8(escaped.clone())
                .unwrap()
                .replace("\\n", "\\r\\n");
            assert_eq!(decode(crlf.as_bytes()).unwrap(), d, "crlf n={n}");
            let bare = strip_seps(&escaped);
            assert_eq!(decode(&bare).unwrap(), d, "bare n={n}");
            // Without the trailing separator.
            let trimmed = escaped.strip_suffix(b"\\n").unwrap_or(&escaped);
            assert_eq!(decode(trimmed).unwrap(), d, "trimmed n={n}");
        }
    }

    #[test]
    fn round_trip_across_chunks() {
        let d = data(CHUNK_CHARS / 4 * 3 * 2 + 1000);
        let escaped = encode(&d, b"\\n");
        assert_eq!(decode(&escaped).unwrap(), d);
        let bare = strip_seps(&escaped);
        assert_eq!(decode(&bare).unwrap(), d);
        // Exactly one chunk of characters.
        let d = data(CHUNK_CHARS / 4 * 3);
        assert_eq!(decode(&encode(&d, b"\\n")).unwrap(), d);
    }

    #[test]
    fn odd_separator_placement() {
        assert_eq!(decode(b"\\nY\\nQ=\\r\\n=\\n\\n").unwrap(), b"a");
        assert_eq!(decode(b"YWJj\\nYWJj").unwrap(), b"abcabc");
        assert_eq!(decode(b"").unwrap(), b"");
        assert_eq!(decode(b"\\n").unwrap(), b"");
    }

    #[test]
    fn rejects_with_offsets() {
        assert_eq!(err_offset(decode(b"YWJj\\u000a")), 4);
        assert_eq!(err_offset(decode(b"YW\\/j")), 2);
        assert_eq!(err_offset(decode(b"YWJj\\r")), 4);
        assert_eq!(err_offset(decode(b"YWJj\\")), 4);
        assert_eq!(err_offset(decode(b"YWJ")), 3);
        assert_eq!(err_offset(decode(b"YW J")), 2);
        assert_eq!(err_offset(decode(b"YWJj\nYWJj")), 4);
        assert_eq!(err_offset(decode(b"YQ==YWJj")), 2);
        assert_eq!(err_offset(decode(b"Y=Jj")), 1);
        assert_eq!(err_offset(decode(b"YQ=j")), 2);
        assert_eq!(err_offset(decode(b"Y===")), 1);
        assert_eq!(err_offset(decode(b"YR==")), 1);
        assert_eq!(err_offset(decode("YWJ\u{e9}".as_bytes())), 3);
        let mut big = encode(&data(2_000_000), b"\\n");
        let at = big.len() - 100;
        big[at] = b'*';
        assert_eq!(err_offset(decode(&big)), at);
        let mut out = [0u8; 2];
        assert!(decode_into(b"YWJj", &mut out).is_err());
    }

    #[test]
    fn truncations_and_corruptions_never_panic() {
        let d = data(200);
        let base = encode(&d, b"\\n");
        for cut in 0..=base.len() {
            let _ = decode(&base[..cut]);
        }
        for i in 0..base.len() {
            for b in [0u8, b'\\', b'=', b'n', b'r', b'A', 0xff, b'\n'] {
                let mut c = base.clone();
                c[i] = b;
                if let Ok(len) = decoded_len(&c) {
                    let mut out = vec![0; len];
                    let _ = decode_into(&c, &mut out);
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn random_round_trip(d in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
            proptest::prop_assert_eq!(decode(&encode(&d, b"\\n")).unwrap(), d);
        }

        #[test]
        fn fuzz_never_panics(
            raw in proptest::collection::vec(
                proptest::sample::select(b"AQgw+/=\\nr\n xZ09".to_vec()), 0..64)
        ) {
            if let Ok(got) = decode(&raw) {
                let enc = base64_simd::STANDARD.encode_to_string(&got).into_bytes();
                proptest::prop_assert_eq!(enc, strip_seps(&raw));
            }
        }

        #[test]
        fn fuzz_arbitrary_bytes(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(n) = decoded_len(&raw) {
                let mut out = vec![0; n];
                let _ = decode_into(&raw, &mut out);
            }
            let _ = decode(&raw);
        }
    }
}
