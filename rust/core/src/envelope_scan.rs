//! Fast structural scan of a canonical pickled envelope, as the reference
//! and jobpersist write it, without building any JSON value.
//!
//! The scan is deliberately narrow: it accepts only the exact layout
//! `json.dumps` produces, and answers `None` for anything else, so the caller
//! parses such a file in full. Whatever it accepts, `json.loads` reads as a
//! valid `pickled_v4` envelope with the same keys and string values.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The envelope text before the first key.
pub const HEAD: &[u8] = br#"{"braketSchemaHeader": {"name": "braket.jobs_data.persisted_job_data", "version": "1"}, "dataDictionary": {"#;
/// The envelope text after the last value, before the format label.
const TAIL_BEFORE_LABEL: &[u8] = br#"}, "dataFormat": "#;
/// The end of a pickled envelope (`tail("pickled_v4")`): the only one the scan accepts.
const TAIL: &[u8] = br#"}, "dataFormat": "pickled_v4"}"#;

/// The envelope text after the last value, for the format label `label`
/// (escaped as `json.dumps` escapes it).
pub fn tail(label: &str) -> Vec<u8> {
    let mut out = TAIL_BEFORE_LABEL.to_vec();
    crate::json_escape::escape_str(label, &mut out);
    out.push(b'}');
    out
}

/// Where one entry's key and value stand in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Raw JSON string content of the key (between its quotes, still escaped).
    pub key: (usize, usize),
    /// Raw JSON string content of the value (between its quotes, still escaped).
    pub value: (usize, usize),
}

/// The bytes of an envelope, addressed by offset: a slice, or a file read in
/// pieces (so a scan never holds the whole file).
pub trait ScanSource {
    /// Up to `len` bytes at `pos` (fewer only where the input ends).
    fn window(&mut self, pos: usize, len: usize) -> Result<&[u8]>;
    /// The offset of the first `"` at or after `pos`.
    fn find_quote(&mut self, pos: usize) -> Result<Option<usize>>;
    /// The total length of the input.
    fn len(&self) -> usize;
    /// Whether the input is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ScanSource for &[u8] {
    fn window(&mut self, pos: usize, len: usize) -> Result<&[u8]> {
        let start = pos.min(self.len());
        Ok(&self[start..pos.saturating_add(len).min(self.len())])
    }
    fn find_quote(&mut self, pos: usize) -> Result<Option<usize>> {
        Ok(self
            .get(pos..)
            .and_then(|rest| memchr::memchr(b'"', rest))
            .map(|i| pos + i))
    }
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

/// A file read through one reused buffer.
pub struct FileSource<'f> {
    file: &'f File,
    size: usize,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    base: usize,
}

/// Bytes read per refill while scanning a file.
const SCAN_CHUNK: usize = 4 << 20;

impl<'f> FileSource<'f> {
    /// A source over the first `size` bytes of `file`.
    pub fn new(file: &'f File, size: usize) -> Self {
        FileSource {
            file,
            size,
            buf: Vec::new(),
            base: 0,
        }
    }

    fn load(&mut self, pos: usize, len: usize) -> Result<()> {
        let want = len.max(SCAN_CHUNK).min(self.size.saturating_sub(pos));
        self.buf.resize(want, 0);
        let mut filled = 0;
        while filled < want {
            match self
                .file
                .read_at(&mut self.buf[filled..], (pos + filled) as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read", PathBuf::new(), e)),
            }
        }
        self.buf.truncate(filled);
        self.base = pos;
        Ok(())
    }
}

impl ScanSource for FileSource<'_> {
    fn window(&mut self, pos: usize, len: usize) -> Result<&[u8]> {
        let end = pos.saturating_add(len).min(self.size);
        if pos < self.base || end > self.base + self.buf.len() {
            self.load(pos, end.saturating_sub(pos))?;
        }
        let from = pos.saturating_sub(self.base).min(self.buf.len());
        let to = end.saturating_sub(self.base).clamp(from, self.buf.len());
        Ok(&self.buf[from..to])
    }

    fn find_quote(&mut self, mut pos: usize) -> Result<Option<usize>> {
        while pos < self.size {
            let chunk = self.window(pos, SCAN_CHUNK)?;
            if chunk.is_empty() {
                return Ok(None);
            }
            if let Some(i) = memchr::memchr(b'"', chunk) {
                return Ok(Some(pos + i));
            }
            pos += chunk.len();
        }
        Ok(None)
    }

    fn len(&self) -> usize {
        self.size
    }
}

/// The end of the JSON string content starting at `start`, or `None` where
/// the string holds an escaped quote (or is unterminated), which the full
/// parser handles.
fn string_end(src: &mut impl ScanSource, start: usize) -> Result<Option<usize>> {
    let Some(end) = src.find_quote(start)? else {
        return Ok(None);
    };
    // An escaped quote would end the scan early; `\\"` is legal too but rare
    // enough to leave to the full parser.
    if end > start && src.window(end - 1, 1)? == b"\\" {
        return Ok(None);
    }
    Ok(Some(end))
}

/// Scans `data` as a canonical pickled envelope; `None` if it is not one.
pub fn scan_pickled(data: &[u8]) -> Option<Vec<Entry>> {
    let mut src = data;
    // A slice source never fails.
    scan(&mut src).ok().flatten()
}

/// Scans a canonical pickled envelope from any source; `Ok(None)` if it is
/// not one, `Err` only for I/O failures.
pub fn scan(src: &mut impl ScanSource) -> Result<Option<Vec<Entry>>> {
    let mut pos = HEAD.len();
    if src.window(0, pos)? != HEAD {
        return Ok(None);
    }
    let mut entries = Vec::new();
    loop {
        if src.window(pos, TAIL.len())? == TAIL {
            return Ok(finish(src, pos + TAIL.len())?.then_some(entries));
        }
        if !entries.is_empty() {
            if src.window(pos, 2)? != b", " {
                return Ok(None);
            }
            pos += 2;
        }
        if src.window(pos, 1)? != b"\"" {
            return Ok(None);
        }
        let key_start = pos + 1;
        let Some(key_end) = string_end(src, key_start)? else {
            return Ok(None);
        };
        // Control characters are invalid inside JSON strings: the parser says so.
        if src
            .window(key_start, key_end - key_start)?
            .iter()
            .any(|&b| b < 0x20)
        {
            return Ok(None);
        }
        pos = key_end + 1;
        if src.window(pos, 3)? != b": \"" {
            return Ok(None);
        }
        let value_start = pos + 3;
        let Some(value_end) = string_end(src, value_start)? else {
            return Ok(None);
        };
        entries.push(Entry {
            key: (key_start, key_end),
            value: (value_start, value_end),
        });
        pos = value_end + 1;
        if src.window(pos, TAIL.len())? != TAIL && src.window(pos, 2)? != b", " {
            return Ok(None);
        }
    }
}

fn finish(src: &mut impl ScanSource, mut pos: usize) -> Result<bool> {
    // json.loads allows trailing whitespace and nothing else.
    while pos < src.len() {
        let chunk = src.window(pos, SCAN_CHUNK)?;
        if chunk.is_empty() {
            break;
        }
        if !chunk
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            return Ok(false);
        }
        pos += chunk.len();
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_of_the_pickled_label_is_what_the_scan_accepts() {
        assert_eq!(tail("pickled_v4"), TAIL);
        assert_eq!(
            tail("plain\"text\u{e9}"),
            br#"}, "dataFormat": "plain\"text\u00e9"}"#
        );
    }

    fn envelope(body: &str) -> Vec<u8> {
        let mut v = HEAD.to_vec();
        v.extend_from_slice(body.as_bytes());
        v.extend_from_slice(TAIL);
        v
    }

    #[test]
    fn empty_dictionary() {
        assert_eq!(scan_pickled(&envelope("")), Some(vec![]));
    }

    #[test]
    fn entries_are_located() {
        let data = envelope(r#""a": "QQ==\n", "b\u00e9": "Qg==\n""#);
        let entries = scan_pickled(&data).unwrap();
        assert_eq!(entries.len(), 2);
        let (ks, ke) = entries[1].key;
        assert_eq!(&data[ks..ke], br"b\u00e9");
        let (vs, ve) = entries[0].value;
        assert_eq!(&data[vs..ve], br"QQ==\n");
    }

    #[test]
    fn trailing_whitespace_only() {
        let mut data = envelope(r#""a": "QQ==\n""#);
        data.extend_from_slice(b" \n");
        assert!(scan_pickled(&data).is_some());
        data.push(b'x');
        assert!(scan_pickled(&data).is_none());
    }

    #[test]
    fn odd_layouts_are_left_to_the_parser() {
        for body in [
            r#""a":"QQ==\n""#,
            r#""a": "QQ\"==\n""#,
            r#""a\"": "QQ==\n""#,
            r#""a": 5"#,
            r#""a": "QQ==\n","b": "QQ==\n""#,
            "\"a\u{1}\": \"QQ==\\n\"",
        ] {
            assert!(scan_pickled(&envelope(body)).is_none(), "{body}");
        }
        let plaintext = br#"{"braketSchemaHeader": {"name": "braket.jobs_data.persisted_job_data", "version": "1"}, "dataDictionary": {"a": "QQ==\n"}, "dataFormat": "plaintext"}"#;
        assert!(scan_pickled(plaintext).is_none());
    }

    fn spans_are_sane(data: &[u8], entries: &[Entry]) {
        let mut last = HEAD.len();
        for e in entries {
            assert!(last <= e.key.0 && e.key.0 <= e.key.1 && e.key.1 < e.value.0);
            assert!(e.value.0 <= e.value.1 && e.value.1 < data.len());
            assert_eq!(data[e.value.1], b'"');
            last = e.value.1;
        }
    }

    proptest::proptest! {
        // The loader's fuzz target: arbitrary bytes after a valid head, and arbitrary
        // single-byte damage to a valid envelope, never panic, and spans stay in bounds.
        #[test]
        fn arbitrary_input_never_panics(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut data = HEAD.to_vec();
            data.extend_from_slice(&tail);
            if let Some(entries) = scan_pickled(&data) {
                spans_are_sane(&data, &entries);
            }
            let _ = scan_pickled(&tail);
        }

        #[test]
        fn damaged_envelopes_never_panic(pos in 0usize..200, byte in proptest::num::u8::ANY) {
            let mut data = envelope(r#""a": "QQ==\n", "b\u00e9": "Qg==\n""#);
            let at = pos % data.len();
            data[at] = byte;
            if let Some(entries) = scan_pickled(&data) {
                spans_are_sane(&data, &entries);
            }
        }
    }

    #[test]
    fn a_file_scans_like_its_bytes() {
        let path = std::env::temp_dir().join(format!("jp-scan-{}", std::process::id()));
        let big = "QUFB".repeat(3 << 20);
        for body in [
            String::new(),
            format!(r#""a": "{big}", "b": "QQ==\n""#),
            format!(r#""a": "{big}", "b": 5"#),
            r#""k": "QQ==\n""#.to_string(),
        ] {
            let data = envelope(&body);
            std::fs::write(&path, &data).unwrap();
            let file = File::open(&path).unwrap();
            let mut src = FileSource::new(&file, data.len());
            assert_eq!(scan(&mut src).unwrap(), scan_pickled(&data));
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn every_truncation_is_refused_or_consistent() {
        let data = envelope(r#""a": "QQ==\n", "b": "Qg==\n""#);
        for n in 0..data.len() {
            assert!(scan_pickled(&data[..n]).is_none(), "prefix {n}");
        }
    }
}
